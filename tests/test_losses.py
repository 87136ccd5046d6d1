"""Losses vs independent numpy re-implementations (TRL 1.16.0 for GRPO)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlx import algos
from rlx.algos import losses
from rlx.models import init_model, preset

RTOL = 1e-5


def _rand_inputs(seed, B=6, T=10):
  rng = np.random.default_rng(seed)
  logp = -rng.uniform(0.1, 3.0, (B, T)).astype(np.float32)
  old = (logp + rng.normal(0, 0.3, (B, T))).astype(np.float32)
  ref = (logp + rng.normal(0, 0.3, (B, T))).astype(np.float32)
  adv = rng.normal(size=B).astype(np.float32)
  mask = np.zeros((B, T), bool)
  for i in range(B):
    start = rng.integers(1, 4)
    mask[i, start : start + rng.integers(1, T - start + 1)] = True
  mask[-1] = False  # an empty row must not produce NaN
  mask[-1, -1] = True
  return logp, old, ref, adv, mask


# Numpy references -------------------------------------------------------------


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_trl_grpo_loss(
  logp,
  old,
  ref,
  adv,
  mask,
  *,
  loss_type,
  eps_low,
  eps_high,
  beta,
  level,
  estimator="k3",
  bias_correction=False,
  delta=None,
  max_completion_length=None,
  dapo_normalizer=None,
  sapo_tau=(1.0, 1.05),
  vespo=(2.0, 3.0, 3.0, 2.0),
  frozen_logp=None,
  entropy=None,
  top_entropy_quantile=1.0,
):
  """TRL 1.16.0 `GRPOTrainer._compute_loss`, transcribed to numpy (one
  process, one accumulation step; `num_items_in_batch` = dapo normaliser).
  cispo / vespo weights carry no gradient: `frozen_logp` computes them
  from fixed log-probs, so finite differences in `logp` give the gradient.
  """
  logp, old, ref = (np.asarray(x, np.float64) for x in (logp, old, ref))
  mask = mask.astype(np.float64)
  adv = np.asarray(adv, np.float64)[:, None]
  log_ratio = logp - old
  if level == "token":
    log_w = log_ratio
  else:
    log_w = (log_ratio * mask).sum(-1) / np.maximum(mask.sum(-1), 1.0)
    log_w = log_w[:, None]
  coef_1 = np.exp(log_w)
  w_log_ratio, w_coef = log_ratio, coef_1
  if frozen_logp is not None:
    w_log_ratio = np.asarray(frozen_logp, np.float64) - old
    w_coef = np.exp(w_log_ratio) if level == "token" else None
    if level == "sequence":
      w_coef = np.exp(
        (w_log_ratio * mask).sum(-1, keepdims=True)
        / np.maximum(mask.sum(-1, keepdims=True), 1.0)
      )
  x = ref - logp
  kl = {"k1": -x, "k2": x**2 / 2, "k3": np.exp(x) - x - 1}[estimator]
  if bias_correction:
    kl = kl * coef_1
  per_token = np_policy_per_token(
    loss_type, logp, log_ratio, coef_1, adv, mask, eps_low, eps_high, delta,
    sapo_tau, vespo, w_log_ratio, w_coef,
  )  # fmt: skip
  if top_entropy_quantile < 1.0:  # TRL's get_high_entropy_mask
    threshold = np.quantile(entropy[mask > 0], 1.0 - top_entropy_quantile)
    per_token = per_token * ((entropy * mask >= threshold) & (mask > 0))
  if beta != 0:
    per_token = per_token + beta * kl
  if loss_type in ("grpo", "sapo"):
    return ((per_token * mask).sum(-1) / np.maximum(mask.sum(-1), 1.0)).mean()
  if loss_type == "bnpo":
    return (per_token * mask).sum() / max(mask.sum(), 1.0)
  if loss_type == "dr_grpo":
    L = max_completion_length or mask.shape[1]
    return (per_token * mask).sum() / (per_token.shape[0] * L)
  if loss_type in ("dapo", "cispo", "vespo"):
    norm = mask.sum() if dapo_normalizer is None else dapo_normalizer
    return (per_token * mask).sum() / max(norm, 1.0)
  if loss_type == "luspo":
    return (per_token * mask).sum(-1).mean()
  raise ValueError(loss_type)


def np_vespo_phi(log_ratio, mask, adv, k_pos, lam_pos, k_neg, lam_neg):
  """VESPO's Gamma weight of the sequence ratio (TRL 1.16's
  `get_gamma_weights`): phi(W) = e^lam W^k e^(-lam W)."""
  seq = (np.clip(log_ratio, -20, 20) * mask).sum(-1, keepdims=True)
  log_w = np.clip(seq, np.log(1e-8), 20)
  k = np.where(adv >= 0, k_pos, k_neg)
  lam = np.maximum(np.where(adv >= 0, lam_pos, lam_neg), 1e-4)
  phi = np.exp(lam) * np.exp(log_w) ** k * np.exp(-lam * np.exp(log_w))
  return np.nan_to_num(phi, nan=0.0, posinf=0.0, neginf=0.0)


def np_policy_per_token(
  loss_type, logp, log_ratio, coef_1, adv, mask, eps_low, eps_high, delta,
  sapo_tau, vespo, w_log_ratio, w_coef,
):  # fmt: skip
  if loss_type == "cispo":
    return -np.minimum(w_coef, eps_high) * adv * logp
  if loss_type == "sapo":
    tau = np.where(adv > 0, *sapo_tau)
    return -(1 / (1 + np.exp(-tau * (coef_1 - 1)))) * 4 / tau * adv
  if loss_type == "vespo":
    return -np_vespo_phi(w_log_ratio, mask, adv, *vespo) * adv * logp
  coef_2 = np.clip(coef_1, 1 - eps_low, 1 + eps_high)
  if delta is not None:
    coef_1 = np.minimum(coef_1, delta)
  return -np.minimum(coef_1 * adv, coef_2 * adv)


# Log-probs --------------------------------------------------------------------


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def tiny(request):
  model = init_model(preset("tiny", tie_embeddings=request.param), 0)
  return nnx.split(model)


def _np_token_logprobs(graphdef, params, tokens, mask, temperature=1.0):
  logits, _ = nnx.merge(graphdef, params)(tokens, mask)
  logits = np.asarray(logits, np.float64) / temperature
  logsm = np_log_softmax(logits)
  logp = np.zeros(tokens.shape)
  logp[:, 1:] = np.take_along_axis(logsm[:, :-1], tokens[:, 1:, None], -1)[
    ..., 0
  ]
  p = np.exp(logsm)
  ent = np.zeros(tokens.shape)
  ent[:, 1:] = -(p * logsm).sum(-1)[:, :-1]
  return logp, ent


@pytest.mark.parametrize("chunk_size", [None, 4, 5])
def test_token_logprobs_match_full_softmax(tiny, chunk_size):
  graphdef, params = tiny
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, (3, 13)).astype(np.int32)
  mask = np.ones_like(tokens, bool)
  mask[0, :3] = False
  want_logp, want_ent = _np_token_logprobs(graphdef, params, tokens, mask, 0.7)
  model = nnx.merge(graphdef, params)
  logp, ent, _ = losses.model_logprobs(
    model,
    tokens,
    mask,
    chunk_size=chunk_size,
    temperature=0.7,
    with_entropy=True,
  )
  np.testing.assert_allclose(logp, want_logp, rtol=RTOL, atol=1e-5)
  np.testing.assert_allclose(ent, want_ent, rtol=RTOL, atol=1e-5)
  assert np.all(np.asarray(logp)[:, 0] == 0)
  got = algos.token_logprobs(
    graphdef, params, tokens, mask, chunk_size=chunk_size, temperature=0.7
  )
  np.testing.assert_allclose(got, want_logp, rtol=RTOL, atol=1e-5)


def test_prompt_length_skips_only_prompt_positions(tiny):
  graphdef, params = tiny
  rng = np.random.default_rng(3)
  tokens = rng.integers(0, 256, (2, 11)).astype(np.int32)
  mask = np.ones_like(tokens, bool)
  full = algos.token_logprobs(graphdef, params, tokens, mask)
  for p in (1, 4):
    got = algos.token_logprobs(
      graphdef, params, tokens, mask, prompt_length=p, chunk_size=3
    )
    np.testing.assert_allclose(got[:, p:], full[:, p:], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:, :p], 0.0)


def test_chunked_gradient_equals_unchunked(tiny):
  graphdef, params = tiny
  rng = np.random.default_rng(1)
  tokens = rng.integers(0, 256, (2, 12)).astype(np.int32)
  mask = np.ones_like(tokens, bool)
  weights = rng.normal(size=tokens.shape).astype(np.float32)

  def f(params, chunk_size):
    model = nnx.merge(graphdef, params)
    logp, ent, _ = losses.model_logprobs(
      model, tokens, mask, chunk_size=chunk_size, with_entropy=True
    )
    return jnp.sum(logp * weights) + 0.1 * jnp.sum(ent)

  grad = jax.jit(jax.grad(f), static_argnums=1)
  g_full, g_chunk = grad(params, None), grad(params, 5)
  for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_chunk)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("vocab_major", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("terms", ["both", "logp", "entropy"])
def test_logprob_gradients_match_autodiff_of_log_softmax(
  vocab_major, chunk_size, dtype, terms
):
  """The custom VJP against JAX's own gradient of the textbook formula
  (log-softmax, gather, entropy), with a temperature and both layouts;
  with both in the loss, or one only computed (its cotangent a symbolic
  zero, its term left out of the backward)."""
  rng = np.random.default_rng(3)
  B, T, D, V, temp = 2, 10, 8, 50, 0.7
  h = rng.normal(size=(B, T, D)).astype(np.float32)
  w = rng.normal(size=(V, D) if vocab_major else (D, V)).astype(np.float32)
  targets = rng.integers(0, V, (B, T))
  a, b = rng.normal(size=(2, B, T)).astype(np.float32)

  def reference(h, w):
    logits = h @ (w.T if vocab_major else w) / temp
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, targets[..., None], -1)[..., 0]
    ent = -jnp.sum(jnp.exp(logp_all) * logp_all, -1)
    return (terms != "entropy") * jnp.sum(logp * a) + (
      terms != "logp"
    ) * jnp.sum(ent * b)

  def ours(h, w):
    logp, ent = losses.logprobs_from_hidden(
      h.astype(dtype),
      w,
      vocab_major,
      targets,
      chunk_size=chunk_size,
      temperature=temp,
      with_entropy=True,
    )
    # A term computed but left out of the loss gets a symbolic-zero cotangent.
    if terms == "logp":
      return jnp.sum(logp * a)
    if terms == "entropy":
      return jnp.sum(ent * b)
    return jnp.sum(logp * a) + jnp.sum(ent * b)

  tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(atol=0.1)
  if terms == "entropy" and dtype == "float32":
    # The entropy's gradient alone, p * (z - lse + H), cancels: fp32 rounding
    # of either side reaches 1.2e-5 of its largest entry.
    tol = dict(rtol=1e-5, atol=3e-5)
  want, got = (
    jax.value_and_grad(reference, (0, 1)),
    jax.value_and_grad(ours, (0, 1)),
  )
  if dtype == "bfloat16":  # the reference on the same bf16-rounded inputs
    h = np.asarray(jnp.asarray(h, jnp.bfloat16), np.float32)
  (v_want, g_want), (v_got, g_got) = want(h, w), got(h, w)
  np.testing.assert_allclose(v_got, v_want, **tol)
  for x, y in zip(g_got, g_want):
    assert x.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(y)))
    np.testing.assert_allclose(x / scale, y / scale, **tol)


def test_chunked_logprobs_do_not_materialise_full_logits():
  """The compiled chunked pass needs far less temporary memory."""
  B, T, D, V = 2, 256, 16, 4096
  h = jax.ShapeDtypeStruct((B, T, D), jnp.float32)
  w = jax.ShapeDtypeStruct((V, D), jnp.float32)
  t = jax.ShapeDtypeStruct((B, T), jnp.int32)

  def temp_bytes(chunk):
    f = functools.partial(
      losses.logprobs_from_hidden, vocab_major=True, chunk_size=chunk
    )
    compiled = jax.jit(f).lower(h, w, targets_BxT=t).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  full = B * T * V * 4
  assert temp_bytes(None) >= full
  assert temp_bytes(16) < full / 4


# Reductions and KL ------------------------------------------------------------


def test_masked_reductions_never_nan():
  x = jnp.arange(6.0).reshape(2, 3)
  mask = jnp.array([[True, False, True], [False, False, False]])
  assert float(losses.masked_mean(x, mask)) == 1.0
  np.testing.assert_array_equal(losses.masked_mean(x, mask, axis=1), [1, 0])
  assert float(losses.masked_mean(x, jnp.zeros_like(mask))) == 0.0
  assert float(losses.masked_min(x, mask)) == 0.0
  assert float(losses.masked_max(x, mask)) == 2.0


def test_kl_estimators():
  logp, _, ref, _, _ = _rand_inputs(0)
  x = ref.astype(np.float64) - logp
  want = {"k1": -x, "k2": x**2 / 2, "k3": np.exp(x) - x - 1}
  for name, value in want.items():
    got = losses.kl_estimate(logp, ref, name)
    np.testing.assert_allclose(got, value, rtol=RTOL, atol=1e-6)
    zero = losses.kl_estimate(logp, logp, name)
    np.testing.assert_array_equal(zero, 0.0)
  assert np.all(np.asarray(losses.kl_estimate(logp, ref, "k3")) >= 0)
  with pytest.raises(ValueError, match="k1"):
    losses.kl_estimate(logp, ref, "k4")


def test_clipped_surrogate_at_the_boundaries():
  ratio = jnp.array([0.7, 0.8, 0.9, 1.0, 1.2, 1.28, 1.3, 1.5])
  for a in (1.0, -1.0):
    adv = jnp.full_like(ratio, a)
    loss, low, high = losses.clipped_surrogate(ratio, adv, 0.2, 0.28)
    clipped = np.clip(np.asarray(ratio), 0.8, 1.28)
    want = -np.minimum(np.asarray(ratio) * a, clipped * a)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    r = np.asarray(ratio)
    # Exactly at 1 - eps / 1 + eps is not clipped.
    np.testing.assert_array_equal(low, (r < 0.8 - 1e-7) & (a < 0))
    np.testing.assert_array_equal(high, (r > 1.28 + 1e-7) & (a > 0))
  # The clipped side has no gradient, the other side the full one.
  g = jax.grad(
    lambda r: losses.clipped_surrogate(r, jnp.array([1.0, 1.0]), 0.2, 0.2)[
      0
    ].sum()
  )(jnp.array([1.5, 0.5]))
  np.testing.assert_allclose(g, [0.0, -1.0])


@pytest.mark.parametrize("loss_type", losses.LOSS_AGGREGATIONS)
def test_aggregate(loss_type):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(4, 7)).astype(np.float32)
  mask = rng.random((4, 7)) < 0.6
  m = mask.astype(np.float64)
  want = {
    "grpo": ((x * m).sum(1) / np.maximum(m.sum(1), 1)).mean(),
    "bnpo": (x * m).sum() / m.sum(),
    "dapo": (x * m).sum() / 3.5,
    "dr_grpo": (x * m).sum() / (4 * 9),
    "seq_sum": (x * m).sum() / 4,
  }[loss_type]
  got = losses.aggregate(
    x, mask, loss_type, max_completion_length=9, dapo_normalizer=3.5
  )
  np.testing.assert_allclose(got, want, rtol=RTOL)


# GRPO vs TRL ------------------------------------------------------------------

GRPO_CASES = list(
  itertools.product(
    ["grpo", "bnpo", "dapo", "dr_grpo"],
    ["token", "sequence"],
    [0.0, 0.04],
  )
)


@pytest.mark.parametrize("loss_type,level,beta", GRPO_CASES)
def test_grpo_loss_matches_trl(loss_type, level, beta):
  logp, old, ref, adv, mask = _rand_inputs(3)
  for estimator, bias, delta, eps_high in [
    ("k3", False, None, 0.2),
    ("k1", True, 1.5, 0.28),
    ("k2", False, None, 0.28),
  ]:
    config = algos.GRPOConfig(
      loss_type=loss_type,
      importance_sampling_level=level,
      beta=beta,
      epsilon_low=0.2,
      epsilon_high=eps_high,
      kl_estimator=estimator,
      use_bias_correction_kl=bias,
      delta=delta,
      max_completion_length=12,
    )
    loss, metrics = algos.grpo_loss(
      config, logp, old, adv, mask, ref_logp_BxT=ref, dapo_normalizer=7.0
    )
    want = np_trl_grpo_loss(
      logp,
      old,
      ref,
      adv,
      mask,
      loss_type=loss_type,
      eps_low=0.2,
      eps_high=eps_high,
      beta=beta,
      level=level,
      estimator=estimator,
      bias_correction=bias,
      delta=delta,
      max_completion_length=12,
      dapo_normalizer=7.0,
    )
    np.testing.assert_allclose(loss, want, rtol=RTOL, atol=1e-7)
    assert np.isfinite(float(metrics["ratio_max"]))


VARIANT_CASES = list(
  itertools.product(
    ["cispo", "sapo", "luspo", "vespo"],
    ["token", "sequence"],
    [0.0, 0.04],
  )
)


def _variant_config(loss_type, level, beta, **kw):
  return algos.GRPOConfig(
    loss_type=loss_type,
    importance_sampling_level=level,
    beta=beta,
    epsilon_low=0.2,
    epsilon_high=1.1 if loss_type == "cispo" else 0.28,
    sapo_temperature_pos=1.3,
    sapo_temperature_neg=0.9,
    vespo_k_pos=2.5,
    vespo_lambda_pos=3.5,
    vespo_k_neg=1.5,
    vespo_lambda_neg=2.5,
    **kw,
  )


def _np_variant(loss_type, level, beta, logp, old, ref, adv, mask, **kw):
  return np_trl_grpo_loss(
    logp, old, ref, adv, mask, loss_type=loss_type, eps_low=0.2,
    eps_high=1.1 if loss_type == "cispo" else 0.28, beta=beta, level=level,
    sapo_tau=(1.3, 0.9), vespo=(2.5, 3.5, 1.5, 2.5), dapo_normalizer=7.0,
    **kw,
  )  # fmt: skip


@pytest.mark.parametrize("loss_type,level,beta", VARIANT_CASES)
def test_loss_variants_match_trl(loss_type, level, beta):
  """CISPO, SAPO, LUSPO, VESPO: loss value and gradient vs the numpy
  transcription of TRL 1.16 (gradient by central differences, with the
  stop-gradient weights of cispo / vespo held fixed)."""
  logp, old, ref, adv, mask = _rand_inputs(11, B=4, T=6)
  config = _variant_config(loss_type, level, beta)
  f = lambda lp: algos.grpo_loss(
    config, lp, old, adv, mask, ref_logp_BxT=ref, dapo_normalizer=7.0
  )[0]
  loss, g = jax.value_and_grad(f)(jnp.asarray(logp))
  want = _np_variant(loss_type, level, beta, logp, old, ref, adv, mask)
  np.testing.assert_allclose(loss, want, rtol=RTOL, atol=1e-7)
  num = np.zeros(logp.shape)
  h = 1e-6
  for idx in zip(*np.nonzero(mask)):
    e = np.zeros(logp.shape)
    e[idx] = h
    fd = lambda d: _np_variant(
      loss_type, level, beta, logp + d, old, ref, adv, mask,
      frozen_logp=logp,
    )  # fmt: skip
    num[idx] = (fd(e) - fd(-e)) / (2 * h)
  np.testing.assert_allclose(g, num, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "cispo", "sapo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_top_entropy_quantile_matches_trl(loss_type, level):
  """TRL's `top_entropy_quantile`: the policy loss only on the tokens whose
  entropy is in the batch's top fraction (the KL term on every token)."""
  logp, old, ref, adv, mask = _rand_inputs(5, B=4, T=7)
  entropy = np.random.default_rng(6).uniform(0, 3, logp.shape)
  for q in (0.2, 0.5):
    config = _variant_config(loss_type, level, 0.04, top_entropy_quantile=q)
    assert config.needs_entropy
    loss, _ = algos.grpo_loss(
      config, logp, old, adv, mask, ref_logp_BxT=ref,
      entropy_BxT=jnp.asarray(entropy, jnp.float32), dapo_normalizer=7.0,
    )  # fmt: skip
    want = _np_variant(
      loss_type, level, 0.04, logp, old, ref, adv, mask, entropy=entropy,
      top_entropy_quantile=q,
    )  # fmt: skip
    np.testing.assert_allclose(loss, want, rtol=RTOL, atol=1e-7)
    unmasked = _np_variant(loss_type, level, 0.04, logp, old, ref, adv, mask)
    assert abs(want - unmasked) > 1e-4  # the mask changed something
  with pytest.raises(ValueError, match="top_entropy_quantile"):
    algos.GRPOConfig(top_entropy_quantile=0.0)


