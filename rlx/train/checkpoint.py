"""Orbax checkpoints that resume: train state, RNG position and data position.

A checkpoint holds a pytree of arrays (params, optimizer state, ...), a
small JSON document (phase, step, data iterator position) and a manifest:
two 32-bit checksums of every array's bits, which arrays were non-finite,
and a SHA-256 of the JSON document. Saves are asynchronous; orbax writes
into a temporary directory and renames it when complete, so a run killed
at any moment leaves only whole checkpoints, and a manifest exists exactly
when its checkpoint was completely written.

Once an asynchronous save has completed (checked at the next save, `wait`
or `close`), a second list, `files.json`, records the size and CRC-32 of
every file the checkpoint wrote. It is checked before orbax reads
anything, so a truncated, missing or altered file is refused without
reading it (orbax reading a broken checkpoint can leave callbacks that
print "Event loop is closed" tracebacks for a long while after).

On restore the manifest is checked against the restored arrays and
document: a checkpoint that fails to load or to verify (flipped bytes,
edited metadata, non-finite values) is reported, naming what failed, and
the previous one is tried, so a damaged latest checkpoint costs steps, not
the run.

Multi-host: every process calls the same methods with its shards of the
state (orbax synchronises them and writes each array once) on a directory
all of them can reach. Checksums are computed on the devices, over global
indices, so they do not depend on the sharding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

MANIFEST_VERSION = 1


class CheckpointCorruptError(RuntimeError):
  """No checkpoint in the directory could be restored."""


# Checksums --------------------------------------------------------------------


def _bits(x: jax.Array) -> jax.Array:
  """The array's raw bits as uint32 (a trailing axis for 8-byte types)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}
  u = jax.lax.bitcast_convert_type(x, unsigned[x.dtype.itemsize])
  return u.astype(jnp.uint32)


def _checksums(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sum_i w_i b_i, sum_i v_i mix(b_i)) mod 2^32 over element bits b_i at
  global index i, with odd weights w_i, v_i; and whether x is finite.

  Any change to one element (any flipped bit or byte) changes the first sum,
  since an odd weight times a nonzero difference below 2^32 is nonzero mod
  2^32; the second, differently weighted, makes coincidences among several
  changed elements unlikely. Elementwise on the global index, so sharded
  arrays need no gather."""
  u = _bits(x)
  index = jnp.zeros(u.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(u.ndim)):
    iota = jax.lax.broadcasted_iota(jnp.uint32, u.shape, axis)
    index = index + iota * jnp.uint32(stride % 2**32)
    stride *= u.shape[axis]
  w = index * jnp.uint32(2654435761) | jnp.uint32(1)
  v = (index ^ jnp.uint32(0x9E3779B9)) * jnp.uint32(0x85EBCA6B) | jnp.uint32(1)
  mixed = (u ^ (u >> 15)) * jnp.uint32(0x2C1B3C6D)
  first = jnp.sum(u * w, dtype=jnp.uint32)
  second = jnp.sum((mixed ^ (mixed >> 12)) * v, dtype=jnp.uint32)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    finite = jnp.all(jnp.isfinite(x))
  else:
    finite = jnp.array(True)
  return first, second, finite


_checksums_jit = jax.jit(_checksums)  # per array: leaves may live apart


def fingerprint(state) -> dict[str, dict]:
  """{array path: {"checksums": [a, b], "finite": bool, "shape", "dtype"}}."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  sums = [_checksums_jit(x) for _, x in leaves]
  # Replicated scalars: this process's first copy of each.
  sums = jax.device_get([[v.addressable_data(0) for v in s] for s in sums])
  return {
    jax.tree_util.keystr(path): {
      "checksums": [int(first), int(second)],
      "finite": bool(finite),
      "shape": list(x.shape),
      "dtype": str(x.dtype),
    }
    for (path, x), (first, second, finite) in zip(leaves, sums)
  }


def _meta_digest(meta) -> str:
  text = json.dumps(meta, sort_keys=True, allow_nan=True)
  return hashlib.sha256(text.encode()).hexdigest()


def _nonfinite(arrays: dict) -> list[str]:
  return [path for path, a in arrays.items() if not a["finite"]]


def _listed(paths: list[str], limit: int = 3) -> str:
  more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
  return ", ".join(paths[:limit]) + more


FILES = "files.json"


def _crc32(path: str) -> int:
  crc = 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 24):
      crc = zlib.crc32(chunk, crc)
  return crc


def list_files(step_dir: str) -> dict[str, list[int]]:
  """{relative path: [size, crc32]} of every file of a checkpoint."""
  out = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel != FILES and not rel.endswith(".tmp"):
        out[rel] = [os.path.getsize(path), _crc32(path)]
  return out


