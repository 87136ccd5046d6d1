"""Sampling decoder: HF greedy parity, filters, stops, budget forcing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from hf_helpers import make_hf_checkpoint

from rlx import decoding as dec
from rlx.decoding import step as step_lib
from rlx.models import init_model, make_mesh, preset, shard_model
from rlx.models.hf import load_pretrained

PAD, EOS = 0, 2
PROMPT_LENS = (5, 9, 3, 12)


def _prompts(seed=0, lens=PROMPT_LENS, vocab=128):
  rng = np.random.default_rng(seed)
  return [list(rng.integers(3, vocab, n)) for n in lens]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def hf_pair(request, tmp_path_factory):
  path, hf = make_hf_checkpoint(
    tmp_path_factory.mktemp(request.param), request.param
  )
  return hf, nnx.split(load_pretrained(path))


def _hf_generate(hf, tokens, mask, **kw):
  with torch.no_grad():
    out = hf.generate(
      torch.tensor(tokens, dtype=torch.long),
      attention_mask=torch.tensor(mask),
      pad_token_id=PAD,
      **kw,
    )
  return out


def test_greedy_matches_hf(hf_pair):
  hf, (graphdef, params) = hf_pair
  tokens, mask = dec.pad_prompts(_prompts(), PAD, buckets=(16,))
  n_new = 28
  cfg = dec.SamplingConfig(
    max_new_tokens=n_new, temperature=0, eos_ids=(EOS,), pad_id=PAD
  )
  out = dec.make_sampler(graphdef, params, cfg)(
    params, tokens, mask, jax.random.key(0)
  )
  ref = _hf_generate(
    hf, tokens, mask, max_new_tokens=n_new, do_sample=False, eos_token_id=EOS
  )[:, tokens.shape[1] :].numpy()
  ref = np.pad(ref, ((0, 0), (0, n_new - ref.shape[1])))
  np.testing.assert_array_equal(np.asarray(out.tokens), ref)

  # raw log-probs equal a full forward pass over prompt + completion.
  model = nnx.merge(graphdef, params)
  full = np.concatenate([tokens, np.asarray(out.tokens)], axis=1)
  full_mask = np.concatenate([mask, np.asarray(out.mask)], axis=1)
  logits, _ = model(jnp.asarray(full), jnp.asarray(full_mask))
  lp = jax.nn.log_softmax(logits[:, tokens.shape[1] - 1 : -1], axis=-1)
  lp = np.take_along_axis(np.asarray(lp), full[:, tokens.shape[1] :, None], 2)
  lp = np.where(np.asarray(out.mask), lp[..., 0], 0.0)
  np.testing.assert_allclose(out.raw_logprobs, lp, atol=2e-4)
  np.testing.assert_allclose(out.sum_logprobs, lp.sum(1), atol=1e-3)
  assert out.sampling_logprobs is None and out.beam_scores is None


@pytest.fixture(scope="module")
def tiny():
  model = init_model(preset("tiny", init_std=0.3), seed=1)
  return nnx.split(model)


def test_top_k_1_equals_greedy_and_no_recompile(tiny):
  graphdef, params = tiny
  tokens, mask = dec.pad_prompts(_prompts(1, vocab=256), PAD, buckets=(16,))
  greedy = dec.SamplingConfig(max_new_tokens=16, temperature=0)
  top1 = dec.SamplingConfig(
    max_new_tokens=16, temperature=0.8, top_k=1, num_samples=2
  )
  g = dec.make_sampler(graphdef, params, greedy)(
    params, tokens, mask, jax.random.key(0)
  )
  run = dec.make_sampler(graphdef, params, top1)
  s = run(params, tokens, mask, jax.random.key(3))
  np.testing.assert_array_equal(s.tokens, np.repeat(g.tokens, 2, axis=0))
  np.testing.assert_allclose(s.sampling_logprobs, 0.0, atol=1e-6)
  np.testing.assert_allclose(
    s.raw_logprobs, np.repeat(g.raw_logprobs, 2, axis=0), atol=1e-5
  )
  # New prompts of the same padded shape: no new compilation.
  tokens2, mask2 = dec.pad_prompts(
    _prompts(2, (16, 1, 7, 4), vocab=256), PAD, buckets=(16,)
  )
  s2 = run(params, tokens2, mask2, jax.random.key(4))
  assert run._cache_size() == 1
  assert not np.array_equal(s2.tokens, s.tokens)


# Fake step functions: the "cache" holds the row's prompt index and a step
# counter; logits come from a fixed table or a script.


def _fixed_step(logits_NxV):
  table = jnp.asarray(logits_NxV, jnp.float32)

  def step(tokens, cache, mask):
    del tokens, mask
    return table[cache["row"]], cache

  return step


def _fake_cache(n):
  return {"row": jnp.arange(n), "t": jnp.zeros((n,), jnp.int32)}


def _run(step, n, cfg, key=0, p=2):
  tokens = jnp.ones((n, p), jnp.int32)
  fn = jax.jit(
    lambda key: dec.sample(step, _fake_cache(n), tokens, tokens, key, cfg)
  )
  return jax.tree.map(np.asarray, fn(jax.random.key(key)))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize(
  "kw",
  [
    dict(top_k=5),
    dict(top_p=0.6),
    dict(top_p=0.9, temperature=0.5),
    dict(min_p=0.2),
    dict(top_k=20, top_p=0.8, min_p=0.05, temperature=1.5),
  ],
)
def test_filters_match_numpy(kw):
  rng = np.random.default_rng(0)
  n, v = 3, 40
  logits = rng.normal(size=(n, v)) * 2.0
  cfg = dec.SamplingConfig(max_new_tokens=100, num_samples=4, **kw)
  out = _run(_fixed_step(logits), n, cfg)

  # Independent numpy filter: sort, cut, renormalise.
  x = logits / kw.get("temperature", 1.0)
  allowed = np.ones_like(x, bool)
  if "top_k" in kw:
    kth = np.sort(x, -1)[:, -kw["top_k"]][:, None]
    allowed &= x >= kth
  if "top_p" in kw:
    for i in range(n):
      probs = _softmax(np.where(allowed[i], x[i], -np.inf))
      order = np.argsort(-probs)
      before = np.cumsum(probs[order]) - probs[order]
      keep = np.zeros(v, bool)
      keep[order[before < kw["top_p"]]] = True
      allowed[i] &= keep
  if "min_p" in kw:
    probs = _softmax(np.where(allowed, x, -np.inf))
    allowed &= probs >= kw["min_p"] * probs.max(-1, keepdims=True)
  probs = _softmax(np.where(allowed, x, -np.inf))

  rows = np.repeat(np.arange(n), 4)
  ok = allowed[rows[:, None], out.tokens]
  assert ok.all()
  assert allowed.sum(-1).min() >= 1 and (allowed.sum(-1) < v).all()
  np.testing.assert_allclose(
    out.sampling_logprobs,
    np.log(probs[rows[:, None], out.tokens]),
    atol=1e-5,
  )
  np.testing.assert_allclose(
    out.raw_logprobs,
    np.log(_softmax(logits)[rows[:, None], out.tokens]),
    atol=1e-5,
  )
  # Every allowed token of some row shows up (the filter is not too tight).
  seen = np.zeros_like(allowed)
  seen[rows[:, None], out.tokens] = True
  assert (seen | ~allowed).all() or kw.get("top_k", 0) >= 20


def test_temperature_sampling_frequencies():
  logits = np.log(np.array([[0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02]]))
  temp = 0.7
  cfg = dec.SamplingConfig(max_new_tokens=200, temperature=temp, num_samples=40)
  out = _run(_fixed_step(logits), 1, cfg, key=7)
  counts = np.bincount(out.tokens.ravel(), minlength=8)
  expected = _softmax(logits[0] / temp) * out.tokens.size
  chi2 = np.sum((counts - expected) ** 2 / expected)
  assert chi2 < 30.0, (chi2, counts, expected)  # df = 7: p ~ 1e-4
  # Samples of one group are not copies of each other.
  assert len({tuple(r) for r in out.tokens}) == 40
  # Deterministic for a key.
  again = _run(_fixed_step(logits), 1, cfg, key=7)
  np.testing.assert_array_equal(out.tokens, again.tokens)


def test_sampler_across_blocks_never_picks_zero_probability():
  v, support = 300, np.array([0, 127, 128, 200, 255, 256, 290, 299])
  logits = np.full((1, v), -np.inf)
  logits[0, support] = np.log([0.05, 0.1, 0.2, 0.05, 0.15, 0.25, 0.1, 0.1])
  cfg = dec.SamplingConfig(max_new_tokens=100, num_samples=40)
  out = _run(_fixed_step(logits), 1, cfg, key=3)
  assert np.isin(out.tokens, support).all()
  counts = np.bincount(out.tokens.ravel(), minlength=v)[support]
  expected = np.exp(logits[0, support]) * out.tokens.size
  assert np.sum((counts - expected) ** 2 / expected) < 30.0


def _script_step(script_NxT, vocab=64):
  """Row r emits script[r, t] at its t-th new token (one-hot logits)."""
  script = jnp.asarray(script_NxT, jnp.int32)

  def step(tokens, cache, mask):
    del tokens, mask
    tok = script[cache["row"], cache["t"]]
    logits = jnp.where(jnp.arange(vocab)[None] == tok[:, None], 10.0, -10.0)
    return logits, dict(cache, t=cache["t"] + 1)

  return step


def test_stop_tokens_and_sequences():
  script = np.array(
    [
      [10, 11, 12, 13, 14, 15, 16, 17],
      [10, 11, 5, 13, 14, 15, 16, 17],  # stop token 5
      [20, 21, 22, 23, 24, 25, 26, 27],  # stop sequence (22, 23)
      [30, 31, 22, 33, 22, 23, 36, 37],  # stop sequence after a false start
      [40, 41, 42, 43, 44, 45, 46, 2],  # eos on the last step
    ]
  )
  cfg = dec.SamplingConfig(
    max_new_tokens=8,
    temperature=0,
    eos_ids=(2,),
    stop_sequences=((5,), (22, 23), (1, 2, 3)),
    pad_id=63,
  )
  out = _run(_script_step(script), len(script), cfg)
  lengths = [8, 3, 4, 6, 8]
  np.testing.assert_array_equal(out.lengths, lengths)
  for r, n in enumerate(lengths):
    np.testing.assert_array_equal(out.tokens[r, :n], script[r, :n])
    assert (out.tokens[r, n:] == 63).all()
    assert out.mask[r, :n].all() and not out.mask[r, n:].any()
    assert (out.raw_logprobs[r, n:] == 0).all()


END, WAIT = (50, 51), (52, 53)


def test_budget_forcing_inserts_wait():
  # The model tries to end thinking at its 3rd token, then after each wait.
  script = np.array([[10, 11, 50, 12, 50, 13, 50, 51, 14, 2, 9, 9, 9, 9]])
  cfg = dec.SamplingConfig(
    max_new_tokens=14,
    temperature=0,
    eos_ids=(2,),
    think_end=END,
    wait=WAIT,
    min_thinking_tokens=5,
    pad_id=63,
  )
  out = _run(_script_step(script), 1, cfg)
  # t=2: </think> too early (2 thinking tokens) -> "Wait" (2 tokens).
  # The fake model's counter advanced through the forced tokens, so next
  # it emits 50 at t=4: thinking count is 4 < 5 -> "Wait" again; at t=6
  # count 6 >= 5: </think> is kept and completed by forcing 51.
  expected = [10, 11, 52, 53, 52, 53, 50, 51, 14, 2]
  np.testing.assert_array_equal(out.tokens[0, :10], expected)
  forced = [0, 0, 1, 1, 1, 1, 0, 1, 0, 0]
  np.testing.assert_array_equal(out.forced[0, :10], forced)
  assert out.lengths[0] == 10
  assert out.sampling_logprobs is None  # greedy: nothing was drawn
  assert np.isfinite(out.raw_logprobs).all()
  # Sampled (the one-hot logits leave no choice): forced tokens have
  # sampling log-prob 0, drawn ones their (near 0) log-prob, and the raw
  # log-prob of a forced "Wait" the model's (about -20).
  hot = dec.SamplingConfig(**{**cfg.__dict__, "temperature": 1.0})
  sampled = _run(_script_step(script), 1, hot)
  np.testing.assert_array_equal(sampled.tokens, out.tokens)
  is_forced = np.array(forced, bool)
  assert (sampled.sampling_logprobs[0, :10][is_forced] == 0).all()
  assert (sampled.sampling_logprobs[0, :10][~is_forced] > -1e-6).all()
  assert (sampled.raw_logprobs[0, 2:6] < -10).all()

  # max_waits caps the insertions.
  cfg1 = dec.SamplingConfig(**{**cfg.__dict__, "max_waits": 1})
  out1 = _run(_script_step(script), 1, cfg1)
  np.testing.assert_array_equal(out1.tokens[0, :6], [10, 11, 52, 53, 50, 51])


def test_budget_forcing_forces_end():
  script = np.array([[10 + i for i in range(10)] + [2, 9, 9, 9, 9, 9]])
  cfg = dec.SamplingConfig(
    max_new_tokens=16,
    temperature=0,
    eos_ids=(2,),
    think_end=END,
    max_thinking_tokens=4,
    pad_id=63,
  )
  out = _run(_script_step(script), 1, cfg)
  expected = [10, 11, 12, 13, 50, 51, 16, 17, 18, 19, 2]
  np.testing.assert_array_equal(out.tokens[0, :11], expected)
  np.testing.assert_array_equal(
    out.forced[0, :11], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
  )
  assert out.lengths[0] == 11


def test_sharded_matches_single_device(tiny):
  graphdef, params = tiny
  tokens, mask = dec.pad_prompts(_prompts(3, vocab=256), PAD, buckets=(16,))
  cfg = dec.SamplingConfig(
    max_new_tokens=12, temperature=1.0, top_p=0.9, num_samples=2
  )
  key = jax.random.key(5)
  single = dec.make_sampler(graphdef, params, cfg)(params, tokens, mask, key)
  mesh = make_mesh(2, 2, 2)
  sharded_model = shard_model(nnx.merge(graphdef, params), mesh)
  _, sparams = nnx.split(sharded_model)
  run = dec.make_sampler(graphdef, sparams, cfg, mesh=mesh)
  multi = run(sparams, tokens, mask, key)
  np.testing.assert_array_equal(single.tokens, multi.tokens)
  np.testing.assert_allclose(single.raw_logprobs, multi.raw_logprobs, atol=1e-4)


def test_cache_plan_segments_give_same_tokens(tiny):
  graphdef, params = tiny
  tokens, mask = dec.pad_prompts(_prompts(4, vocab=256), PAD, buckets=(16,))
  outs = []
  for chunk in (None, 5):
    cfg = dec.SamplingConfig(
      max_new_tokens=20, temperature=0.9, cache_chunk=chunk
    )
    outs.append(
      dec.make_sampler(graphdef, params, cfg)(
        params, tokens, mask, jax.random.key(1)
      )
    )
  np.testing.assert_array_equal(outs[0].tokens, outs[1].tokens)
  assert dec.cache_plan(16, 19, 5) == [(5, 21), (5, 26), (5, 31), (4, 35)]


def test_bf16_decode_has_fp32_logits_and_matches_the_full_forward():
  """A bf16 model decodes with fp32 logits (its bf16 lm_head dot with
  fp32 output, never rounded to bf16) and, on XLA:CPU, an fp32 KV cache
  holding the bf16 keys and values; the log-probs of its greedy tokens
  match the uncached forward pass over prompt + completion."""
  model = init_model(preset("tiny", init_std=0.3, dtype="bfloat16"), seed=1)
  graphdef, params = nnx.split(model)
  bf16, f32 = jnp.bfloat16, jnp.float32
  h = jax.random.normal(jax.random.key(0), (2, 3, 64)).astype(bf16)
  w = model.lm_head.kernel[...].astype(bf16)
  want = jnp.dot(h, w, preferred_element_type=f32)
  np.testing.assert_array_equal(model.unembed(h), want)
  assert jnp.any(want.astype(bf16).astype(f32) != want)
  assert step_lib.cache_dtype(model.config) == f32
  assert step_lib.unfused(want) is not want
  np.testing.assert_array_equal(jax.jit(step_lib.unfused)(want), want)

  tokens, mask = dec.pad_prompts(_prompts(2, vocab=256), PAD, buckets=(16,))
  cfg = dec.SamplingConfig(max_new_tokens=10, temperature=0)
  out = dec.make_sampler(graphdef, params, cfg)(
    params, tokens, mask, jax.random.key(0)
  )
  full = jnp.concatenate([tokens, out.tokens], axis=1)
  logits, _ = model(full, jnp.concatenate([mask, out.mask], axis=1))
  logprobs = jax.nn.log_softmax(logits[:, tokens.shape[1] - 1 : -1], -1)
  want = jnp.take_along_axis(logprobs, out.tokens[..., None], -1)[..., 0]
  assert out.mask.sum() > 10
  err = jnp.abs(out.raw_logprobs - jnp.where(out.mask, want, 0.0))
  assert float(err.max()) < 0.1 and float(err.mean()) < 0.03  # bf16 noise


def test_pad_prompts_and_buckets():
  assert dec.bucket_length(5, (4, 8, 16)) == 8
  assert dec.bucket_length(8, (4, 8, 16)) == 8
  with pytest.raises(ValueError, match="exceeds"):
    dec.bucket_length(17, (4, 8, 16))
  tokens, mask = dec.pad_prompts([[1, 2], [3, 4, 5]], 9, buckets=(4,))
  np.testing.assert_array_equal(tokens, [[9, 9, 1, 2], [9, 3, 4, 5]])
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [0, 1, 1, 1]])
  assert tokens.dtype == np.int32


def test_config_validation():
  with pytest.raises(ValueError, match="top_p"):
    dec.SamplingConfig(max_new_tokens=4, top_p=0.0)
  with pytest.raises(ValueError, match="think_end"):
    dec.SamplingConfig(max_new_tokens=4, max_thinking_tokens=3)
