"""Language modelling on given token sequences: train, score, predict.

For experiments that treat a model as a density over token sequences
(model collapse, distillation): `LMTrainer` fits a causal LM to a fixed set
of sequences by SFT (`rlx.algos.make("sft")`), compiled once and reused
from any starting params; `sequence_logprobs` gives each sequence's
log-likelihood under a model and `next_token_logprobs` its full next-token
distribution at every position (small vocabularies).

Rows are [N, T] int token ids with a [N, T] mask of real tokens (left
padding allowed). By default a position is scored when it and the position
before it are real: the first real token (a BOS, say) has no context and
does not count.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlx import algos, models


def default_scored(mask_NxT: np.ndarray) -> np.ndarray:
  """Real tokens whose predecessor is real: the positions a causal LM
  predicts from context."""
  mask = np.asarray(mask_NxT, bool)
  return mask & np.pad(mask[:, :-1], ((0, 0), (1, 0)))


def _rows(tokens_NxT, mask_NxT):
  tokens = np.asarray(tokens_NxT)
  if tokens.ndim != 2 or tokens.shape[1] < 2:
    raise ValueError(f"tokens must be [N, T] with T >= 2, got {tokens.shape}")
  if not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be integer ids, got {tokens.dtype}")
  if mask_NxT is None:
    mask = np.ones(tokens.shape, bool)
  else:
    mask = np.asarray(mask_NxT, bool)
    if mask.shape != tokens.shape:
      raise ValueError(
        f"mask has shape {mask.shape}, tokens {tokens.shape}: must be equal"
      )
  return tokens.astype(np.int32), mask


def _batched(fn, batch_size: int, *arrays):
  """fn over fixed-size row batches (the last padded by repeating its
  final row, so that one compiled shape serves every call)."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}: must be >= 1")
  n = arrays[0].shape[0]
  outs = []
  for start in range(0, n, batch_size):
    chunk = [a[start : start + batch_size] for a in arrays]
    real = chunk[0].shape[0]
    if real < batch_size:
      chunk = [
        np.concatenate([c, np.repeat(c[-1:], batch_size - real, 0)])
        for c in chunk
      ]
    outs.append(np.asarray(fn(*chunk))[:real])
  return outs


@functools.lru_cache(maxsize=16)
def _token_logprobs_fn(graphdef):
  return jax.jit(
    functools.partial(algos.token_logprobs, graphdef, chunk_size=None)
  )


@functools.lru_cache(maxsize=16)
def _next_token_fn(graphdef):
  def run(params, tokens, mask):
    logits, _ = nnx.merge(graphdef, params)(tokens, mask)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)

  return jax.jit(run)


