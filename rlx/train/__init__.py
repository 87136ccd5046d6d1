"""The training loop, checkpoints, metrics and the config schema."""

from rlx.train.config import ConfigError, check_config, default_config
from rlx.train.loop import Trainer, run
from rlx.train.metrics import format_summary

__all__ = [
  "ConfigError",
  "Trainer",
  "check_config",
  "default_config",
  "format_summary",
  "run",
]
