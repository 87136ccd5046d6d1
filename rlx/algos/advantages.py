"""Advantage estimators: pure jnp functions, usable on host or device.

Groups: the G completions of prompt i are rows i*G .. i*G + G - 1, so a
[N] reward vector reshapes to [N // G, G].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.algos import losses

GROUP_SCALES = ("group", "batch", "none")
MULTI_OBJECTIVE = ("sum_then_normalize", "normalize_then_sum")

# An unscorable completion (every reward function returned None or failed
# for it) has reward NaN, as in TRL: it is left out of every mean and std
# below and gets advantage 0.


def _groups(rewards_N, group_size: int):
  rewards_N = jnp.asarray(rewards_N, jnp.float32)
  n = rewards_N.shape[0]
  if group_size < 1 or n % group_size:
    raise ValueError(
      f"group_size={group_size}: must be >= 1 and divide the {n} rewards"
    )
  return rewards_N.reshape(n // group_size, group_size, *rewards_N.shape[1:])


def nan_stats(x, axis=None):
  """(count, mean, std) over the non-NaN entries of `x`, keepdims.

  std is Bessel-corrected (TRL's `nanstd`) and 0 where fewer than two
  entries count (TRL: NaN, which ends as advantage 0 all the same); mean is
  0 where none counts.
  """
  ok = ~jnp.isnan(x)
  count = jnp.sum(ok, axis=axis, keepdims=True, dtype=jnp.float32)
  mean = jnp.sum(jnp.where(ok, x, 0.0), axis, keepdims=True)
  mean = mean / jnp.maximum(count, 1.0)
  ss = jnp.sum(jnp.where(ok, jnp.square(x - mean), 0.0), axis, keepdims=True)
  std = jnp.sqrt(ss / jnp.maximum(count - 1.0, 1.0))
  return count, mean, jnp.where(count >= 2, std, 0.0)


def weighted_total(rewards, weights=None):
  """[N] or [N, K] rewards -> the [N] weighted sum over reward functions;
  a NaN (unscorable) entry counts 0, a row of NaNs stays NaN (TRL)."""
  r = jnp.asarray(rewards, jnp.float32)
  if r.ndim == 1:
    return r
  w = _weights(weights, r.shape[1])
  total = jnp.sum(jnp.where(jnp.isnan(r), 0.0, r * w), axis=1)
  return jnp.where(jnp.all(jnp.isnan(r), axis=1), jnp.nan, total)


def _weights(weights, k: int):
  if weights is None:
    return jnp.ones((k,), jnp.float32)
  if len(weights) != k:
    raise ValueError(f"reward_weights={weights}: need one per reward ({k})")
  return jnp.asarray(weights, jnp.float32)


def group_advantages(
  rewards,
  group_size: int,
  *,
  scale: str = "group",
  eps: float = 1e-4,
  std_floor: float = 1e-8,
  weights=None,
  aggregation: str = "sum_then_normalize",
):
  """GRPO / Dr. GRPO: A_i = (r_i - mean_group(r)) / (std + eps).

  rewards: [N], or [N, K] unweighted rewards of K reward functions combined
    with `weights` (default 1) by `aggregation`. NaN marks an unscorable
    sample (see above).
  scale: 'group' (GRPO: std of the group), 'batch' (std of the whole batch)
    or 'none' (Dr. GRPO: no division). std is Bessel-corrected, as in TRL.
  aggregation: 'sum_then_normalize' (TRL's default: weighted sum, then the
    above) or 'normalize_then_sum' (GDPO, as TRL: each reward function
    normalised within its group, weighted sum, then normalised over the
    whole batch; `scale` is not used).
  std_floor: a group whose std is <= this is treated as constant: its
    advantages are exactly 0 (round-off can neither create nor inflate a
    signal), and it counts in `frac_zero_std`; likewise one reward function
    constant within a group under normalize_then_sum.
  Returns (advantages [N], stats).
  """
  if scale not in GROUP_SCALES:
    raise ValueError(f"scale={scale!r}: allowed {GROUP_SCALES}")
  if aggregation not in MULTI_OBJECTIVE:
    raise ValueError(f"aggregation={aggregation!r}: allowed {MULTI_OBJECTIVE}")
  total = weighted_total(rewards, weights)
  unscorable = jnp.isnan(total)
  if aggregation == "sum_then_normalize":
    r_GxK = _groups(total, group_size)
    _, mean, group_std = nan_stats(r_GxK, axis=1)
    constant = group_std <= std_floor
    centred = r_GxK - mean
    if scale == "group":
      adv = centred / (group_std + eps)
    elif scale == "batch":
      adv = centred / (nan_stats(r_GxK)[2] + eps)
    else:
      adv = centred
    adv = jnp.where(constant, 0.0, adv).reshape(-1)
    frac_zero_std = jnp.mean(constant.astype(jnp.float32))
  else:
    r = jnp.asarray(rewards, jnp.float32)
    r = r[:, None] if r.ndim == 1 else r
    r_GxKxF = _groups(r, group_size)
    _, mean_f, std_f = nan_stats(r_GxKxF, axis=1)
    constant_f = std_f <= std_floor
    z = jnp.where(constant_f, 0.0, (r_GxKxF - mean_f) / (std_f + eps))
    z = weighted_total(z.reshape(r.shape), weights)
    z = jnp.where(unscorable, jnp.nan, z)
    _, mean, std = nan_stats(z)
    adv = jnp.where(std <= std_floor, 0.0, (z - mean) / (std + eps))
    frac_zero_std = jnp.mean(
      jnp.all(constant_f, axis=(1, 2)), dtype=jnp.float32
    )
  adv = jnp.where(unscorable, 0.0, adv)
  _, reward_mean, reward_std = nan_stats(total)
  stats = {
    "frac_zero_std": jnp.asarray(frac_zero_std, jnp.float32),
    "reward_mean": reward_mean.reshape(()),
    "reward_std": reward_std.reshape(()),
    "unscorable": jnp.sum(unscorable, dtype=jnp.float32),
  }
  return adv, stats


def drop_unscorable(batch: dict) -> tuple[dict, jax.Array]:
  """For token-level algorithms (PPO, REINFORCE++): unscorable rows (NaN
  reward) get reward 0 and an empty `completion_mask`, so they train
  nothing. Returns (batch, number of such rows)."""
  rewards = jnp.asarray(batch["rewards"], jnp.float32)
  bad = jnp.isnan(rewards)
  cmask = batch["completion_mask"]
  batch = {
    **batch,
    "rewards": jnp.where(bad, 0.0, rewards),
    "completion_mask": jnp.where(bad[:, None], jnp.zeros_like(cmask), cmask),
  }
  return batch, jnp.sum(bad, dtype=jnp.float32)


def rloo_advantages(rewards_N, group_size: int):
  """RLOO: A_i = r_i - mean of the other G - 1 rewards of the prompt
  (of the other scorable ones; 0 for an unscorable sample or one without a
  scorable peer)."""
  if group_size < 2:
    raise ValueError(f"group_size={group_size}: RLOO needs >= 2")
  r_GxK = _groups(rewards_N, group_size)
  ok = ~jnp.isnan(r_GxK)
  r0 = jnp.where(ok, r_GxK, 0.0)
  peers = jnp.sum(ok, axis=1, keepdims=True) - 1.0
  others = (jnp.sum(r0, axis=1, keepdims=True) - r0) / jnp.maximum(peers, 1.0)
  return jnp.where(ok & (peers > 0), r0 - others, 0.0).reshape(-1)


def group_mean_baseline(rewards_N, group_size: int):
  """REINFORCE with the group mean as baseline: A_i = r_i - mean_group(r)
  (nan-aware; 0 for an unscorable sample)."""
  r_GxK = _groups(rewards_N, group_size)
  adv = r_GxK - nan_stats(r_GxK, axis=1)[1]
  return jnp.where(jnp.isnan(adv), 0.0, adv).reshape(-1)


def running_mean_baseline(rewards_N, running_mean, momentum: float = 0.9):
  """REINFORCE with a moving-average baseline b (taken before the update);
  unscorable (NaN) samples get 0 and leave b alone.

  Returns (A = r - b, the updated b = momentum * b + (1 - momentum) *
  mean(r)).
  """
  rewards_N = jnp.asarray(rewards_N, jnp.float32)
  running_mean = jnp.asarray(running_mean, jnp.float32)
  count, mean, _ = nan_stats(rewards_N)
  mean = jnp.where(count > 0, mean.reshape(()), running_mean)
  new_mean = momentum * running_mean + (1.0 - momentum) * mean
  adv = rewards_N - running_mean
  return jnp.where(jnp.isnan(adv), 0.0, adv), new_mean


def last_token_mask(mask_BxT):
  """One-hot [B, T] of each row's last True entry (all False if none)."""
  mask_BxT = jnp.asarray(mask_BxT, bool)
  T = mask_BxT.shape[1]
  last = T - 1 - jnp.argmax(mask_BxT[:, ::-1], axis=1)
  return (jnp.arange(T)[None, :] == last[:, None]) & mask_BxT


def token_rewards(rewards_N, mask_BxT, kl_BxT=None, kl_coef: float = 0.0):
  """Sequence reward on the last completion token, minus kl_coef * KL."""
  last = last_token_mask(mask_BxT)
  r = jnp.where(last, jnp.asarray(rewards_N, jnp.float32)[:, None], 0.0)
  if kl_BxT is not None and kl_coef:
    r = r - kl_coef * jnp.where(mask_BxT, kl_BxT, 0.0)
  return r


def gae(rewards_BxT, values_BxT, mask_BxT, gamma: float, lam: float):
  """Generalised advantage estimation as a reversed `lax.scan`.

  Over the positions where `mask_BxT` is set (one contiguous completion per
  row), delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lam
  A_{t+1}, with V and A taken as 0 after the last masked position.
  Returns (advantages, returns = A + V), both 0 outside the mask.
  """
  mask = jnp.asarray(mask_BxT, bool)
  values_BxT = jnp.where(mask, values_BxT, 0.0)

  def step(carry, xs):
    next_value, next_adv = carry
    r, v, m = xs
    delta = r + gamma * next_value - v
    adv = delta + gamma * lam * next_adv
    carry = (jnp.where(m, v, next_value), jnp.where(m, adv, next_adv))
    return carry, jnp.where(m, adv, 0.0)

  B = rewards_BxT.shape[0]
  zeros = jnp.zeros((B,), jnp.float32)
  xs = (rewards_BxT.T, values_BxT.T, mask.T)
  _, adv_TxB = jax.lax.scan(step, (zeros, zeros), xs, reverse=True)
  adv = adv_TxB.T
  return adv, jnp.where(mask, adv + values_BxT, 0.0)


def reward_to_go(rewards_BxT, mask_BxT, gamma: float = 1.0):
  """sum_{s >= t} gamma^(s - t) r_s over the masked positions."""
  _, returns = gae(rewards_BxT, jnp.zeros_like(rewards_BxT), mask_BxT, gamma, 1)
  return returns


def reinforce_pp_advantages(
  rewards_N,
  mask_BxT,
  kl_BxT=None,
  kl_coef: float = 0.0,
  gamma: float = 1.0,
):
  """REINFORCE++: token returns of (reward - kl_coef * KL), whitened over
  all valid tokens of the batch. Returns advantages [B, T]."""
  r = token_rewards(rewards_N, mask_BxT, kl_BxT, kl_coef)
  returns = reward_to_go(r, mask_BxT, gamma)
  return losses.masked_whiten(returns, jnp.asarray(mask_BxT, bool))
