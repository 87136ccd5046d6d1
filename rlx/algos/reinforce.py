"""REINFORCE: vanilla, with a baseline, RLOO and REINFORCE++.

Loss: -A * logp per token (aggregated by `loss_type`, default a sum over the
sequence, mean over sequences). With `clip_epsilon` set, samples can be
reused: the per-token loss becomes PPO's clipped -min(r A, clip(r) A), which
has the same gradient as -A * logp when r = 1.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from rlx.algos import advantages as adv_lib
from rlx.algos import losses
from rlx.algos.validate import check_field

BASELINES = ("none", "group_mean", "running_mean", "rloo", "reinforce_pp")


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
  """baseline: none | group_mean | running_mean (moving average with
  `baseline_momentum`) | rloo (leave-one-out) | reinforce_pp (token returns
  with `kl_coef` * KL in the reward, whitened over the batch).
  """

  baseline: str = "group_mean"
  baseline_momentum: float = 0.9
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  gamma: float = 1.0
  clip_epsilon: float | None = None
  loss_type: str = "seq_sum"
  entropy_coef: float = 0.0

  def __post_init__(self):
    c = lambda *a: check_field(self, *a)
    c("baseline", self.baseline in BASELINES, BASELINES)
    c("baseline_momentum", 0 <= self.baseline_momentum < 1, "[0, 1)")
    c("kl_coef", self.kl_coef >= 0, ">= 0")
    c(
      "kl_coef",
      self.kl_coef == 0 or self.baseline == "reinforce_pp",
      "0 unless baseline='reinforce_pp' (the KL enters the token rewards)",
    )
    c("kl_estimator", self.kl_estimator in losses.KL_ESTIMATORS, "k1 k2 k3")
    c("gamma", 0 <= self.gamma <= 1, "[0, 1]")
    c(
      "clip_epsilon",
      self.clip_epsilon is None or 0 < self.clip_epsilon < 1,
      "None or in (0, 1)",
    )
    c("loss_type", self.loss_type in losses.LOSS_AGGREGATIONS, "see losses")
    c("entropy_coef", self.entropy_coef >= 0, ">= 0")

  @property
  def needs_reference(self) -> bool:
    return self.kl_coef > 0

  @property
  def needs_entropy(self) -> bool:
    return self.entropy_coef > 0

  def prepare_batch(
    self, batch: dict, group_size: int, *, running_mean=0.0, **_
  ):
    """Adds `advantages` ([N], or [N, T] for reinforce_pp). Unscorable
    samples (NaN reward) get advantage 0 and stay out of the baselines
    (reinforce_pp: out of the loss, `advantages.drop_unscorable`).

    running_mean: the moving-average baseline before this batch; the
    updated one comes back in stats['running_mean'].
    """
    rewards = jnp.asarray(batch["rewards"], jnp.float32)
    stats = {
      "reward_mean": adv_lib.nan_stats(rewards)[1].reshape(()),
      "unscorable": jnp.sum(jnp.isnan(rewards), dtype=jnp.float32),
    }
    if self.baseline == "none":
      adv = jnp.where(jnp.isnan(rewards), 0.0, rewards)
    elif self.baseline == "group_mean":
      adv = adv_lib.group_mean_baseline(rewards, group_size)
    elif self.baseline == "rloo":
      adv = adv_lib.rloo_advantages(rewards, group_size)
    elif self.baseline == "running_mean":
      adv, stats["running_mean"] = adv_lib.running_mean_baseline(
        rewards, running_mean, self.baseline_momentum
      )
    else:
      batch, _ = adv_lib.drop_unscorable(batch)
      rewards = batch["rewards"]
      kl = None
      if self.kl_coef > 0:
        kl = losses.kl_estimate(
          batch["old_logprobs"], batch["ref_logprobs"], self.kl_estimator
        )
        stats["kl"] = losses.masked_mean(kl, batch["completion_mask"])
      adv = adv_lib.reinforce_pp_advantages(
        rewards, batch["completion_mask"], kl, self.kl_coef, self.gamma
      )
    return {**batch, "advantages": adv}, stats

  def loss(self, out: dict, batch: dict, ctx: dict):
    return reinforce_loss(
      self,
      out["logp"],
      batch["advantages"],
      batch["completion_mask"],
      old_logp_BxT=batch.get("old_logprobs"),
      entropy_BxT=out.get("entropy"),
      dapo_normalizer=ctx.get("dapo_normalizer"),
    )


def reinforce_loss(
  config: ReinforceConfig,
  logp_BxT,
  advantages,
  mask_BxT,
  *,
  old_logp_BxT=None,
  entropy_BxT=None,
  dapo_normalizer=None,
):
  """-A * logp (or the clipped surrogate) aggregated over the mask."""
  mask = jnp.asarray(mask_BxT, bool)
  adv = advantages[:, None] if advantages.ndim == 1 else advantages
  metrics = {}
  if config.clip_epsilon is None:
    per_token = -adv * logp_BxT
  else:
    log_ratio = logp_BxT - old_logp_BxT
    ratio = jnp.exp(log_ratio)
    eps = config.clip_epsilon
    per_token, low, high = losses.clipped_surrogate(ratio, adv, eps, eps)
    metrics = losses.ratio_metrics(ratio, low, high, log_ratio, mask)
  loss = losses.aggregate(
    per_token, mask, config.loss_type, dapo_normalizer=dapo_normalizer
  )
  metrics["policy_loss"] = loss
  if config.entropy_coef > 0:
    loss = loss - config.entropy_coef * losses.masked_mean(entropy_BxT, mask)
  metrics["loss"] = loss
  return loss, metrics
