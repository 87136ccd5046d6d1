"""Orbax checkpoints that resume: train state, RNG position and data position.

A checkpoint holds a pytree of arrays (params, optimizer state, ...) and a
small JSON document (phase, step, data iterator position). Saves are
asynchronous; orbax writes into a temporary directory and renames it when
complete, so a run killed at any moment leaves only whole checkpoints. On
restore a checkpoint that fails to load is reported and the previous one is
tried, so a damaged latest checkpoint costs steps, not the run.

Multi-host: every process calls the same methods with its shards of the
state (orbax synchronises them and writes each array once) on a directory
all of them can reach.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp


class CheckpointCorruptError(RuntimeError):
  """No checkpoint in the directory could be restored."""


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
      item_names=("state", "meta"),
    )

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(meta),
      ),
    )

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state):
    """(step, state, meta) of the newest restorable checkpoint, or None.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings,
    so arrays come back directly in the mesh layout.
    """
    steps = self.steps()
    errors = []
    for step in reversed(steps):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore(),
          ),
        )
      except Exception as e:  # noqa: BLE001 - any failure means unreadable
        logging.warning(
          "checkpoint %s/%d is unreadable (%s: %s); trying an older one",
          self.directory,
          step,
          type(e).__name__,
          str(e)[:200],
        )
        errors.append(f"step {step}: {type(e).__name__}: {str(e)[:200]}")
        continue
      for newer in steps[steps.index(step) + 1 :]:
        self.manager.delete(newer)  # unreadable; its step will be redone
      return step, restored["state"], restored["meta"]
    if errors:
      raise CheckpointCorruptError(
        f"no checkpoint in {self.directory} could be restored:\n  "
        + "\n  ".join(errors)
      )
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state,
  )
