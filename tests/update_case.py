"""The update compared across device layouts and processes."""

import jax
import numpy as np

from rlx import algos
from rlx.models import preset

MODEL = preset("tiny")
N, T, P, G = 16, 16, 6, 4


def algo():
  return algos.make(
    "grpo",
    beta=0.04,
    num_minibatches=2,
    optimizer=algos.OptimizerConfig(learning_rate=1e-3, weight_decay=0.01),
  )


def batch() -> dict:
  """A deterministic rollout batch (numpy) with advantages."""
  rng = np.random.default_rng(0)
  mask = np.ones((N, T), bool)
  mask[::3, :2] = False
  comp = np.zeros((N, T), bool)
  comp[:, P:] = True
  comp[::4, T - 2 :] = False
  near = lambda: np.log(1 / 256) + 0.05 * rng.normal(size=(N, T))
  b = dict(
    tokens=rng.integers(0, MODEL.vocab_size, (N, T)).astype(np.int32),
    mask=mask,
    completion_mask=comp,
    rewards=rng.integers(0, 2, N).astype(np.float32),
    old_logprobs=near().astype(np.float32),
    ref_logprobs=near().astype(np.float32),
  )
  b, _ = algo().prepare_batch(b, G)
  return {k: np.asarray(v) for k, v in b.items()}


def key():
  return jax.random.key(0)
