"""Advantage estimators vs numpy; constant groups; GAE identities."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from rlx import algos
from rlx import rewards as rewards_lib
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
  """Constant groups (std <= 1e-8, TRL's `isclose(std, 0)`) get advantage
  exactly 0; a group with a small real spread keeps TRL's (r - mean) /
  (std + 1e-4), however small its std."""
  r = _rewards()
  r[:G] = 0.1  # exactly constant
  r[G : 2 * G] = np.float32(1e-9) * np.array([0, 1, -1, 0.5])  # round-off
  r[2 * G : 3 * G] = 0.7
  r[3 * G : 4 * G] = 1.0 + np.float32(1e-4) * np.array([0, 1, -1, 0.5])
  for scale in ("group", "batch", "none"):
    adv, stats = adv_lib.group_advantages(r, G, scale=scale)
    adv = np.asarray(adv)
    assert np.all(np.isfinite(adv))
    np.testing.assert_array_equal(adv[: 3 * G], 0.0)
    assert np.all(adv[3 * G :][r[3 * G :] != r[3 * G :].mean()] != 0)
    np.testing.assert_allclose(stats["frac_zero_std"], 3 / 5)
  adv, _ = adv_lib.group_advantages(r, G, scale="group")
  small = r[3 * G : 4 * G].astype(np.float64)
  want = (small - small.mean()) / (small.std(ddof=1) + 1e-4)
  np.testing.assert_allclose(adv[3 * G : 4 * G], want, atol=1e-3)  # f32
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


# Unscorable completions, several reward functions (TRL 1.16) -----------------


def np_nanstd(x, axis=None):
  """TRL's `nanstd`: Bessel-corrected over non-NaN entries, NaN below 2."""
  mean = np.nanmean(x, axis=axis, keepdims=True)
  var = np.nanmean((x - mean) ** 2, axis=axis, keepdims=True)
  count = (~np.isnan(x)).sum(axis=axis, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    var = var * np.where(count > 1, count / (count - 1), np.nan)
  return np.sqrt(var)


def np_trl_advantages(rewards_per_func, weights, G, scale, aggregation):
  """TRL 1.16 `_generate_and_score_completions`, advantages only, in numpy
  (NaN = a reward function returned None)."""
  rpf = np.asarray(rewards_per_func, np.float64)
  w = np.asarray(weights, np.float64)[None]
  unscorable = np.isnan(rpf).all(1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    if aggregation == "sum_then_normalize":
      rewards = np.nansum(rpf * w, 1)
      rewards[unscorable] = np.nan
      grouped = rewards.reshape(-1, G)
      mean = np.repeat(np.nanmean(grouped, 1), G)
      if scale == "batch":
        std = np_nanstd(rewards).reshape(()) * np.ones_like(rewards)
      else:
        std = np.repeat(np_nanstd(grouped, 1).reshape(-1), G)
      adv = rewards - mean
      if scale != "none":
        adv = adv / (std + 1e-4)
    else:
      grouped = rpf.reshape(-1, G, rpf.shape[1])
      mean_k = np.nanmean(grouped, 1, keepdims=True)
      std_k = np_nanstd(grouped, 1)
      reward_k = ((grouped - mean_k) / (std_k + 1e-4)).reshape(rpf.shape)
      rewards = np.nansum(reward_k * w, 1)
      rewards[unscorable] = np.nan
      adv = (rewards - np.nanmean(rewards)) / (np_nanstd(rewards) + 1e-4)
  return np.nan_to_num(adv.reshape(-1), nan=0.0)


def _unscorable_rewards(seed=20, groups=5, funcs=2):
  """Rewards of 2 functions with holes: group 0 fully unscorable, group 1
  with one scorable sample, group 2 with holes in one function only."""
  rng = np.random.default_rng(seed)
  r = rng.normal(size=(groups * G, funcs)).astype(np.float32)
  r[0:G] = np.nan
  r[G + 1 : 2 * G] = np.nan
  r[2 * G, 0] = r[2 * G + 2, -1] = np.nan
  r[3 * G + 1] = np.nan
  return r


@pytest.mark.parametrize(
  "scale,aggregation",
  [
    ("group", "sum_then_normalize"),
    ("batch", "sum_then_normalize"),
    ("none", "sum_then_normalize"),
    ("group", "normalize_then_sum"),
  ],
)
def test_unscorable_and_multi_objective_match_trl(scale, aggregation):
  r = _unscorable_rewards()
  weights = (1.0, 0.5)
  adv, stats = adv_lib.group_advantages(
    r, G, scale=scale, weights=weights, aggregation=aggregation
  )
  want = np_trl_advantages(r, weights, G, scale, aggregation)
  np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6)
  adv = np.asarray(adv)
  np.testing.assert_array_equal(adv[: 2 * G], 0.0)  # no signal in 0 and 1
  assert adv[3 * G + 1] == 0.0  # an unscorable sample
  assert stats["unscorable"] == G + G - 1 + 1
  # The [N] weighted total with NaN for unscorable rows is the same thing.
  if aggregation == "sum_then_normalize":
    total = adv_lib.weighted_total(r, weights)
    same, _ = adv_lib.group_advantages(total, G, scale=scale)
    np.testing.assert_allclose(same, adv, rtol=1e-6)


def test_unscorable_is_not_reward_zero():
  """Regression: [1, 1, None, 0] is a group with mean 2/3 (TRL), not 1/2."""
  r = np.array([1.0, 1.0, np.nan, 0.0], np.float32)
  adv, _ = adv_lib.group_advantages(r, 4, scale="none")
  np.testing.assert_allclose(adv, [1 / 3, 1 / 3, 0.0, -2 / 3], rtol=1e-6)


def test_grpo_config_multi_objective_and_scale_aliases():
  r = _unscorable_rewards(21)
  config = algos.make(
    "grpo",
    reward_weights=[2.0, -1.0],
    multi_objective_aggregation="normalize_then_sum",
  ).config
  batch, stats = config.prepare_batch({"rewards": r}, G)
  want = np_trl_advantages(r, (2.0, -1.0), G, "group", "normalize_then_sum")
  np.testing.assert_allclose(batch["advantages"], want, rtol=1e-5, atol=1e-6)
  assert algos.GRPOConfig(scale_rewards=True).scale_rewards == "group"
  assert algos.GRPOConfig(scale_rewards=False).scale_rewards == "none"
  assert algos.make("grpo", scale_rewards=False).config.scale_rewards == "none"
  with pytest.raises(ValueError, match="scale_rewards"):
    algos.GRPOConfig(scale_rewards="std")
  with pytest.raises(ValueError, match="multi_objective_aggregation"):
    algos.GRPOConfig(multi_objective_aggregation="sum")
  with pytest.raises(ValueError, match="reward_weights"):
    algos.GRPOConfig(reward_weights=(1.0,)).prepare_batch({"rewards": r}, G)


def test_reinforce_baselines_skip_unscorable():
  r = _unscorable_rewards(22)[:, 0]
  g = r.reshape(-1, G).astype(np.float64)
  want_rloo = np.zeros_like(g)
  want_mean = np.zeros_like(g)
  for i, row in enumerate(g):
    ok = ~np.isnan(row)
    for j in np.flatnonzero(ok):
      if ok.sum() > 1:
        want_rloo[i, j] = (
          row[j] - np.delete(row, j)[ok[np.arange(G) != j]].mean()
        )
      want_mean[i, j] = row[j] - row[ok].mean()
  np.testing.assert_allclose(
    adv_lib.rloo_advantages(r, G), want_rloo.reshape(-1), atol=1e-6
  )
  np.testing.assert_allclose(
    adv_lib.group_mean_baseline(r, G), want_mean.reshape(-1), atol=1e-6
  )
  adv, new = adv_lib.running_mean_baseline(r, 0.5, momentum=0.8)
  np.testing.assert_allclose(adv, np.nan_to_num(r - 0.5), rtol=1e-6)
  np.testing.assert_allclose(new, 0.4 + 0.2 * np.nanmean(r), rtol=1e-6)


def test_token_level_algorithms_drop_unscorable_rows():
  rewards, values, mask = _token_batch(8, B=8)
  r = np.random.default_rng(8).normal(size=8).astype(np.float32)
  r[[1, 6]] = np.nan
  logp = np.zeros(mask.shape, np.float32)
  base = dict(
    rewards=r, completion_mask=mask, old_logprobs=logp, ref_logprobs=logp,
    old_values=values,
  )  # fmt: skip
  for algo in (algos.make("ppo"), algos.make("reinforce_pp")):
    batch, stats = algo.prepare_batch(base, G)
    assert stats["unscorable"] == 2
    adv = np.asarray(batch["advantages"])
    assert np.all(np.isfinite(adv))
    assert not np.asarray(batch["completion_mask"])[[1, 6]].any()
    np.testing.assert_array_equal(
      np.asarray(batch["completion_mask"])[[0, 2, 3, 4, 5, 7]],
      mask[[0, 2, 3, 4, 5, 7]],
    )


def test_truncated_completions_and_their_mask():
  """Budget L = 4; EOS = 9, stop sequence (5, 6). A row that ends on a stop
  exactly at the budget is finished, not truncated."""
  tokens = np.array(
    [[1, 9, 0, 0], [1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 5, 6], [5, 6, 1, 2]]
  )
  lengths = np.array([2, 4, 4, 4, 4])
  got = algos.truncated_completions(tokens, lengths, [(9,), (5, 6)])
  np.testing.assert_array_equal(got, [False, True, False, False, True])
  mask = np.ones((8, 6), np.int32)
  truncated = np.array([0, 1, 0, 0, 0, 0, 1, 1], bool)
  batch = dict(
    rewards=np.arange(8, dtype=np.float32),
    completion_mask=mask,
    truncated=truncated,
  )
  on = algos.make("dapo", mask_truncated_completions=True)
  out, stats = on.prepare_batch(batch, G)
  np.testing.assert_array_equal(
    np.asarray(out["completion_mask"]).any(1), ~truncated
  )
  assert out["completion_mask"].dtype == mask.dtype
  np.testing.assert_allclose(stats["frac_truncated"], 3 / 8)
  # Advantages still use every reward (TRL masks only the loss).
  off, _ = algos.make("dapo").prepare_batch(batch, G)
  np.testing.assert_array_equal(off["completion_mask"], mask)
  np.testing.assert_allclose(out["advantages"], off["advantages"])
  with pytest.raises(ValueError, match="truncated"):
    on.prepare_batch({"rewards": batch["rewards"], "completion_mask": mask}, G)


def test_reward_runner_to_advantages_end_to_end():
  """A reward returning None (fixture) through the runner into GRPO's
  advantages: the None sample is left out of its group, as in TRL."""
  fix = "tests.reward_fixtures"
  completions = ["ok", "none", "ok", "bad"] * 2
  with rewards_lib.RewardRunner() as runner:
    total, metrics = runner.compute(
      [f"{fix}:returns_invalid"], ["p"] * 8, completions
    )
  assert metrics[f"reward_failures/{fix}:returns_invalid"] == 2
  total = np.asarray(total)
  assert np.isnan(total[[1, 5]]).all()
  batch, stats = algos.make("grpo").prepare_batch({"rewards": total}, G)
  want = np_trl_advantages(
    total[:, None], (1.0,), G, "group", "sum_then_normalize"
  )
  np.testing.assert_allclose(batch["advantages"], want, atol=1e-6)
  assert stats["unscorable"] == 2
