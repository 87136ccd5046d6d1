"""The embedded default: RL beyond the teacher, on CPU in minutes.

SFT imitates a teacher that drops carries (`arithmetic_base`), then GRPO
(DAPO's clip-higher, no KL) is rewarded for the true answer only when the
R1 format holds. An SFT control then continues SFT from the same model for
the RL phase's step time, so the run shows RL against equal compute spent
on more imitation.

The RL learning rate (3e-5, `arithmetic_base`) is the one measured not to
damage the SFT model: README, "Choosing the RL learning rate".
"""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
  c.control.enabled = True
  c.control.eval_every = 25
  return apply_variant(c, arg)
