"""SFT only: train on worked solutions, then report held-out accuracy."""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.sft.steps = 400
  c.train.steps = 0  # no RL phase: evaluate the SFT model
  return apply_variant(c, arg)