def test_variants_by_name_and_their_metrics():
  """`make(name)` presets; the CISPO cap counts as clip_frac_high."""
  assert algos.make("cispo").config.epsilon_high == 5.0
  luspo = algos.make("luspo").config
  assert luspo.loss_type == "luspo"
  assert luspo.importance_sampling_level == "sequence"
  for name in ("cispo", "sapo", "luspo", "vespo"):
    assert algos.make(name).config.loss_type == name
    assert algos.make("grpo", loss_type=name).config.loss_type == name
  logp, old, _, adv, mask = _rand_inputs(12)
  config = algos.GRPOConfig(loss_type="cispo", epsilon_high=1.1, beta=0.0)
  _, m = algos.grpo_loss(config, logp, old, adv, mask)
  ratio = np.exp(logp.astype(np.float64) - old)
  want = ((ratio > 1.1) & (adv[:, None] > 0))[mask].mean()
  np.testing.assert_allclose(m["clip_frac_high"], want, rtol=1e-6)


def test_vespo_weight_is_one_on_policy_and_falls_off():
  """phi(1) = 1: on-policy VESPO is REINFORCE with the advantage; phi
  shrinks as the sequence ratio moves away from 1 either way."""
  mask = np.ones((3, 4), bool)
  adv = jnp.ones((3, 1))
  log_ratio = jnp.asarray([[0.0] * 4, [0.25] * 4, [-0.5] * 4])
  phi = algos.grpo.vespo_weights(log_ratio, mask, adv, 2.0, 3.0, 3.0, 2.0)
  np.testing.assert_allclose(phi[0, 0], 1.0, rtol=1e-6)
  assert float(phi[1, 0]) < 1 and float(phi[2, 0]) < 1


