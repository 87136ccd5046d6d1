"""GRPO and its variants: Dr. GRPO, DAPO, GSPO, CISPO, SAPO, LUSPO, VESPO.

One loss with options. It matches TRL's `GRPOTrainer._compute_loss` (trl
1.16.0) for every `loss_type` and both `importance_sampling_level`s; with
w the importance weight (per token, or per sequence: the geometric mean of
the token ratios) and A the advantage, the per-token loss is

  grpo / bnpo / dapo / dr_grpo / luspo: -min(w A, clip(w, 1 - eps_low,
    1 + eps_high) A)                                   (PPO's clip)
  cispo: -sg(min(w, epsilon_high)) A log pi           (MiniMax-M1)
  sapo:  -sigmoid(tau (w - 1)) 4 / tau A, tau = sapo_temperature_pos if
    A > 0 else sapo_temperature_neg                   (soft gate)
  vespo: -sg(phi(W)) A log pi, W = the product of the token ratios of the
    sequence, phi(W) = exp(lam + k log W - lam W), (k, lam) = vespo_k_pos,
    vespo_lambda_pos if A >= 0 else the _neg pair     (Gamma weight)

(sg: stop-gradient), plus beta * KL, aggregated as TRL does: grpo / sapo
per sequence, bnpo per batch, dr_grpo over B x max_completion_length,
dapo / cispo / vespo over the rollout batch's tokens, luspo a token sum per
sequence (see `AGGREGATION` and `losses.aggregate`). TRL's KL is k3
(`kl_estimator` picks k1 / k2 / k3 here). TRL 1.16 multiplies the KL by the
ratio by default (`use_bias_correction_kl=True`); here that is off by
default (the DeepSeekMath loss) and available as an option of the same name.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rlx.algos import advantages as adv_lib
from rlx.algos import losses
from rlx.algos.validate import check_field

IS_LEVELS = ("token", "sequence")
# loss_type -> `losses.aggregate` reduction, as in TRL.
AGGREGATION = {
  "grpo": "grpo",
  "bnpo": "bnpo",
  "dapo": "dapo",
  "dr_grpo": "dr_grpo",
  "cispo": "dapo",
  "sapo": "grpo",
  "luspo": "seq_sum",
  "vespo": "dapo",
}
GRPO_LOSS_TYPES = tuple(AGGREGATION)
_SCALE_ALIASES = {True: "group", False: "none"}


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """GRPO-family loss and advantage settings (TRL's names and meanings).

  loss_type: grpo | bnpo | dapo | dr_grpo | cispo | sapo | luspo | vespo.
  epsilon_low / epsilon_high: clip range [1 - low, 1 + high] (DAPO: .2/.28);
    for cispo, epsilon_high is the cap on the weight itself (ScaleRL: 5).
  delta: optional cap on the unclipped ratio (two-sided clipping).
  beta: KL weight; 0 means no reference model and no reference pass.
  importance_sampling_level: token, or sequence (GSPO, LUSPO: the ratio is
    the geometric mean of the token ratios of the sequence).
  max_completion_length: the Dr. GRPO normaliser; unset, the batch's
    completion budget (`losses.completion_width`). The training loop sets
    it to `rollout.max_new_tokens`.
  scale_rewards: group | batch | none (Dr. GRPO) advantage scaling; True and
    False mean group and none, as in TRL.
  multi_objective_aggregation / reward_weights: how [N, K] rewards of K
    reward functions combine (`advantages.group_advantages`).
  mask_truncated_completions: leave completions that hit the token budget
    without a stop (`batch['truncated']`) out of the loss (DAPO).
  sapo_temperature_pos / _neg, vespo_k_pos / _lambda_pos / _k_neg /
    _lambda_neg: the SAPO and VESPO parameters (TRL's defaults).
  top_entropy_quantile: keep the policy loss only on the tokens whose
    entropy is in this top fraction of the batch's completion tokens (TRL,
    "Beyond the 80/20 rule"); 1 keeps every token.
  adv_eps: the advantage's denominator is std + adv_eps (TRL: 1e-4).
  std_floor: groups whose reward std is <= this count as constant (TRL's
    `isclose(std, 0)`, atol 1e-8): advantage exactly 0, `frac_zero_std`.
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
  multi_objective_aggregation: str = "sum_then_normalize"
  reward_weights: tuple[float, ...] | None = None
  mask_truncated_completions: bool = False
  sapo_temperature_pos: float = 1.0
  sapo_temperature_neg: float = 1.05
  vespo_k_pos: float = 2.0
  vespo_lambda_pos: float = 3.0
  vespo_k_neg: float = 3.0
  vespo_lambda_neg: float = 2.0
  adv_eps: float = 1e-4
  std_floor: float = 1e-8
  entropy_coef: float = 0.0
  top_entropy_quantile: float = 1.0

  def __post_init__(self):
    scale = self.scale_rewards
    if isinstance(scale, (bool, np.bool_)):
      object.__setattr__(self, "scale_rewards", _SCALE_ALIASES[bool(scale)])
    if self.reward_weights is not None:
      weights = tuple(float(w) for w in self.reward_weights)
      object.__setattr__(self, "reward_weights", weights)
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
      (*adv_lib.GROUP_SCALES, True, False),
    )
    c(
      "multi_objective_aggregation",
      self.multi_objective_aggregation in adv_lib.MULTI_OBJECTIVE,
      adv_lib.MULTI_OBJECTIVE,
    )
    c(
      "reward_weights",
      self.reward_weights is None
      or all(math.isfinite(w) for w in self.reward_weights),
      "None or finite numbers",
    )
    c("sapo_temperature_pos", self.sapo_temperature_pos > 0, "> 0")
    c("sapo_temperature_neg", self.sapo_temperature_neg > 0, "> 0")
    c("vespo_lambda_pos", self.vespo_lambda_pos >= 0, ">= 0")
    c("vespo_lambda_neg", self.vespo_lambda_neg >= 0, ">= 0")
    c("adv_eps", self.adv_eps >= 0, ">= 0")
    c("std_floor", self.std_floor >= 0, ">= 0")
    c("entropy_coef", self.entropy_coef >= 0, ">= 0")
    c(
      "top_entropy_quantile",
      0 < self.top_entropy_quantile <= 1,
      "in (0, 1]",
    )

  @property
  def needs_reference(self) -> bool:
    return self.beta > 0

  @property
  def needs_entropy(self) -> bool:
    return self.entropy_coef > 0 or self.top_entropy_quantile < 1

  def prepare_batch(self, batch: dict, group_size: int, **_):
    """Adds `advantages` [N] from `rewards` ([N], or [N, K] per reward
    function; NaN = unscorable); with `mask_truncated_completions`, zeroes
    the `completion_mask` rows that `truncated` [N] flags. Returns (batch,
    stats)."""
    adv, stats = adv_lib.group_advantages(
      batch["rewards"],
      group_size,
      scale=self.scale_rewards,
      eps=self.adv_eps,
      std_floor=self.std_floor,
      weights=self.reward_weights,
      aggregation=self.multi_objective_aggregation,
    )
    batch = {**batch, "advantages": adv}
    if "truncated" in batch:
      truncated = jnp.asarray(batch["truncated"], bool)
      stats["frac_truncated"] = jnp.mean(truncated, dtype=jnp.float32)
      if self.mask_truncated_completions:
        cmask = batch["completion_mask"]
        batch["completion_mask"] = jnp.where(
          truncated[:, None], jnp.zeros_like(cmask), cmask
        )
    elif self.mask_truncated_completions:
      raise ValueError(
        "mask_truncated_completions=True needs batch['truncated'] [N], the "
        "rows that hit the token budget without a stop"
      )
    return batch, stats

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