def sequence_logprobs(
  graphdef,
  params,
  tokens_NxT,
  mask_NxT=None,
  *,
  scored_NxT=None,
  batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
  """(log-likelihood [N] in nats, number of scored tokens [N]) of each row
  under the model: the sum of log p(token_t | tokens_<t) over the scored
  positions (`default_scored(mask)` unless given). A row's perplexity is
  exp(-logp / count)."""
  tokens, mask = _rows(tokens_NxT, mask_NxT)
  scored = default_scored(mask) if scored_NxT is None else scored_NxT
  scored = np.asarray(scored, bool)
  if scored.shape != tokens.shape or np.any(scored & ~mask):
    raise ValueError("scored_NxT must be [N, T] and inside the mask")
  if not tokens.shape[0]:
    return np.zeros(0), np.zeros(0, np.int64)
  fn = _token_logprobs_fn(graphdef)
  logp = np.concatenate(
    _batched(lambda t, m: fn(params, t, m), batch_size, tokens, mask)
  ).astype(np.float64)
  return np.where(scored, logp, 0.0).sum(axis=1), scored.sum(axis=1)


def perplexities(graphdef, params, tokens_NxT, mask_NxT=None) -> np.ndarray:
  """Each row's per-token perplexity [N]: exp(-logp / scored tokens), with
  `sequence_logprobs`' default scored positions."""
  logp, count = sequence_logprobs(graphdef, params, tokens_NxT, mask_NxT)
  return np.exp(-logp / count)


def completion_logprobs(
  graphdef, params, prompt_tokens_BxP, prompt_mask_BxP, tokens_NxT, mask_NxT
) -> np.ndarray:
  """The model's log-prob [N] of each decoded completion given its prompt,
  teacher-forced: the completion rows of a decoder's output (N = B * n, n
  consecutive rows per prompt), each scored on its masked tokens (EOS
  included) after its prompt. It checks a decoder's own bookkeeping, and
  scores any completion under another model."""
  prompt_mask = np.asarray(prompt_mask_BxP)
  n = len(tokens_NxT) // len(prompt_mask)
  prompt_mask = np.repeat(prompt_mask, n, 0)
  tokens = np.concatenate(
    [
      np.repeat(np.asarray(prompt_tokens_BxP), n, 0),
      np.asarray(tokens_NxT).astype(np.int32),
    ],
    1,
  )
  mask = np.concatenate([prompt_mask, np.asarray(mask_NxT, np.int32)], 1)
  scored = np.concatenate([np.zeros_like(prompt_mask), mask_NxT], 1)
  logp, _ = sequence_logprobs(
    graphdef, params, tokens, mask, scored_NxT=scored.astype(bool)
  )
  return logp


def next_token_logprobs(
  graphdef, params, tokens_NxT, mask_NxT=None, *, batch_size: int = 256
) -> np.ndarray:
  """log p(. | tokens_<=t) for every position t: float32 [N, T, V], the
  distribution of the token after position t. Holds the whole vocabulary
  per position, so it is meant for small vocabularies."""
  tokens, mask = _rows(tokens_NxT, mask_NxT)
  fn = _next_token_fn(graphdef)
  return np.concatenate(
    _batched(lambda t, m: fn(params, t, m), batch_size, tokens, mask)
  )


class LMTrainer:
  """SFT of a causal LM on fixed token sequences, compiled once.

  `fit(params, tokens, ...)` trains a copy of `params` for `steps` AdamW
  steps of `batch_size` rows, visiting the rows in a fresh random order
  each epoch (seeded), with the next-token loss on `scored_NxT`
  (`default_scored(mask)` unless given). Every `fit` with rows of the same
  length reuses the compiled update.
  """

  def __init__(
    self,
    graphdef,
    optimizer: algos.OptimizerConfig,
    *,
    batch_size: int,
    mesh=None,
  ):
    if batch_size < 1:
      raise ValueError(f"LMTrainer batch_size={batch_size}: must be >= 1")
    self.graphdef = graphdef
    self.batch_size = batch_size
    self.mesh = models.make_mesh() if mesh is None else mesh
    self.algo = algos.make(
      "sft", optimizer=optimizer, chunk_size=None, log_entropy=False
    )
    self._update = None
    self._length = None
    self._init = None
    # One dispatch for all of a fit's step keys: eager fold_in is slow.
    self._keys = jax.jit(
      lambda key, n: jax.vmap(lambda i: jax.random.fold_in(key, i))(
        jnp.arange(n)
      ),
      static_argnums=1,
    )

  def fit(
    self,
    params,
    tokens_NxT,
    mask_NxT=None,
    *,
    steps: int,
    seed: int,
    scored_NxT=None,
  ):
    """Returns (trained params, per-step training loss [steps])."""
    tokens, mask = _rows(tokens_NxT, mask_NxT)
    scored = default_scored(mask) if scored_NxT is None else scored_NxT
    scored = np.asarray(scored, bool)
    if scored.shape != tokens.shape:
      raise ValueError(f"scored_NxT: shape {scored.shape} != {tokens.shape}")
    n = tokens.shape[0]
    if n < self.batch_size:
      raise ValueError(
        f"{n} training rows: fewer than batch_size={self.batch_size}"
      )
    if steps < 1:
      raise ValueError(f"steps={steps}: must be >= 1")
    # A copy: the update donates its state, and the caller keeps `params`.
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
    if self._init is None:  # `algos.create_train_state`, compiled once
      init = functools.partial(
        algos.init_train_state, self.graphdef, algo=self.algo
      )
      shardings = algos.tree_shardings(jax.eval_shape(init, params), self.mesh)
      self._init = jax.jit(init, out_shardings=shardings)
    state = self._init(params)

    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0

    def batch():
      nonlocal order, pos
      if pos + self.batch_size > n:
        order, pos = rng.permutation(n), 0
      idx = order[pos : pos + self.batch_size]
      pos += self.batch_size
      local = {
        "tokens": tokens[idx],
        "mask": mask[idx],
        "completion_mask": scored[idx],
      }
      return algos.host_local_to_global(local, self.mesh)

    first = batch()
    if self._update is None or self._length != tokens.shape[1]:
      self._update = algos.compile_update_step(
        self.algo, self.graphdef, state, first, self.mesh
      )
      self._length = tokens.shape[1]
    keys = self._keys(jax.random.key(seed), steps)
    losses = []
    b = first
    for step in range(steps):
      if step:
        b = batch()
      state, metrics = self._update(state, b, keys[step])
      losses.append(metrics["loss"])
    return state.params, np.asarray(jax.device_get(losses), np.float64)
