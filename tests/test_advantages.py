"""Advantage estimators vs numpy; constant groups; GAE identities."""

import jax.numpy as jnp
import numpy as np
import pytest

from rlx import algos
from rlx.algos import advantages as adv_lib

G = 4


def _rewards(seed=0, groups=5):
  return np.random.default_rng(seed).normal(size=groups * G).astype(np.float32)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_trl(scale):
  r = _rewards()
  adv, stats = adv_lib.group_advantages(r, G, scale=scale)
  g = r.reshape(-1, G).astype(np.float64)
  centred = g - g.mean(1, keepdims=True)
  if scale == "group":
    want = centred / (g.std(1, ddof=1, keepdims=True) + 1e-4)
  elif scale == "batch":
    want = centred / (g.std(ddof=1) + 1e-4)
  else:
    want = centred
  np.testing.assert_allclose(adv, want.reshape(-1), rtol=1e-5, atol=1e-6)
  assert float(stats["frac_zero_std"]) == 0.0


def test_constant_group_gives_zero_advantage():
  r = _rewards()
  r[:G] = 0.1  # exactly constant
  r[G : 2 * G] = 1.0 + np.float32(1e-4) * np.array([0, 1, -1, 0.5])  # noise
  r[2 * G : 3 * G] = 0.7
  for scale in ("group", "batch", "none"):
    adv, stats = adv_lib.group_advantages(r, G, scale=scale)
    adv = np.asarray(adv)
    assert np.all(np.isfinite(adv))
    np.testing.assert_array_equal(adv[: 3 * G], 0.0)
    assert np.all(adv[3 * G :] != 0)
    np.testing.assert_allclose(stats["frac_zero_std"], 3 / 5)
  single, _ = adv_lib.group_advantages(r, 1)
  np.testing.assert_array_equal(single, 0.0)


def test_bad_group_size():
  with pytest.raises(ValueError, match="group_size=3"):
    adv_lib.group_advantages(_rewards(), 3)


def test_rloo_and_group_mean():
  r = _rewards(1)
  g = r.reshape(-1, G).astype(np.float64)
  want = np.stack(
    [g[:, i] - np.delete(g, i, axis=1).mean(1) for i in range(G)], 1
  )
  np.testing.assert_allclose(
    adv_lib.rloo_advantages(r, G), want.reshape(-1), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    adv_lib.group_mean_baseline(r, G),
    (g - g.mean(1, keepdims=True)).reshape(-1),
    rtol=1e-5,
    atol=1e-6,
  )


def test_running_mean_baseline():
  r = _rewards(2)
  adv, new = adv_lib.running_mean_baseline(r, 0.5, momentum=0.8)
  np.testing.assert_allclose(adv, r - 0.5, rtol=1e-6)
  np.testing.assert_allclose(new, 0.8 * 0.5 + 0.2 * r.mean(), rtol=1e-6)


def _np_gae(rewards, values, mask, gamma, lam):
  B, T = rewards.shape
  adv = np.zeros((B, T))
  for b in range(B):
    idx = np.flatnonzero(mask[b])
    last = 0.0
    for j in reversed(range(len(idx))):
      t = idx[j]
      next_v = values[b, idx[j + 1]] if j + 1 < len(idx) else 0.0
      delta = rewards[b, t] + gamma * next_v - values[b, t]
      last = delta + gamma * lam * last
      adv[b, t] = last
  return adv, np.where(mask, adv + values, 0.0)


def _token_batch(seed=3, B=4, T=9):
  rng = np.random.default_rng(seed)
  mask = np.zeros((B, T), bool)
  for b in range(B):
    start = rng.integers(1, 4)
    mask[b, start : start + rng.integers(1, T - start + 1)] = True
  rewards = rng.normal(size=(B, T)).astype(np.float32)
  values = rng.normal(size=(B, T)).astype(np.float32)
  return rewards, values, mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_matches_loop(gamma, lam):
  rewards, values, mask = _token_batch()
  adv, ret = adv_lib.gae(rewards, values, mask, gamma, lam)
  want_adv, want_ret = _np_gae(rewards, values, mask, gamma, lam)
  np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_is_reward_to_go_minus_value():
  rewards, values, mask = _token_batch(4)
  adv, _ = adv_lib.gae(rewards, values, mask, 1.0, 1.0)
  r = np.where(mask, rewards, 0.0)
  to_go = np.flip(np.cumsum(np.flip(r, 1), 1), 1)
  np.testing.assert_allclose(
    adv, np.where(mask, to_go - values, 0.0), rtol=1e-5, atol=1e-5
  )


def test_token_rewards_last_token_and_kl():
  _, _, mask = _token_batch(5)
  r = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
  kl = np.random.default_rng(5).normal(size=mask.shape).astype(np.float32)
  got = np.asarray(adv_lib.token_rewards(r, mask, kl, 0.1))
  want = np.where(mask, -0.1 * kl, 0.0)
  for b in range(4):
    want[b, np.flatnonzero(mask[b])[-1]] += r[b]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_reinforce_pp_advantages():
  _, _, mask = _token_batch(6)
  rng = np.random.default_rng(6)
  r = rng.normal(size=4).astype(np.float32)
  kl = rng.normal(size=mask.shape).astype(np.float32)
  got = adv_lib.reinforce_pp_advantages(r, mask, kl, 0.05)
  tok = np.where(mask, -0.05 * kl, 0.0)
  for b in range(4):
    tok[b, np.flatnonzero(mask[b])[-1]] += r[b]
  ret = np.flip(np.cumsum(np.flip(tok, 1), 1), 1)
  vals = ret[mask]
  want = np.where(mask, (ret - vals.mean()) / vals.std(ddof=1), 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_prepare_batch_for_each_algorithm():
  """`algo.prepare_batch` wires the right estimator for each name."""
  rewards, values, mask = _token_batch(7, B=8)
  rng = np.random.default_rng(7)
  r = rng.normal(size=8).astype(np.float32)
  logp = -rng.uniform(0, 2, mask.shape).astype(np.float32)
  base = dict(
    rewards=r, completion_mask=mask, old_logprobs=logp, ref_logprobs=logp,
    old_values=values,
  )  # fmt: skip
  want = {
    "grpo": adv_lib.group_advantages(r, G)[0],
    "dr_grpo": adv_lib.group_advantages(r, G, scale="none")[0],
    "rloo": adv_lib.rloo_advantages(r, G),
    "reinforce": r,
    "reinforce_baseline": adv_lib.group_mean_baseline(r, G),
  }
  for name, expected in want.items():
    batch, _ = algos.make(name).prepare_batch(base, G)
    np.testing.assert_allclose(batch["advantages"], expected, rtol=1e-6)
  batch, stats = algos.make("reinforce", baseline="running_mean").prepare_batch(
    base, G, running_mean=jnp.float32(0.3)
  )
  np.testing.assert_allclose(batch["advantages"], r - 0.3, rtol=1e-6)
  assert "running_mean" in stats
  batch, _ = algos.make(
    "ppo", kl_coef=0.0, whiten_advantages=False
  ).prepare_batch(base)
  tok = adv_lib.token_rewards(r, mask)
  want_adv, want_ret = _np_gae(np.asarray(tok), values, mask, 1.0, 0.95)
  np.testing.assert_allclose(batch["advantages"], want_adv, atol=1e-5)
  np.testing.assert_allclose(batch["returns"], want_ret, atol=1e-5)
