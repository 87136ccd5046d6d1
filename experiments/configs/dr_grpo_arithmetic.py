"""Dr. GRPO on arithmetic: no std division, sum / (G x max length) loss."""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.algo.name = "dr_grpo"
  c.algo.options = dict(beta=0.0)
  return apply_variant(c, arg)