def test_sequence_level_dr_grpo_normalises_by_tokens_not_one():
  """Regression: a sequence-level loss is [B, 1]; dr_grpo must still divide
  by B x the completion budget (here 9 columns), not by B x 1."""
  logp, old, _, adv, mask = _rand_inputs(13)
  assert mask.any(0).argmax() == 1  # completions start at column 1
  config = algos.GRPOConfig(
    loss_type="dr_grpo", importance_sampling_level="sequence", beta=0.0
  )
  loss, _ = algos.grpo_loss(config, logp, old, adv, mask)
  want = np_trl_grpo_loss(
    logp, old, None, adv, mask, loss_type="dr_grpo", eps_low=0.2,
    eps_high=0.2, beta=0.0, level="sequence", max_completion_length=9,
  )  # fmt: skip
  np.testing.assert_allclose(loss, want, rtol=RTOL)
  x = np.ones((2, 1), np.float32)
  m = np.ones((2, 10), bool)
  for lt in losses.LOSS_AGGREGATIONS:
    np.testing.assert_allclose(
      losses.aggregate(x, m, lt, dapo_normalizer=20.0),
      losses.aggregate(np.ones((2, 10), np.float32), m, lt, dapo_normalizer=20),
    )


def test_dr_grpo_normaliser_is_the_completion_budget():
  """Regression: prompt (5 columns) + completion budget (7): the default
  normaliser is B x 7, TRL's max_completion_length, not B x 12."""
  rng = np.random.default_rng(14)
  B, P, L = 4, 5, 7
  mask = np.zeros((B, P + L), bool)
  for i, n in enumerate([7, 3, 1, 5]):
    mask[i, P : P + n] = True
  x = rng.normal(size=mask.shape).astype(np.float32)
  got = losses.aggregate(x, mask, "dr_grpo")
  np.testing.assert_allclose(got, (x * mask).sum() / (B * L), rtol=RTOL)
  np.testing.assert_allclose(losses.completion_width(mask), L)
  np.testing.assert_allclose(
    losses.aggregate(x, mask, "dr_grpo", max_completion_length=16),
    (x * mask).sum() / (B * 16),
    rtol=RTOL,
  )


