"""Train a policy: `python experiments/run.py --config=CONFIG_FILE`.

Overrides: `--config.algo.options.beta=0.0`, also of keys the file does not
set (`--config.reward.weights.format=0.1`; `check_config` refuses unknown
ones in one line); variants: `--config=FILE:arg`; output: `--workdir=DIR`
(a rerun with the same workdir resumes).

Multi-host: start one process per host, each with the same flags and a
`--workdir` on storage every host can reach, plus either
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` or, on
TPU VMs and SLURM (where JAX finds these itself), `--distributed`. They
call `jax.distributed.initialize` before anything else; the mesh then spans
every process's devices. Process 0 writes metrics, plots and the export.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlx import train  # noqa: E402
from rlx.models.hf import CheckpointError  # noqa: E402
from rlx.train.checkpoint import CheckpointCorruptError  # noqa: E402
from rlx.train.phases import TrainingDivergedError  # noqa: E402

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "grpo_arithmetic.py"
)
# Unlocked and open to new keys, so that free-form sections (reward weights,
# algorithm options) take new entries from the command line; a misspelt key
# is reported by `check_config`, in one line, before any work.
_CONFIG = config_flags.DEFINE_config_file(
  "config",
  _DEFAULT_CONFIG,
  "Experiment config file.",
  lock_config=False,
  accept_new_attributes=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", "runs/default", "Output directory; reruns resume from it."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Multi-host: jax.distributed.initialize() with what JAX detects (TPU "
  "VMs, SLURM); implied by the three flags below.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "Multi-host: HOST:PORT of process 0."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Multi-host: the number of processes."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "Multi-host: this process's index, 0 to N-1."
)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cluster = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _DISTRIBUTED.value or any(v is not None for v in cluster):
    jax.distributed.initialize(*cluster)
  config = _CONFIG.value
  try:
    summary = train.run(config, _WORKDIR.value)
  except (
    train.ConfigError,
    CheckpointError,
    CheckpointCorruptError,
    TrainingDivergedError,
  ) as e:
    sys.exit(f"error: {e}")
  if jax.process_index() != 0:
    return
  print(train.format_summary(summary))
  print(
    f"wall time {summary['wall_s'] / 60:.1f} min; outputs in "
    f"{os.path.abspath(_WORKDIR.value)} (metrics.jsonl, summary.json, "
    "plots.png, export/)"
  )


if __name__ == "__main__":
  app.run(main)
