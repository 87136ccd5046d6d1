"""PPO with a value head on the policy trunk, GAE and clipped value loss."""

from experiments.configs.arithmetic_base import base_config
from rlx.train.config import apply_variant


def get_config(arg=None):
  c = base_config()
  c.algo.name = "ppo"
  c.algo.num_epochs = 2
  c.algo.num_minibatches = 2
  c.algo.options = dict(gamma=1.0, lam=0.95, kl_coef=0.0, vf_coef=0.5)
  return apply_variant(c, arg)