def test_grpo_gradient_matches_trl_in_torch_free_numpy():
  """d loss / d logp of the token-level GRPO loss, by finite differences of
  the numpy reference."""
  logp, old, ref, adv, mask = _rand_inputs(4, B=3, T=5)
  config = algos.GRPOConfig(loss_type="bnpo", beta=0.04)
  g = jax.grad(
    lambda lp: algos.grpo_loss(config, lp, old, adv, mask, ref_logp_BxT=ref)[0]
  )(jnp.asarray(logp))
  f = lambda lp: np_trl_grpo_loss(
    lp, old, ref, adv, mask, loss_type="bnpo", eps_low=0.2, eps_high=0.2,
    beta=0.04, level="token",
  )  # fmt: skip
  num = np.zeros(logp.shape)
  h = 1e-6
  for idx in np.ndindex(logp.shape):
    e = np.zeros(logp.shape)
    e[idx] = h
    num[idx] = (f(logp + e) - f(logp - e)) / (2 * h)
  np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-5)


def test_grpo_on_policy_without_old_logprobs():
  logp, _, ref, adv, mask = _rand_inputs(5)
  config = algos.GRPOConfig(loss_type="grpo", beta=0.0)
  loss, m = algos.grpo_loss(config, logp, None, adv, mask)
  want = np_trl_grpo_loss(
    logp, logp, ref, adv, mask, loss_type="grpo", eps_low=0.2,
    eps_high=0.2, beta=0.0, level="token",
  )  # fmt: skip
  np.testing.assert_allclose(loss, want, rtol=RTOL)
  assert float(m["ratio_mean"]) == 1.0
  assert float(m["clip_frac_low"]) == float(m["clip_frac_high"]) == 0.0


