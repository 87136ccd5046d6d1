"""REINFORCE with the RLOO (leave-one-out) baseline."""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.algo.name = "rloo"
  return apply_variant(c, arg)
