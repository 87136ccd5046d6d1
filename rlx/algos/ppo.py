"""PPO with a scalar value head on the policy trunk.

The value head is a [D] projection (plus a bias) of the final-normed hidden
state, kept next to the policy params in `TrainState.value_head`. Values are
token-aligned like log-probs: `values_BxT[:, t]` is the value of the state
just before token t was sampled (read from the hidden state at t - 1).
Rewards are per token: the sequence reward on the last completion token,
minus `kl_coef` * KL(policy || reference) on every completion token.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from rlx.algos import advantages as adv_lib
from rlx.algos import losses
from rlx.algos.validate import check_field


def init_value_head(hidden_size: int) -> dict:
  """Zero-initialised value head: values start at 0."""
  return {
    "kernel": jnp.zeros((hidden_size,), jnp.float32),
    "bias": jnp.zeros((), jnp.float32),
  }


def value_head_apply(value_head: dict, hidden_BxTxD) -> jnp.ndarray:
  """Token-aligned fp32 values [B, T] from final hidden states."""
  v = jnp.einsum(
    "btd,d->bt",
    hidden_BxTxD.astype(jnp.float32),
    value_head["kernel"].astype(jnp.float32),
  )
  return losses.shift_right(v + value_head["bias"])


def values(graphdef, params, value_head, tokens_BxT, mask_BxT):
  """Values [B, T] for a rollout batch (the `old_values` of PPO)."""
  model = nnx.merge(graphdef, params)
  hidden_BxTxD, _ = model.trunk(tokens_BxT, mask_BxT)
  return value_head_apply(value_head, hidden_BxTxD)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO settings.

  kl_coef: weight of the per-token KL penalty in the reward (0: no
    reference needed); kl_estimator: k1 (default, as in TRL's PPO) / k2 / k3.
  gamma, lam: GAE; vf_coef, value_clip: clipped value loss; entropy_coef:
  entropy bonus; loss_type: aggregation of the policy loss (token mean).
  """

  epsilon_low: float = 0.2
  epsilon_high: float = 0.2
  value_clip: float = 0.2
  vf_coef: float = 0.1
  entropy_coef: float = 0.0
  gamma: float = 1.0
  lam: float = 0.95
  kl_coef: float = 0.05
  kl_estimator: str = "k1"
  whiten_advantages: bool = True
  loss_type: str = "bnpo"

  def __post_init__(self):
    c = lambda *a: check_field(self, *a)
    c("epsilon_low", 0 <= self.epsilon_low < 1, "[0, 1)")
    c("epsilon_high", self.epsilon_high >= 0, ">= 0")
    c("value_clip", self.value_clip > 0, "> 0")
    c("vf_coef", self.vf_coef >= 0, ">= 0")
    c("entropy_coef", self.entropy_coef >= 0, ">= 0")
    c("gamma", 0 <= self.gamma <= 1, "[0, 1]")
    c("lam", 0 <= self.lam <= 1, "[0, 1]")
    c("kl_coef", self.kl_coef >= 0, ">= 0")
    c("kl_estimator", self.kl_estimator in losses.KL_ESTIMATORS, "k1 k2 k3")
    c("loss_type", self.loss_type in losses.LOSS_AGGREGATIONS, "see losses")

  @property
  def needs_reference(self) -> bool:
    return self.kl_coef > 0

  @property
  def needs_entropy(self) -> bool:
    return self.entropy_coef > 0

  def prepare_batch(self, batch: dict, group_size: int | None = None, **_):
    """Adds token `advantages` and `returns` [N, T] by GAE on `old_values`.

    Needs rewards [N], completion_mask, old_logprobs, old_values and, when
    kl_coef > 0, ref_logprobs. Unscorable rows (NaN reward) are left out
    (`advantages.drop_unscorable`).
    """
    batch, unscorable = adv_lib.drop_unscorable(batch)
    mask = jnp.asarray(batch["completion_mask"], bool)
    kl = None
    if self.kl_coef > 0:
      kl = losses.kl_estimate(
        batch["old_logprobs"], batch["ref_logprobs"], self.kl_estimator
      )
    rewards_BxT = adv_lib.token_rewards(
      batch["rewards"], mask, kl, self.kl_coef
    )
    adv, returns = adv_lib.gae(
      rewards_BxT, batch["old_values"], mask, self.gamma, self.lam
    )
    if self.whiten_advantages:
      adv = losses.masked_whiten(adv, mask)
    stats = {
      "reward_mean": jnp.mean(jnp.asarray(batch["rewards"], jnp.float32)),
      "returns_mean": losses.masked_mean(returns, mask),
      "values_mean": losses.masked_mean(batch["old_values"], mask),
      "unscorable": unscorable,
    }
    if kl is not None:
      stats["kl"] = losses.masked_mean(kl, mask)
    return {**batch, "advantages": adv, "returns": returns}, stats

  def loss(self, out: dict, batch: dict, ctx: dict):
    return ppo_loss(
      self,
      out["logp"],
      out["values"],
      batch,
      entropy_BxT=out.get("entropy"),
      dapo_normalizer=ctx.get("dapo_normalizer"),
    )


def ppo_loss(
  config: PPOConfig,
  logp_BxT,
  values_BxT,
  batch: dict,
  *,
  entropy_BxT=None,
  dapo_normalizer=None,
):
  """Clipped policy loss + vf_coef * clipped value loss - entropy bonus."""
  mask = jnp.asarray(batch["completion_mask"], bool)
  log_ratio = logp_BxT - batch["old_logprobs"]
  ratio = jnp.exp(log_ratio)
  per_token, low, high = losses.clipped_surrogate(
    ratio, batch["advantages"], config.epsilon_low, config.epsilon_high
  )
  metrics = losses.ratio_metrics(ratio, low, high, log_ratio, mask)
  policy_loss = losses.aggregate(
    per_token, mask, config.loss_type, dapo_normalizer=dapo_normalizer
  )
  old_values, returns = batch["old_values"], batch["returns"]
  clipped = old_values + jnp.clip(
    values_BxT - old_values, -config.value_clip, config.value_clip
  )
  vf1 = jnp.square(values_BxT - returns)
  vf2 = jnp.square(clipped - returns)
  value_loss = 0.5 * losses.masked_mean(jnp.maximum(vf1, vf2), mask)
  loss = policy_loss + config.vf_coef * value_loss
  if config.entropy_coef > 0:
    loss = loss - config.entropy_coef * losses.masked_mean(entropy_BxT, mask)
  metrics.update(
    loss=loss,
    policy_loss=policy_loss,
    value_loss=value_loss,
    value_clip_frac=losses.masked_mean((vf2 > vf1).astype(jnp.float32), mask),
    values_mean=losses.masked_mean(values_BxT, mask),
  )
  return loss, metrics
