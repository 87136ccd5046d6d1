"""Shared loss pieces: chunked log-probs, masked reductions, KL, clipping.

Log-prob convention (used by every algorithm): for tokens [B, T],
`logp_BxT[:, t] = log p(tokens[:, t] | tokens[:, :t])` and `logp_BxT[:, 0] =
0`, so log-probs line up with the tokens they score and a
`completion_mask_BxT` picks the positions that count.

Log-probs are computed from the final hidden states, `chunk_size`
positions at a time: each chunk's logits [B, C, V] (fp32, from bf16 dots
when the model computes in bf16) are reduced to a log-prob and an entropy
at once, and a custom VJP recomputes them in the backward pass rather
than storing them, so a 151,936-token vocabulary never needs a full fp32
[B, T, V] array. The backward pass forms the logits' gradient in one
elementwise pass (softmax, target one-hot, entropy) and runs two dots: no
log-softmax array, no gather or scatter over the vocabulary.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from rlx.models.transformer import mixed_dot, transposed

KL_ESTIMATORS = ("k1", "k2", "k3")
LOSS_AGGREGATIONS = ("grpo", "bnpo", "dapo", "dr_grpo", "seq_sum")


# Log-probs from hidden states -------------------------------------------------


def unembedding(model) -> tuple[jax.Array, bool]:
  """The unembedding matrix and whether it is stored [V, D] (tied)."""
  if model.lm_head is None:
    return model.embed[...], True
  return model.lm_head.kernel[...], False


def _logits(h_BxCxD, w, vocab_major):
  """fp32 logits [B, C, V]; bf16 inputs go through the native bf16 dot."""
  w = w.astype(h_BxCxD.dtype)
  w_DxV = transposed(w) if vocab_major else w
  return mixed_dot(h_BxCxD, w_DxV, h_BxCxD.dtype, jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _chunk_logprobs(h_BxCxD, w, target_BxC, vocab_major, temperature, entropy):
  """(log p(target), entropy) of one chunk, fp32 [B, C]."""
  return _chunk_logprobs_fwd(
    h_BxCxD, w, target_BxC, vocab_major, temperature, entropy
  )[0]


def _chunk_logprobs_fwd(h, w, target, vocab_major, temperature, entropy):
  # Under `symbolic_zeros` the differentiated arguments arrive wrapped.
  h, w, target = (
    a.value if isinstance(a, jax.custom_derivatives.CustomVJPPrimal) else a
    for a in (h, w, target)
  )
  z = _logits(h, w, vocab_major) / temperature
  lse = jax.nn.logsumexp(z, axis=-1)
  logp = jnp.take_along_axis(z, target[..., None], axis=-1)[..., 0] - lse
  ent = jnp.zeros_like(lse)
  if entropy:
    ent = lse - jnp.sum(jnp.exp(z - lse[..., None]) * z, axis=-1)
  return (logp, ent), (h, w, target, lse, ent)


def _chunk_logprobs_bwd(vocab_major, temperature, entropy, res, g):
  """The logits' gradient in one elementwise pass (softmax, one-hot and
  entropy terms together: no scatter into the unembedding), recomputing
  the logits rather than storing them; then its two dots. The entropy
  term is left out when the entropy's cotangent is a symbolic zero (the
  entropy only logged), which leaves the gradient bitwise the same."""
  h, w, target, lse, ent = res
  g_logp, g_ent = (
    None if isinstance(x, jax.custom_derivatives.SymbolicZero) else x for x in g
  )
  z = _logits(h, w, vocab_major) / temperature
  p = jnp.exp(z - lse[..., None])
  if g_logp is None:
    dz = jnp.zeros_like(z)
  else:
    onehot = jnp.arange(z.shape[-1]) == target[..., None]
    dz = jnp.where(onehot, g_logp[..., None], 0.0) - g_logp[..., None] * p
  if entropy and g_ent is not None:
    dz = dz - (g_ent[..., None] * p) * (z - lse[..., None] + ent[..., None])
  dz = (dz / temperature).astype(h.dtype)
  w_VxD = w.astype(h.dtype)
  w_VxD = w_VxD if vocab_major else transposed(w_VxD)
  dh = mixed_dot(dz, w_VxD, h.dtype, jnp.float32)
  flat = lambda a: a.reshape(-1, a.shape[-1])
  dz_NxV, h_NxD = flat(dz), flat(h)
  if vocab_major:  # dw [V, D]
    dw = jnp.dot(transposed(dz_NxV), h_NxD, preferred_element_type=jnp.float32)
  else:  # dw [D, V]
    dw = jnp.dot(transposed(h_NxD), dz_NxV, preferred_element_type=jnp.float32)
  return dh.astype(h.dtype), dw.astype(w.dtype), None


_chunk_logprobs.defvjp(
  _chunk_logprobs_fwd, _chunk_logprobs_bwd, symbolic_zeros=True
)


def logprobs_from_hidden(
  hidden_BxTxD: jax.Array,
  w: jax.Array,
  vocab_major: bool,
  targets_BxT: jax.Array,
  *,
  chunk_size: int | None = 128,
  temperature: float = 1.0,
  with_entropy: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """log p(targets[t] | hidden[t]) and the entropy at each position, fp32.

  w: the unembedding, [V, D] when `vocab_major` (tied) else [D, V].
  chunk_size: positions per chunk (None: the whole sequence at once, fastest
    when [B, T, V] fits). Chunks are rematerialised in the backward pass.
  """
  B, T, _ = hidden_BxTxD.shape
  stats = lambda h, t: _chunk_logprobs(
    h, w, t, vocab_major, temperature, with_entropy
  )
  if chunk_size is None or chunk_size >= T:
    return stats(hidden_BxTxD, targets_BxT)
  num = -(-T // chunk_size)
  chunk_size = -(-T // num)  # the same number of chunks, least padding
  pad = num * chunk_size - T
  if pad:
    hidden_BxTxD = jnp.pad(hidden_BxTxD, ((0, 0), (0, pad), (0, 0)))
    targets_BxT = jnp.pad(targets_BxT, ((0, 0), (0, pad)))
  h_NxBxCxD = hidden_BxTxD.reshape(B, num, chunk_size, -1).swapaxes(0, 1)
  t_NxBxC = targets_BxT.reshape(B, num, chunk_size).swapaxes(0, 1)
  _, (logp, ent) = jax.lax.scan(
    lambda _, xs: (None, stats(*xs)), None, (h_NxBxCxD, t_NxBxC)
  )
  unchunk = lambda x: x.swapaxes(0, 1).reshape(B, num * chunk_size)[:, :T]
  return unchunk(logp), unchunk(ent)


def shift_right(x_BxT: jax.Array) -> jax.Array:
  """Moves position t to t + 1 and puts 0 at position 0."""
  return jnp.pad(x_BxT[:, :-1], ((0, 0), (1, 0)))


def model_logprobs(
  model,
  tokens_BxT: jax.Array,
  mask_BxT: jax.Array,
  *,
  chunk_size: int | None = 128,
  temperature: float = 1.0,
  with_entropy: bool = False,
  prompt_length: int = 0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(logp_BxT, entropy_BxT, hidden_BxTxD) of a merged model, token-aligned.

  `entropy_BxT[:, t]` is the entropy of the distribution that sampled token
  t; `hidden_BxTxD` is returned for heads that read the trunk (PPO values).
  prompt_length: a static number of leading positions that never count
    (the padded prompt); their log-probs and entropies are not computed and
    read 0, which saves that share of the unembedding work.
  """
  T = tokens_BxT.shape[1]
  if not 0 <= prompt_length < T:
    raise ValueError(f"prompt_length={prompt_length}: must be in [0, {T})")
  hidden_BxTxD, _ = model.trunk(tokens_BxT, mask_BxT)
  w, vocab_major = unembedding(model)
  start = max(prompt_length - 1, 0)
  logp, ent = logprobs_from_hidden(
    hidden_BxTxD[:, start : T - 1],
    w,
    vocab_major,
    tokens_BxT[:, start + 1 :],
    chunk_size=chunk_size,
    temperature=temperature,
    with_entropy=with_entropy,
  )
  pad = lambda x: jnp.pad(x, ((0, 0), (start + 1, 0)))
  return pad(logp), pad(ent), hidden_BxTxD


