"""Checkpoints prove their integrity: damaged ones are refused, not resumed."""

import glob
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rlx.models import make_mesh
from rlx.train import checkpoint as ckpt_lib


def _state(seed: int):
  """Random (incompressible, as real params are) arrays, sharded over 8
  devices, plus an int and a bf16 leaf."""
  mesh = make_mesh(data=8, fsdp=1, tensor=1)
  rng = np.random.RandomState(seed)
  rows = NamedSharding(mesh, PartitionSpec("data"))
  # Finite floats with random bits (exponent < 128): stored uncompressed.
  bits = rng.randint(0, 2**31, size=(64, 32), dtype=np.int64) & ~(1 << 30)
  return {
    "params": {
      "w": jax.device_put(bits.astype(np.uint32).view(np.float32), rows),
      "b": jnp.asarray(rng.randn(40), jnp.bfloat16),
    },
    "step": jnp.int32(seed),
  }


def _save_two(directory):
  """Checkpoints 1 and 2 with different arrays; returns (state1, state2)."""
  first, second = _state(1), _state(2)
  ckpt = ckpt_lib.Checkpointer(directory, keep=3)
  ckpt.save(1, first, {"data": {"epoch": 0, "position": 8}})
  ckpt.save(2, second, {"data": {"epoch": 0, "position": 16}})
  ckpt.close()
  return first, second


def _restore(directory, like):
  ckpt = ckpt_lib.Checkpointer(directory, keep=3)
  try:
    return ckpt.restore_latest(ckpt_lib.abstract_like(like))
  finally:
    ckpt.close()


def _equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(
      np.asarray(x, np.float32), np.asarray(y, np.float32)
    )


def _data_file(directory, step):
  """The largest ocdbt data file of a checkpoint's arrays."""
  files = glob.glob(f"{directory}/{step}/state/**/d/*", recursive=True)
  return max(files, key=os.path.getsize)


def test_intact_checkpoints_restore_the_latest(tmp_path):
  _, second = _save_two(str(tmp_path))
  step, state, meta = _restore(str(tmp_path), second)
  assert step == 2 and meta == {"data": {"epoch": 0, "position": 16}}
  _equal(state, second)


@pytest.mark.parametrize("where", [0.2, 0.35, 0.5, 0.65, 0.8, 0.9])
def test_flipped_byte_in_array_data_falls_back_with_a_warning(
  where, tmp_path, caplog
):
  first, second = _save_two(str(tmp_path))
  path = _data_file(str(tmp_path), 2)
  data = bytearray(open(path, "rb").read())
  data[int(len(data) * where)] ^= 0x10
  open(path, "wb").write(bytes(data))
  with caplog.at_level(logging.WARNING):
    step, state, meta = _restore(str(tmp_path), second)
  assert step == 1, "a damaged checkpoint was restored"
  _equal(state, first)
  rel = os.path.relpath(path, tmp_path / "2")
  assert f"{tmp_path}/2 is damaged: the file {rel} fails its CRC-32" in (
    caplog.text
  )
  assert os.listdir(tmp_path) == ["1"]  # the damaged one is deleted


def test_nan_bytes_written_over_params_are_caught(tmp_path, caplog):
  first, second = _save_two(str(tmp_path))
  path = _data_file(str(tmp_path), 2)
  data = open(path, "rb").read()
  raw = np.asarray(second["params"]["w"]).tobytes()
  at = data.find(raw[1024:1040])
  assert at >= 0, "the array's bytes are not stored as they are"
  nan = np.full(4, np.nan, np.float32).tobytes()
  open(path, "wb").write(data[:at] + nan + data[at + 16 :])
  # Without the file list (a save not confirmed complete) the arrays'
  # checksums catch it after reading.
  os.remove(tmp_path / "2" / ckpt_lib.FILES)
  with caplog.at_level(logging.WARNING):
    step, _, _ = _restore(str(tmp_path), second)
  assert step == 1
  assert "checksum mismatch in 1 of 3 arrays: ['params']['w']" in caplog.text


@pytest.mark.parametrize("file_list", [True, False])
def test_edited_or_emptied_metadata_falls_back(file_list, tmp_path, caplog):
  first, second = _save_two(str(tmp_path))
  with open(tmp_path / "2" / "meta" / "metadata", "w") as f:
    json.dump({}, f)
  if not file_list:
    os.remove(tmp_path / "2" / ckpt_lib.FILES)
  else:  # the same size: only the CRC-32 tells
    with open(tmp_path / "2" / "meta" / "metadata", "w") as f:
      f.write(json.dumps({"data": {"epoch": 0, "position": 24}}))
  with caplog.at_level(logging.WARNING):
    step, _, meta = _restore(str(tmp_path), second)
  assert step == 1 and meta["data"]["position"] == 8
  if file_list:
    assert "the file meta/metadata fails its CRC-32" in caplog.text
  else:
    assert "metadata does not match its checksum (got {})" in caplog.text


def test_non_finite_state_is_not_saved(tmp_path, caplog):
  state = _state(1)
  state["params"]["b"] = state["params"]["b"].at[3].set(jnp.inf)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    assert not ckpt.save(1, state, {})
  ckpt.close()
  assert "non-finite values in ['params']['b']" in caplog.text
  assert ckpt_lib.Checkpointer(str(tmp_path)).steps() == []


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path):
  _, second = _save_two(str(tmp_path))
  with open(tmp_path / "2" / "meta" / "metadata", "w") as f:
    f.write("{}")
  os.remove(tmp_path / "2" / ckpt_lib.FILES)
  shutil.rmtree(tmp_path / "1" / "state")
  with pytest.raises(ckpt_lib.CheckpointCorruptError) as error:
    _restore(str(tmp_path), second)
  message = str(error.value)
  assert message.startswith(f"no checkpoint in {tmp_path} could be restored")
  assert "step 2: its metadata does not match its checksum" in message
  assert "step 1: the file state/" in message and "is missing" in message


def test_checksums_do_not_depend_on_the_sharding():
  state = _state(3)
  replicated = jax.tree.map(
    lambda x: jax.device_put(x, jax.devices()[0]), state
  )
  assert ckpt_lib.fingerprint(state) == ckpt_lib.fingerprint(replicated)
  changed = dict(state, step=jnp.int32(4))
  a, b = ckpt_lib.fingerprint(state), ckpt_lib.fingerprint(changed)
  assert a["['step']"]["checksums"] != b["['step']"]["checksums"]


def test_file_list_is_written_once_the_save_completes(tmp_path):
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1), {})
  ckpt.wait()
  listed = json.load(open(tmp_path / "1" / ckpt_lib.FILES))["files"]
  assert listed == ckpt_lib.list_files(str(tmp_path / "1"))
  assert any(p.startswith("state/") for p in listed) and "meta/metadata" in (
    listed
  )
  ckpt.close()