def verify_files(step_dir: str) -> str | None:
  """What is wrong with a checkpoint's files, or None (also when it has no
  file list: a save that was not confirmed complete, or an older rlx)."""
  path = os.path.join(step_dir, FILES)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      listed = json.load(f)["files"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"its file list {FILES} is unreadable ({e})"
  for rel, (size, crc) in sorted(listed.items()):
    full = os.path.join(step_dir, rel)
    if not os.path.exists(full):
      return f"the file {rel} is missing"
    if os.path.getsize(full) != size:
      return f"the file {rel} has {os.path.getsize(full)} bytes, not {size}"
    if _crc32(full) != crc:
      return f"the file {rel} fails its CRC-32 (corrupted bytes)"
  return None


def verify(manifest: dict, state, meta) -> str | None:
  """What is wrong with a restored (state, meta), or None if it matches
  its manifest and is finite."""
  if not isinstance(manifest, dict) or "arrays" not in manifest:
    return f"the manifest is not a checksum manifest ({str(manifest)[:80]})"
  saved = manifest["arrays"]
  if _nonfinite(saved):
    return (
      f"it was saved with non-finite values in {_listed(_nonfinite(saved))}"
    )
  if manifest.get("meta_sha256") != _meta_digest(meta):
    return f"its metadata does not match its checksum (got {str(meta)[:80]})"
  got = fingerprint(state)
  if set(got) != set(saved):
    missing = sorted(set(saved) ^ set(got))
    return f"its arrays differ from the manifest's: {_listed(missing)}"
  bad = [p for p in saved if got[p]["checksums"] != saved[p]["checksums"]]
  if bad:
    return (
      f"checksum mismatch in {len(bad)} of {len(saved)} arrays: "
      f"{_listed(bad)} (corrupted array data)"
    )
  if _nonfinite(got):
    return f"non-finite values in {_listed(_nonfinite(got))}"
  return None


# Checkpointer -----------------------------------------------------------------


class Checkpointer:
  """Save every `save_every` steps, keep the newest `keep` (>= 1)."""

  def __init__(
    self, directory: str, keep: int = 3, async_save: bool = True
  ) -> None:
    if keep < 1:
      raise ValueError(f"checkpoint.keep={keep}: must be >= 1")
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      enable_async_checkpointing=async_save,
      create=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_names=("state", "meta", "manifest"),
    )
    self._unlisted: list[int] = []  # saved; file list not yet written

  def _list_completed(self) -> None:
    """Wait for the asynchronous save, then write the file lists of the
    checkpoints it completed."""
    self.manager.wait_until_finished()
    for step in self._unlisted:
      step_dir = os.path.join(self.directory, str(step))
      if jax.process_index() == 0 and os.path.isdir(step_dir):
        tmp = os.path.join(step_dir, FILES + ".tmp")
        with open(tmp, "w") as f:
          json.dump({"files": list_files(step_dir)}, f)
        os.replace(tmp, os.path.join(step_dir, FILES))
    self._unlisted = []

  def save(self, step: int, state, meta: dict) -> bool:
    """Start an asynchronous save; False (and a warning) when `state` holds
    non-finite values, which are not worth resuming from."""
    arrays = fingerprint(state)
    if _nonfinite(arrays):
      logging.warning(
        "not saving checkpoint %s/%d: non-finite values in %s",
        self.directory,
        step,
        _listed(_nonfinite(arrays)),
      )
      return False
    manifest = {
      "version": MANIFEST_VERSION,
      "arrays": arrays,
      "meta_sha256": _meta_digest(meta),
    }
    self._list_completed()
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(meta),
        manifest=ocp.args.JsonSave(manifest),
      ),
    )
    self._unlisted.append(step)
    return True

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def _restore(self, step: int, abstract_state):
    """(state, meta, problem or None) of one checkpoint; raises if
    unreadable."""
    step_dir = os.path.join(self.directory, str(step))
    problem = verify_files(step_dir)
    if problem is not None:
      return None, None, problem
    has_manifest = os.path.isdir(os.path.join(step_dir, "manifest"))
    items = dict(
      state=ocp.args.StandardRestore(abstract_state),
      meta=ocp.args.JsonRestore(),
    )
    if has_manifest:
      items["manifest"] = ocp.args.JsonRestore()
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    state, meta = restored["state"], restored["meta"]
    if not has_manifest:
      logging.warning(
        "checkpoint %s/%d has no checksum manifest (written by an older "
        "rlx?); restoring it unverified",
        self.directory,
        step,
      )
      if not isinstance(meta, dict):
        return state, meta, f"its metadata is not a JSON object ({meta!r})"
      return state, meta, None
    return state, meta, verify(restored["manifest"], state, meta)

  def restore_latest(self, abstract_state):
    """(step, state, meta) of the newest intact checkpoint, or None.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings,
    so arrays come back directly in the mesh layout. Checkpoints newer than
    the one restored are deleted (their steps will be redone).
    """
    steps = self.steps()
    errors = []
    for step in reversed(steps):
      try:
        state, meta, problem = self._restore(step, abstract_state)
      except Exception as e:  # noqa: BLE001 - any failure means unreadable
        problem = f"unreadable ({type(e).__name__}: {str(e)[:200]})"
      if problem is not None:
        logging.warning(
          "checkpoint %s/%d is damaged: %s; trying an older one",
          self.directory,
          step,
          problem,
        )
        errors.append(f"step {step}: {problem}")
        continue
      for newer in steps[steps.index(step) + 1 :]:
        self.manager.delete(newer)
      return step, state, meta
    if errors:
      self.close()
      raise CheckpointCorruptError(
        f"no checkpoint in {self.directory} could be restored (move the "
        "directory away to start this phase over):\n  " + "\n  ".join(errors)
      )
    return None

  def wait(self) -> None:
    self._list_completed()

  def close(self) -> None:
    self._list_completed()
    self.manager.close()


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state,
  )
