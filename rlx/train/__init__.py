"""The training loop, checkpoints, metrics and the config schema."""

from rlx.train.config import ConfigError, check_config, default_config
from rlx.train.loop import Trainer, run

__all__ = ["ConfigError", "Trainer", "check_config", "default_config", "run"]
