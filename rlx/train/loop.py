"""`run(config, workdir)`: the library entry point behind
`experiments/run.py`, and what a notebook calls.

It trains a policy with an optional SFT warm-up on the task's worked
solutions, then the configured RL algorithm, then (with `control.enabled`)
an equal-compute SFT control, checkpointing as it goes; a restarted run
resumes from the latest checkpoint in `workdir` (params, optimizer state,
data position and, through `fold_in(stream, step)`, the random numbers),
so an interrupted run ends bitwise identical to an uninterrupted one. The
pieces it composes (`Trainer`, `rollout`, `evaluation`, `phases`) are
public, for scripts that compose them differently.
"""

from __future__ import annotations

import logging
import os
import time

import jax
from flax import nnx
from jax.experimental import multihost_utils

from rlx import models
from rlx.train import metrics as metrics_lib
from rlx.train.phases import (
  run_control,
  run_rl,
  run_sft,
  run_sft_unless_rl_resumes,
)
from rlx.train.trainer import Trainer


def run(config, workdir: str) -> dict:
  """Train as configured; returns the summary (see `summarise_run`), also
  written to `workdir/summary.json`.

  Writes to `workdir`: metrics.jsonl, summary.json, tensorboard/,
  plots.png, checkpoints/{sft,rl,control}/ and export/ (the RL policy in HF
  format, with the tokenizer). With `control.enabled`, after RL an SFT
  control continues from the SFT params for the RL phase's step time.
  """
  start = time.perf_counter()
  trainer = Trainer(config, workdir)
  main = jax.process_index() == 0
  writer = metrics_lib.MetricsWriter(workdir, enabled=main)
  try:
    sft_params = trainer.initial_params
    if config.sft.steps:
      sft_params = run_sft_unless_rl_resumes(trainer, writer)
    params, rl_seconds = run_rl(trainer, sft_params, writer)
    if config.control.enabled:
      # The RL state may have donated `sft_params`: restore them.
      sft_params = run_sft(trainer, writer) if config.sft.steps else None
      run_control(trainer, sft_params, writer, rl_seconds)
  finally:
    writer.close()
  multihost_utils.sync_global_devices("rlx.train.run: metrics written")
  if config.train.export:
    export = os.path.join(workdir, "export")
    models.save_pretrained(nnx.merge(trainer.graphdef, params), export)
    if main:
      trainer.tokenizer.save(export)
  records = metrics_lib.read_metrics(workdir)
  summary = metrics_lib.summarise_run(records)
  summary["wall_s"] = time.perf_counter() - start
  previous = metrics_lib.read_summary(workdir)
  if previous and {k: previous.get(k) for k in summary if k != "wall_s"} == {
    k: v for k, v in summary.items() if k != "wall_s"
  }:
    # Nothing was left to train: keep the wall time of the run that did it.
    summary["wall_s"] = previous["wall_s"]
    if main:
      logging.warning("%s already holds this finished run", workdir)
  if main:
    metrics_lib.plot_metrics(workdir)
    metrics_lib.write_summary(workdir, summary)
  return summary
