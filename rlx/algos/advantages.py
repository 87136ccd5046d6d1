"""Advantage estimators: pure jnp functions, usable on host or device.

Groups: the G completions of prompt i are rows i*G .. i*G + G - 1, so a
[N] reward vector reshapes to [N // G, G].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.algos import losses

GROUP_SCALES = ("group", "batch", "none")


def _groups(rewards_N, group_size: int):
  rewards_N = jnp.asarray(rewards_N, jnp.float32)
  n = rewards_N.shape[0]
  if group_size < 1 or n % group_size:
    raise ValueError(
      f"group_size={group_size}: must be >= 1 and divide the {n} rewards"
    )
  return rewards_N.reshape(n // group_size, group_size)


def _std(x, axis=None):
  """Bessel-corrected std (as TRL's `nanstd`); 0 for a single sample."""
  n = x.size if axis is None else x.shape[axis]
  if n < 2:
    return jnp.zeros_like(jnp.mean(x, axis=axis, keepdims=True))
  return jnp.std(x, axis=axis, ddof=1, keepdims=True)


def group_advantages(
  rewards_N,
  group_size: int,
  *,
  scale: str = "group",
  eps: float = 1e-4,
  std_floor: float = 1e-3,
):
  """GRPO / Dr. GRPO: A_i = (r_i - mean_group(r)) / (std + eps).

  scale: 'group' (GRPO: std of the group), 'batch' (std of the whole batch)
    or 'none' (Dr. GRPO: no division). std is Bessel-corrected, as in TRL.
  std_floor: a group whose std is <= this is treated as constant: its
    advantages are exactly 0 (round-off can neither create nor inflate a
    signal), and it counts in `frac_zero_std`.
  Returns (advantages [N], stats).
  """
  if scale not in GROUP_SCALES:
    raise ValueError(f"scale={scale!r}: allowed {GROUP_SCALES}")
  r_GxK = _groups(rewards_N, group_size)
  centred = r_GxK - jnp.mean(r_GxK, axis=1, keepdims=True)
  group_std = _std(r_GxK, axis=1)
  constant = group_std <= std_floor
  if scale == "group":
    adv = centred / (group_std + eps)
  elif scale == "batch":
    adv = centred / (_std(r_GxK) + eps)
  else:
    adv = centred
  adv = jnp.where(constant, 0.0, adv).reshape(-1)
  stats = {
    "frac_zero_std": jnp.mean(constant.astype(jnp.float32)),
    "reward_mean": jnp.mean(r_GxK),
    "reward_std": _std(r_GxK).reshape(()),
  }
  return adv, stats


def rloo_advantages(rewards_N, group_size: int):
  """RLOO: A_i = r_i - mean of the other G - 1 rewards of the prompt."""
  if group_size < 2:
    raise ValueError(f"group_size={group_size}: RLOO needs >= 2")
  r_GxK = _groups(rewards_N, group_size)
  others = (jnp.sum(r_GxK, axis=1, keepdims=True) - r_GxK) / (group_size - 1)
  return (r_GxK - others).reshape(-1)


def group_mean_baseline(rewards_N, group_size: int):
  """REINFORCE with the group mean as baseline: A_i = r_i - mean_group(r)."""
  r_GxK = _groups(rewards_N, group_size)
  return (r_GxK - jnp.mean(r_GxK, axis=1, keepdims=True)).reshape(-1)


def running_mean_baseline(rewards_N, running_mean, momentum: float = 0.9):
  """REINFORCE with a moving-average baseline b (taken before the update).

  Returns (A = r - b, the updated b = momentum * b + (1 - momentum) *
  mean(r)).
  """
  rewards_N = jnp.asarray(rewards_N, jnp.float32)
  running_mean = jnp.asarray(running_mean, jnp.float32)
  new_mean = momentum * running_mean + (1.0 - momentum) * jnp.mean(rewards_N)
  return rewards_N - running_mean, new_mean


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
