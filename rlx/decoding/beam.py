"""Beam search with Hugging Face `transformers` (5.x) semantics.

Matches `generate(num_beams=k, do_sample=False, early_stopping=...,
length_penalty=...)` for decoder-only models, step for step:
- each step keeps the top K = max(2, 1 + n_eos) * k candidates over all
  beams (t5x / HF "top-2k"), the best k that did not hit EOS continue;
- a candidate that hits EOS (or the last step, max length) becomes a
  finished hypothesis only if it ranks in the top k of the K candidates,
  scored `sum_logprob / generated_len ** length_penalty` where
  generated_len counts the new tokens, EOS included;
- the finished set keeps the k best; no more are added once the early-stop
  heuristic holds (`early_stopping=False`: the best running beam, divided
  by the current generated length ** length_penalty, cannot beat the worst
  finished one; `'never'` with length_penalty > 0 divides by
  max_new_tokens ** length_penalty instead) or, with
  `early_stopping=True`, once k hypotheses are finished.
The loop runs all `max_new_tokens` steps (static shapes); HF's early exit
of the whole batch only skips steps that can no longer change the result.
Log-probs are of the raw model (no temperature / processors).
The cache is reordered each step by a gather over its rows (only the
slots after the prompt, which all beams of a prompt share).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rlx.decoding import step as step_lib
from rlx.decoding.sampling import DecodeOutput, _ids

_BIG = 1.0e9


@dataclasses.dataclass(frozen=True)
class BeamConfig:
  """Static settings of `beam_search` (HF names and defaults)."""

  max_new_tokens: int
  num_beams: int = 4
  length_penalty: float = 1.0
  early_stopping: bool | str = False
  num_return_sequences: int = 1
  eos_ids: tuple[int, ...] = ()
  pad_id: int = 0
  cache_chunk: int | None = 128

  def __post_init__(self):
    object.__setattr__(self, "eos_ids", _ids(self.eos_ids))
    if self.max_new_tokens < 1:
      raise ValueError(
        f"BeamConfig.max_new_tokens={self.max_new_tokens}: must be >= 1"
      )
    if self.num_beams < 1:
      raise ValueError(f"BeamConfig.num_beams={self.num_beams}: must be >= 1")
    if not 1 <= self.num_return_sequences <= self.num_beams:
      raise ValueError(
        f"BeamConfig.num_return_sequences={self.num_return_sequences}: "
        f"allowed 1..num_beams={self.num_beams}"
      )
    if self.early_stopping not in (True, False, "never"):
      raise ValueError(
        f"BeamConfig.early_stopping={self.early_stopping!r}: allowed "
        "True, False, 'never'"
      )


def _gather(x_BxKx, idx_BxJ):
  """x[b, idx[b, j], ...] -> [B, J, ...]."""
  return jax.vmap(lambda x, i: x[i])(x_BxKx, idx_BxJ)


def beam_search(
  step_fn, cache, prompt_tokens_BxP, prompt_mask_BxP, cfg: BeamConfig
) -> DecodeOutput:
  """k-beam search; returns `num_return_sequences` rows per prompt.

  step_fn, cache: as for `sample` (cache for B prompt rows). Rows of prompt
  b are b * R .. b * R + R - 1 (R = num_return_sequences), best first.
  `beam_scores` are HF's `sequences_scores`; `raw_logprobs` the per-token
  log-probs and `sum_logprobs` their sum; `sampling_logprobs` is None
  (nothing is sampled); `mask` covers tokens up to and including EOS.
  """
  b, p = prompt_tokens_BxP.shape
  k, n_new = cfg.num_beams, cfg.max_new_tokens
  n_keep = max(2, 1 + len(cfg.eos_ids)) * k
  lp_pow = cfg.length_penalty
  eos = jnp.asarray(cfg.eos_ids if cfg.eos_ids else (-1,), jnp.int32)

  mask_BxP = prompt_mask_BxP.astype(bool)
  logits, cache = step_fn(prompt_tokens_BxP, cache, mask_BxP)
  logits, cache = step_lib.repeat_rows((logits, cache), k)

  state = dict(
    run_tok=jnp.zeros((b, k, n_new), jnp.int32),
    run_lp=jnp.zeros((b, k, n_new), jnp.float32),
    run_score=jnp.concatenate(
      [jnp.zeros((b, 1)), jnp.full((b, k - 1), -_BIG)], axis=1
    ).astype(jnp.float32),
    fin_tok=jnp.full((b, k, n_new), cfg.pad_id, jnp.int32),
    fin_lp=jnp.zeros((b, k, n_new), jnp.float32),
    fin_len=jnp.zeros((b, k), jnp.int32),
    fin_score=jnp.full((b, k), -_BIG, jnp.float32),
    fin_flag=jnp.zeros((b, k), bool),
    open=jnp.ones((b,), bool),  # HF: is_early_stop_heuristic_unsatisfied
  )

  def advance(t, logits_NxV, state):
    """One HF beam step on logits [B*k, V]; returns (state, beam rows)."""
    v = logits_NxV.shape[-1]
    logp = jax.nn.log_softmax(logits_NxV.astype(jnp.float32), axis=-1)
    logp_BxKxV = logp.reshape(b, k, v)
    total = (logp_BxKxV + state["run_score"][:, :, None]).reshape(b, k * v)
    top_score, top_idx = jax.lax.top_k(total, n_keep)
    beam, tok = top_idx // v, (top_idx % v).astype(jnp.int32)
    tok_lp = jnp.take_along_axis(logp_BxKxV.reshape(b, k * v), top_idx, 1)
    cand_tok = _gather(state["run_tok"], beam).at[:, :, t].set(tok)
    cand_lp = _gather(state["run_lp"], beam).at[:, :, t].set(tok_lp)
    hits = jnp.isin(tok, eos) | (t == n_new - 1)

    # Running beams: the best k candidates that did not finish.
    run_cand = top_score - hits.astype(jnp.float32) * _BIG
    _, nxt = jax.lax.top_k(run_cand, k)
    run_score = jnp.take_along_axis(run_cand, nxt, 1)
    src_beam = jnp.take_along_axis(beam, nxt, 1)

    # Finished hypotheses: merge new ones into the k best.
    gen_len = (t + 1).astype(jnp.float32)
    fin_cand = top_score / gen_len**lp_pow
    just = hits & (jnp.arange(n_keep) < k)[None]
    full = jnp.all(state["fin_flag"], axis=1, keepdims=True)
    if cfg.early_stopping is True:
      fin_cand = fin_cand - full.astype(jnp.float32) * _BIG
    fin_cand = fin_cand - (~state["open"][:, None]).astype(jnp.float32) * _BIG
    fin_cand = fin_cand - (~just).astype(jnp.float32) * _BIG
    m_score = jnp.concatenate([state["fin_score"], fin_cand], 1)
    m_tok = jnp.concatenate([state["fin_tok"], cand_tok], 1)
    m_lp = jnp.concatenate([state["fin_lp"], cand_lp], 1)
    m_len = jnp.concatenate(
      [state["fin_len"], jnp.full((b, n_keep), t + 1, jnp.int32)], 1
    )
    m_flag = jnp.concatenate([state["fin_flag"], just], 1)
    fin_score, sel = jax.lax.top_k(m_score, k)

    run_tok = _gather(cand_tok, nxt)
    run_lp = _gather(cand_lp, nxt)
    new_state = dict(
      run_tok=run_tok,
      run_lp=run_lp,
      run_score=run_score,
      fin_tok=_gather(m_tok, sel),
      fin_lp=_gather(m_lp, sel),
      fin_len=_gather(m_len, sel),
      fin_score=fin_score,
      fin_flag=_gather(m_flag, sel),
    )
    # HF's early-stop heuristic, with cur_len = generated length t + 1.
    if cfg.early_stopping == "never" and lp_pow > 0:
      best_len = jnp.float32(n_new)
    else:
      best_len = gen_len
    best_run = run_score[:, 0] / best_len**lp_pow
    worst = jnp.where(
      new_state["fin_flag"],
      jnp.min(fin_score, axis=1, keepdims=True),
      -_BIG,
    )
    new_state["open"] = state["open"] & jnp.any(
      best_run[:, None] > worst, axis=1
    )
    rows = (src_beam + jnp.arange(b)[:, None] * k).reshape(-1)
    next_tok = jnp.take_along_axis(run_tok, jnp.full((b, k, 1), t), 2)
    return new_state, rows, next_tok.reshape(-1)

  state, rows, next_tok = advance(jnp.int32(0), logits, state)

  def body(t, cache, carry):
    state, rows, next_tok = carry
    cache = step_lib.reorder_rows(cache, rows, start=p)
    logits, cache = step_fn(
      next_tok[:, None], cache, jnp.ones((b * k, 1), bool)
    )
    state, rows, next_tok = advance(t, logits, state)
    return cache, (state, rows, next_tok), None

  plan = step_lib.cache_plan(p, n_new - 1, cfg.cache_chunk)
  _, (state, _, _), _ = step_lib.scan_with_growing_cache(
    body, cache, (state, rows, next_tok), plan, start=1
  )

  r = cfg.num_return_sequences
  flat = lambda x: x[:, :r].reshape((b * r,) + x.shape[2:])
  tokens, lp = flat(state["fin_tok"]), flat(state["fin_lp"])
  lengths = flat(state["fin_len"])
  mask = jnp.arange(n_new)[None] < lengths[:, None]
  tokens = jnp.where(mask, tokens, cfg.pad_id)
  lp = jnp.where(mask, lp, 0.0)
  return DecodeOutput(
    tokens=tokens,
    mask=mask,
    lengths=lengths,
    raw_logprobs=lp,
    sampling_logprobs=None,
    sum_logprobs=jnp.sum(lp, axis=1),
    beam_scores=flat(state["fin_score"]),
    forced=jnp.zeros_like(mask),
  )