def vespo_weights(
  log_ratio_BxT,
  mask_BxT,
  adv,
  k_pos: float,
  lambda_pos: float,
  k_neg: float,
  lambda_neg: float,
):
  """VESPO's Gamma weight phi(W) = exp(lam + k log W - lam W) of the
  sequence ratio W = prod_t w_t (token log-ratios clipped to [-20, 20],
  log W to [log 1e-8, 20], as TRL); phi(1) = 1. No gradient."""
  log_ratio = jnp.clip(log_ratio_BxT, -20.0, 20.0)
  seq = jnp.sum(jnp.where(mask_BxT, log_ratio, 0.0), -1, keepdims=True)
  log_w = jnp.clip(seq, math.log(1e-8), 20.0)
  nonneg = adv >= 0
  k = jnp.where(nonneg, k_pos, k_neg)
  lam = jnp.maximum(jnp.where(nonneg, lambda_pos, lambda_neg), 1e-4)
  phi = jnp.exp(lam + k * log_w - lam * jnp.exp(log_w))
  return jax.lax.stop_gradient(jnp.where(jnp.isfinite(phi), phi, 0.0))


def policy_per_token(config: GRPOConfig, logp_BxT, log_ratio_BxT, adv, mask):
  """The per-token policy loss of `config.loss_type` (module docstring),
  [B, T] or [B, 1], and the ratio metrics' masks (clipped low / high)."""
  if config.importance_sampling_level == "sequence":
    log_w = losses.masked_mean(log_ratio_BxT, mask, axis=-1)[:, None]
  else:
    log_w = log_ratio_BxT
  ratio = jnp.exp(log_w)
  none = jnp.zeros(jnp.broadcast_shapes(ratio.shape, adv.shape), bool)
  lt = config.loss_type
  if lt == "cispo":
    weight = jax.lax.stop_gradient(jnp.minimum(ratio, config.epsilon_high))
    high = (ratio > config.epsilon_high) & (adv > 0)
    return -weight * adv * logp_BxT, ratio, none, high
  if lt == "sapo":
    tau = jnp.where(
      adv > 0, config.sapo_temperature_pos, config.sapo_temperature_neg
    )
    gate = jax.nn.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau
    return -gate * adv, ratio, none, none
  if lt == "vespo":
    phi = vespo_weights(
      log_ratio_BxT,
      mask,
      adv,
      config.vespo_k_pos,
      config.vespo_lambda_pos,
      config.vespo_k_neg,
      config.vespo_lambda_neg,
    )
    return -phi * adv * logp_BxT, ratio, none, none
  per_token, low, high = losses.clipped_surrogate(
    ratio, adv, config.epsilon_low, config.epsilon_high, config.delta
  )
  return per_token, ratio, low, high


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
  Returns (loss, metrics); for cispo, `clip_frac_high` is the share of
  tokens whose weight was capped (TRL's cispo_clip_ratio).
  """
  mask = jnp.asarray(mask_BxT, bool)
  if old_logp_BxT is None:
    old_logp_BxT = jax.lax.stop_gradient(logp_BxT)
  log_ratio = logp_BxT - old_logp_BxT
  adv = advantages[:, None] if advantages.ndim == 1 else advantages
  per_token, ratio, low, high = policy_per_token(
    config, logp_BxT, log_ratio, adv, mask
  )
  metrics = losses.ratio_metrics(ratio, low, high, log_ratio, mask)
  if config.top_entropy_quantile < 1:
    per_token = per_token * high_entropy_mask(
      entropy_BxT, mask, config.top_entropy_quantile
    )
  aggregate = functools.partial(
    losses.aggregate,
    mask_BxT=mask,
    loss_type=AGGREGATION[config.loss_type],
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


def high_entropy_mask(entropy_BxT, mask_BxT, top_quantile: float):
  """[B, T] bool: completion tokens whose entropy is at least the (1 -
  `top_quantile`) quantile (linear interpolation, as `torch.quantile`) of
  the entropies of all completion tokens in the batch. No gradient."""
  entropy = jax.lax.stop_gradient(entropy_BxT)
  threshold = jnp.nanquantile(
    jnp.where(mask_BxT, entropy, jnp.nan), 1.0 - top_quantile
  )
  return mask_BxT & (entropy >= threshold)


def truncated_completions(tokens_NxL, lengths_N, stops) -> np.ndarray:
  """[N] bool: completions that used their whole budget of L tokens without
  ending on a stop (TRL's `mask_truncated_completions` test). Host numpy.

  stops: token-id sequences that end a completion (EOS ids as 1-tuples).
  """
  tokens_NxL = np.asarray(tokens_NxL)
  lengths_N = np.asarray(lengths_N)
  L = tokens_NxL.shape[1]
  truncated = lengths_N >= L
  for seq in stops:
    seq = np.asarray(seq, tokens_NxL.dtype)
    if 0 < len(seq) <= L:
      truncated &= ~np.all(tokens_NxL[:, L - len(seq) :] == seq, axis=1)
  return truncated
