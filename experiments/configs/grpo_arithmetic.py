"""The embedded default: a tiny model learns integer arithmetic on CPU.

A short SFT warm-up on worked solutions, then GRPO (DAPO's clip-higher, no
KL) with the R1 rewards: accuracy counted only when the format holds, plus
a small format bonus.
"""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
  return apply_variant(c, arg)