def token_logprobs(
  graphdef,
  params,
  tokens_BxT: jax.Array,
  mask_BxT: jax.Array,
  *,
  chunk_size: int | None = 128,
  temperature: float = 1.0,
  prompt_length: int = 0,
) -> jax.Array:
  """Per-token log-probs [B, T] (entry 0 is 0); for old / reference passes.

  Pure and jittable: `jax.jit(functools.partial(token_logprobs, graphdef))`.
  Options as in `model_logprobs`.
  """
  model = nnx.merge(graphdef, params)
  logp, _, _ = model_logprobs(
    model,
    tokens_BxT,
    mask_BxT,
    chunk_size=chunk_size,
    temperature=temperature,
    prompt_length=prompt_length,
  )
  return logp


# Masked reductions ------------------------------------------------------------


def masked_sum(x, mask, axis=None):
  return jnp.sum(jnp.where(mask, x, 0.0), axis=axis)


def masked_mean(x, mask, axis=None):
  """Mean of `x` where `mask`; 0 where the mask is empty (never NaN)."""
  count = jnp.sum(mask, axis=axis, dtype=jnp.float32)
  return masked_sum(x, mask, axis) / jnp.maximum(count, 1.0)


def masked_var(x, mask, unbiased: bool = True):
  """Variance over the masked entries (Bessel-corrected by default)."""
  mean = masked_mean(x, mask)
  count = jnp.sum(mask, dtype=jnp.float32)
  ss = masked_sum(jnp.square(x - mean), mask)
  denom = jnp.maximum(count - 1.0, 1.0) if unbiased else count
  return ss / jnp.maximum(denom, 1.0)


def masked_whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8):
  """(x - mean) / std over the masked entries; 0 outside the mask."""
  mean = masked_mean(x, mask)
  white = (x - mean) * jax.lax.rsqrt(masked_var(x, mask) + eps)
  if not shift_mean:
    white = white + mean
  return jnp.where(mask, white, 0.0)


