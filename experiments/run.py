"""Train a policy: `python experiments/run.py --config=CONFIG_FILE`.

Overrides: `--config.algo.options.beta=0.0`; variants: `--config=FILE:arg`;
output: `--workdir=DIR` (a rerun with the same workdir resumes).
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlx import train  # noqa: E402

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "grpo_arithmetic.py"
)
_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", "runs/default", "Output directory; reruns resume from it."
)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  summary = train.run(config, _WORKDIR.value)
  if summary:
    before, after = summary["before"], summary["after"]
    print(
      "held-out accuracy: "
      f"{before['eval/accuracy']:.1%} before RL -> "
      f"{after['eval/accuracy']:.1%} after RL"
    )
    print(json.dumps(after, indent=1))
  print(f"outputs in {os.path.abspath(_WORKDIR.value)}")


if __name__ == "__main__":
  app.run(main)