def test_grpo_clip_fractions():
  logp, old, _, adv, mask = _rand_inputs(6)
  config = algos.GRPOConfig(epsilon_low=0.1, epsilon_high=0.15, beta=0.0)
  _, m = algos.grpo_loss(config, logp, old, adv, mask)
  ratio = np.exp(logp.astype(np.float64) - old)
  a = adv[:, None]
  low = ((ratio < 0.9) & (a < 0))[mask].mean()
  high = ((ratio > 1.15) & (a > 0))[mask].mean()
  np.testing.assert_allclose(m["clip_frac_low"], low, rtol=1e-6)
  np.testing.assert_allclose(m["clip_frac_high"], high, rtol=1e-6)
  np.testing.assert_allclose(m["ratio_min"], ratio[mask].min(), rtol=1e-5)
  np.testing.assert_allclose(m["ratio_max"], ratio[mask].max(), rtol=1e-5)


# PPO, REINFORCE, SFT ----------------------------------------------------------


def test_ppo_loss_matches_numpy():
  logp, old, _, _, mask = _rand_inputs(7)
  rng = np.random.default_rng(7)
  adv = rng.normal(size=logp.shape).astype(np.float32)
  values = rng.normal(size=logp.shape).astype(np.float32)
  old_values = (values + rng.normal(0, 0.3, values.shape)).astype(np.float32)
  returns = rng.normal(size=logp.shape).astype(np.float32)
  ent = rng.uniform(0, 2, logp.shape).astype(np.float32)
  config = algos.PPOConfig(
    epsilon_low=0.2, epsilon_high=0.3, value_clip=0.2, vf_coef=0.5,
    entropy_coef=0.01,
  )  # fmt: skip
  batch = dict(
    completion_mask=mask, old_logprobs=old, advantages=adv,
    old_values=old_values, returns=returns,
  )  # fmt: skip
  loss, m = algos.ppo_loss(config, logp, values, batch, entropy_BxT=ent)
  m64 = mask.astype(np.float64)
  mean = lambda x: (x * m64).sum() / m64.sum()
  ratio = np.exp(logp.astype(np.float64) - old)
  pg = mean(-np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.3) * adv))
  vclip = old_values + np.clip(values - old_values, -0.2, 0.2)
  vf = 0.5 * mean(np.maximum((values - returns) ** 2, (vclip - returns) ** 2))
  want = pg + 0.5 * vf - 0.01 * mean(ent)
  np.testing.assert_allclose(m["policy_loss"], pg, rtol=RTOL)
  np.testing.assert_allclose(m["value_loss"], vf, rtol=RTOL)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


