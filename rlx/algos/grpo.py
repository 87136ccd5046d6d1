"""GRPO and its variants: Dr. GRPO, DAPO, GSPO (one loss, options).

The loss matches TRL's `GRPOTrainer._compute_loss` (trl 1.16.0) for
`loss_type` grpo / bnpo / dr_grpo / dapo and `importance_sampling_level`
token / sequence: per_token_loss = -min(r A, clip(r) A) + beta * KL, with
TRL's KL being k3 (`kl_estimator` picks k1 / k2 / k3 here). TRL 1.16
multiplies the KL by the ratio by default (`use_bias_correction_kl=True`);
here that is off by default (the DeepSeekMath loss) and available as an
option of the same name.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rlx.algos import advantages as adv_lib
from rlx.algos import losses
from rlx.algos.validate import check_field

IS_LEVELS = ("token", "sequence")
GRPO_LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """GRPO-family loss and advantage settings (TRL names where TRL has one).

  loss_type: grpo | bnpo | dapo | dr_grpo (see `losses.aggregate`).
  epsilon_low / epsilon_high: clip range [1 - low, 1 + high] (DAPO: .2/.28).
  delta: optional cap on the unclipped ratio (two-sided clipping).
  beta: KL weight; 0 means no reference model and no reference pass.
  importance_sampling_level: token, or sequence (GSPO: the ratio is the
    geometric mean of the token ratios of the sequence).
  max_completion_length: the Dr. GRPO normaliser (default: T of the batch).
  scale_rewards: group | batch | none (Dr. GRPO) advantage scaling.
  """

  loss_type: str = "grpo"
  epsilon_low: float = 0.2
  epsilon_high: float = 0.2
  delta: float | None = None
  beta: float = 0.04
  kl_estimator: str = "k3"
  use_bias_correction_kl: bool = False
  importance_sampling_level: str = "token"
  max_completion_length: int | None = None
  scale_rewards: str = "group"
  adv_eps: float = 1e-4
  std_floor: float = 1e-3
  entropy_coef: float = 0.0

  def __post_init__(self):
    c = lambda *a: check_field(self, *a)
    c("loss_type", self.loss_type in GRPO_LOSS_TYPES, GRPO_LOSS_TYPES)
    c("epsilon_low", 0 <= self.epsilon_low < 1, "[0, 1)")
    c("epsilon_high", self.epsilon_high >= 0, ">= 0")
    c("delta", self.delta is None or self.delta > 1, "None or > 1")
    c("beta", self.beta >= 0, ">= 0")
    c("kl_estimator", self.kl_estimator in losses.KL_ESTIMATORS, "k1 k2 k3")
    c(
      "importance_sampling_level",
      self.importance_sampling_level in IS_LEVELS,
      IS_LEVELS,
    )
    c(
      "max_completion_length",
      self.max_completion_length is None or self.max_completion_length > 0,
      "None or > 0",
    )
    c(
      "scale_rewards",
      self.scale_rewards in adv_lib.GROUP_SCALES,
      adv_lib.GROUP_SCALES,
    )
    c("adv_eps", self.adv_eps >= 0, ">= 0")
    c("std_floor", self.std_floor >= 0, ">= 0")
    c("entropy_coef", self.entropy_coef >= 0, ">= 0")

  @property
  def needs_reference(self) -> bool:
    return self.beta > 0

  @property
  def needs_entropy(self) -> bool:
    return self.entropy_coef > 0

  def prepare_batch(self, batch: dict, group_size: int, **_):
    """Adds `advantages` [N] from `rewards` [N]; returns (batch, stats)."""
    adv, stats = adv_lib.group_advantages(
      batch["rewards"],
      group_size,
      scale=self.scale_rewards,
      eps=self.adv_eps,
      std_floor=self.std_floor,
    )
    return {**batch, "advantages": adv}, stats

  def loss(self, out: dict, batch: dict, ctx: dict):
    """Loss and metrics from the policy's outputs (see `update.py`)."""
    return grpo_loss(
      self,
      out["logp"],
      batch.get("old_logprobs"),
      batch["advantages"],
      batch["completion_mask"],
      ref_logp_BxT=batch.get("ref_logprobs"),
      entropy_BxT=out.get("entropy"),
      dapo_normalizer=ctx.get("dapo_normalizer"),
    )


def grpo_loss(
  config: GRPOConfig,
  logp_BxT,
  old_logp_BxT,
  advantages,
  mask_BxT,
  *,
  ref_logp_BxT=None,
  entropy_BxT=None,
  dapo_normalizer=None,
):
  """TRL's GRPO loss on per-token log-probs (all [B, T], fp32).

  old_logp_BxT: None means on-policy (old = stop_gradient(logp), ratio 1).
  advantages: [B] (one per sequence) or [B, T].
  Returns (loss, metrics).
  """
  mask = jnp.asarray(mask_BxT, bool)
  if old_logp_BxT is None:
    old_logp_BxT = jax.lax.stop_gradient(logp_BxT)
  log_ratio = logp_BxT - old_logp_BxT
  if config.importance_sampling_level == "sequence":
    log_w = losses.masked_mean(log_ratio, mask, axis=-1)[:, None]
  else:
    log_w = log_ratio
  ratio = jnp.exp(log_w)
  adv = advantages[:, None] if advantages.ndim == 1 else advantages
  per_token, low, high = losses.clipped_surrogate(
    ratio, adv, config.epsilon_low, config.epsilon_high, config.delta
  )
  metrics = losses.ratio_metrics(ratio, low, high, log_ratio, mask)
  aggregate = functools.partial(
    losses.aggregate,
    mask_BxT=mask,
    loss_type=config.loss_type,
    max_completion_length=config.max_completion_length,
    dapo_normalizer=dapo_normalizer,
  )
  loss = metrics["policy_loss"] = aggregate(per_token)
  if config.beta > 0:
    kl = losses.kl_estimate(logp_BxT, ref_logp_BxT, config.kl_estimator)
    metrics["kl"] = losses.masked_mean(kl, mask)
    if config.use_bias_correction_kl:
      kl = kl * ratio
    loss = aggregate(per_token + config.beta * kl)
  if config.entropy_coef > 0:
    loss = loss - config.entropy_coef * losses.masked_mean(entropy_BxT, mask)
  metrics["loss"] = loss
  return loss, metrics