def masked_min(x, mask):
  return jnp.min(jnp.where(mask, x, jnp.inf))


def masked_max(x, mask):
  return jnp.max(jnp.where(mask, x, -jnp.inf))


def completion_width(mask_BxT: jax.Array) -> jax.Array:
  """Positions from the first column where any row's completion starts to
  the end: the completion budget (`max_new_tokens`) of a rollout batch laid
  out as padded prompt + padded completion; T when completions start at 0."""
  started = jnp.any(jnp.asarray(mask_BxT, bool), axis=0)
  T = started.shape[0]
  return jnp.where(jnp.any(started), T - jnp.argmax(started), T)


def aggregate(
  per_token_BxT: jax.Array,
  mask_BxT: jax.Array,
  loss_type: str,
  *,
  max_completion_length: int | None = None,
  dapo_normalizer: jax.Array | float | None = None,
) -> jax.Array:
  """Reduces a per-token loss to a scalar (TRL's `loss_type` semantics).

  `per_token_BxT` may be [B, 1] (one value per sequence, e.g. a
  sequence-level ratio): it is broadcast over the mask's [B, T] first, so
  every aggregation counts tokens the same way.

  grpo: token mean per sequence, then mean over sequences.
  bnpo: sum over the batch / number of valid tokens in this batch.
  dapo: sum over the batch / `dapo_normalizer`, the valid tokens of the
    whole rollout batch divided by the number of loss chunks (minibatches x
    accumulation steps), so every token weighs the same across chunks;
    defaults to this batch's token count (then equal to bnpo).
  dr_grpo: sum / (num sequences x `max_completion_length`); unset, the
    completion budget read off the mask (`completion_width`).
  seq_sum: token sum per sequence, then mean over sequences (LUSPO).
  """
  mask = jnp.asarray(mask_BxT).astype(jnp.float32)
  per_token_BxT = jnp.broadcast_to(per_token_BxT, mask.shape)
  total = jnp.sum(per_token_BxT * mask)
  B = mask.shape[0]
  if loss_type == "grpo":
    per_seq = jnp.sum(per_token_BxT * mask, -1) / jnp.maximum(mask.sum(-1), 1)
    return jnp.mean(per_seq)
  if loss_type == "bnpo":
    return total / jnp.maximum(mask.sum(), 1.0)
  if loss_type == "dapo":
    norm = mask.sum() if dapo_normalizer is None else dapo_normalizer
    return total / jnp.maximum(norm, 1.0)
  if loss_type == "dr_grpo":
    length = max_completion_length or completion_width(mask)
    return total / (B * length)
  if loss_type == "seq_sum":
    return total / B
  raise ValueError(f"loss_type={loss_type!r}: allowed {LOSS_AGGREGATIONS}")


# KL and clipping --------------------------------------------------------------


def kl_estimate(logp, ref_logp, estimator: str = "k3"):
  """Per-token KL(pi || ref) estimate from samples of pi (Schulman's k1-3).

  x = ref_logp - logp: k1 = -x, k2 = x^2 / 2, k3 = exp(x) - x - 1 (>= 0).
  """
  x = ref_logp - logp
  if estimator == "k1":
    return -x
  if estimator == "k2":
    return 0.5 * jnp.square(x)
  if estimator == "k3":
    return jnp.expm1(x) - x
  raise ValueError(f"kl_estimator={estimator!r}: allowed {KL_ESTIMATORS}")


def clipped_surrogate(
  ratio, advantages, epsilon_low: float, epsilon_high: float, delta=None
):
  """Per-token PPO loss -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A).

  `delta` (INTELLECT-2 two-sided clipping) caps the unclipped ratio.
  Returns the loss and boolean masks of tokens clipped low / high.
  """
  clipped = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
  capped = ratio if delta is None else jnp.minimum(ratio, delta)
  loss = -jnp.minimum(capped * advantages, clipped * advantages)
  low = (ratio < 1.0 - epsilon_low) & (advantages < 0)
  high = (ratio > 1.0 + epsilon_high) & (advantages > 0)
  return loss, low, high


def ratio_metrics(ratio_BxT, low_BxT, high_BxT, log_ratio_BxT, mask_BxT):
  """Clip fractions, ratio range and approx. KL(old || new) over a mask."""
  mask = jnp.broadcast_to(mask_BxT, log_ratio_BxT.shape)
  ratio = jnp.broadcast_to(ratio_BxT, mask.shape)
  f32 = lambda x: jnp.broadcast_to(x, mask.shape).astype(jnp.float32)
  return {
    "clip_frac_low": masked_mean(f32(low_BxT), mask),
    "clip_frac_high": masked_mean(f32(high_BxT), mask),
    "ratio_mean": masked_mean(ratio, mask),
    "ratio_min": masked_min(ratio, mask),
    "ratio_max": masked_max(ratio, mask),
    "approx_kl": masked_mean(0.5 * jnp.square(log_ratio_BxT), mask),
  }