@pytest.mark.parametrize("clip", [None, 0.2])
@pytest.mark.parametrize("loss_type", ["seq_sum", "bnpo"])
def test_reinforce_loss_matches_numpy(clip, loss_type):
  logp, old, _, adv, mask = _rand_inputs(8)
  config = algos.ReinforceConfig(clip_epsilon=clip, loss_type=loss_type)
  loss, _ = algos.reinforce_loss(config, logp, adv, mask, old_logp_BxT=old)
  a = adv[:, None].astype(np.float64)
  if clip is None:
    per = -a * logp
  else:
    ratio = np.exp(logp.astype(np.float64) - old)
    per = -np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)
  m = mask.astype(np.float64)
  if loss_type == "seq_sum":
    want = (per * m).sum() / len(per)
  else:
    want = (per * m).sum() / m.sum()
  np.testing.assert_allclose(loss, want, rtol=RTOL)


def test_sft_loss_matches_numpy():
  logp, _, _, _, mask = _rand_inputs(9)
  loss, m = algos.sft_loss(algos.SFTConfig(), logp, mask)
  want = -(logp * mask).sum() / mask.sum()
  np.testing.assert_allclose(loss, want, rtol=RTOL)
  np.testing.assert_allclose(m["perplexity"], np.exp(want), rtol=1e-5)
