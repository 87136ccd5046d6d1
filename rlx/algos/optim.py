"""The optimizer: AdamW with a warm-up + cosine or constant schedule."""

from __future__ import annotations

import dataclasses

import jax
import optax

SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW settings. Steps count optimizer updates (epochs x minibatches
  per `update_step`); global-norm clipping happens before AdamW.

  grad_accum_steps: each minibatch is split into this many micro-batches
    whose gradients are averaged before one optimizer update.
  weight decay applies to params with >= 2 dims (not norms or biases).
  """

  learning_rate: float = 1e-6
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  clip_norm: float | None = 1.0
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: int | None = None
  final_lr_ratio: float = 0.0
  grad_accum_steps: int = 1

  def __post_init__(self):
    def check(name, ok, allowed):
      if not ok:
        value = getattr(self, name)
        raise ValueError(f"OptimizerConfig.{name}={value!r}: {allowed}")

    check("learning_rate", self.learning_rate >= 0, "must be >= 0")
    check("weight_decay", self.weight_decay >= 0, "must be >= 0")
    check("b1", 0 <= self.b1 < 1, "must be in [0, 1)")
    check("b2", 0 <= self.b2 < 1, "must be in [0, 1)")
    check("eps", self.eps > 0, "must be > 0")
    check(
      "clip_norm",
      self.clip_norm is None or self.clip_norm > 0,
      "must be > 0 or None",
    )
    check("schedule", self.schedule in SCHEDULES, f"allowed {SCHEDULES}")
    check("warmup_steps", self.warmup_steps >= 0, "must be >= 0")
    check(
      "total_steps",
      self.schedule != "cosine" or (self.total_steps or 0) > self.warmup_steps,
      "the cosine schedule needs total_steps > warmup_steps",
    )
    check("final_lr_ratio", 0 <= self.final_lr_ratio <= 1, "in [0, 1]")
    check("grad_accum_steps", self.grad_accum_steps >= 1, "must be >= 1")


def learning_rate_schedule(config: OptimizerConfig) -> optax.Schedule:
  peak = config.learning_rate
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=peak,
      warmup_steps=config.warmup_steps,
      decay_steps=config.total_steps,
      end_value=peak * config.final_lr_ratio,
    )
  if config.warmup_steps:
    return optax.linear_schedule(0.0, peak, config.warmup_steps)
  return optax.constant_schedule(peak)


def _decay_mask(params):
  return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """Global-norm clip, then AdamW on the schedule."""
  adamw = optax.adamw(
    learning_rate=learning_rate_schedule(config),
    b1=config.b1,
    b2=config.b2,
    eps=config.eps,
    weight_decay=config.weight_decay,
    mask=_decay_mask,
  )
  if config.clip_norm is None:
    return adamw
  return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)
