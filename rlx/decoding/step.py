"""The model as a step function, KV-cache growth, and the segmented scan.

Every decoder sees the model only through
`step_fn(tokens_BxT, cache, mask_BxT) -> (logits_BxV, cache)`: the fp32
logits of the *last* position (left-padded prompts end on a real token) and
the cache with this call's T tokens written. Tests pass fake step functions
whose "cache" is any pytree.

Speed: the model attends over every slot of the cache it is given, so a
decode step costs O(cache length). `scan_with_growing_cache` runs the decode
loop as a few `lax.scan` segments over caches of growing static length
(padded between segments), so early steps do not read the empty tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from rlx.models.transformer import KVCache, init_cache

StepFn = Callable[..., tuple[jax.Array, object]]


def model_step_fn(graphdef, params) -> StepFn:
  """A step function over `nnx.merge(graphdef, params)` (call inside jit)."""
  model = nnx.merge(graphdef, params)

  def step(tokens_BxT, cache, mask_BxT):
    hidden_BxTxD, cache = model.trunk(tokens_BxT, mask_BxT, cache=cache)
    logits_BxV = model.unembed(hidden_BxTxD[:, -1:])[:, 0]
    return unfused(logits_BxV), cache

  return step


def unfused(x_f32):
  """`x_f32` unchanged (rounding fp32 to fp32 is the identity), in a
  separate XLA:CPU fusion from the dot that made it. XLA:CPU otherwise
  fuses the sampler's max over the vocabulary into the lm_head dot, which
  then runs 2-4x slower (bench50m's head at 64 rows, bf16: 7.7 ms with
  the log-softmax fused, 3.4 ms apart; an optimization barrier is
  removed before fusion)."""
  return jax.lax.reduce_precision(x_f32, exponent_bits=8, mantissa_bits=23)


def model_config(graphdef, params):
  """The `ModelConfig` of a split model."""
  return nnx.merge(graphdef, params).config


def cache_dtype(config):
  """The KV cache's dtype: the model's, except on XLA:CPU, where a cache
  below fp32 is kept in fp32 and attention over it runs in fp32. XLA:CPU
  has no native bf16 batched dot: over a bf16 cache it converts the whole
  cache to fp32 at every step (bench50m's rollout at 64 rows: 8.3 s
  against 6.7 s). The keys and values hold bf16 values either way."""
  dtype = jnp.dtype(config.dtype)
  if jax.default_backend() == "cpu" and dtype.itemsize < 4:
    return jnp.dtype(jnp.float32)
  return dtype


def new_cache(config, batch_size: int, length: int) -> KVCache:
  return init_cache(config, batch_size, length, cache_dtype(config))


def grow_cache(cache, length: int):
  """Pads a `KVCache` to `length` slots; other pytrees pass through."""
  if not isinstance(cache, KVCache) or cache.max_len >= length:
    return cache
  extra = length - cache.max_len
  pad_kv = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, extra), (0, 0)))
  return KVCache(
    k=tuple(pad_kv(x) for x in cache.k),
    v=tuple(pad_kv(x) for x in cache.v),
    valid=jnp.pad(cache.valid, ((0, 0), (0, extra))),
    end=cache.end,
    next_pos=cache.next_pos,
  )


def cache_plan(
  prompt_len: int, num_steps: int, chunk: int | None, max_segments: int = 8
) -> list[tuple[int, int]]:
  """Segments [(steps, cache length)] covering `num_steps` decode steps.

  Decode step j writes slot prompt_len + j. With `chunk` None, one segment
  with the full cache; otherwise segments of `chunk` steps (at most
  `max_segments` of them, grown to fit).
  """
  if num_steps <= 0:
    return []
  if not chunk or chunk >= num_steps:
    return [(num_steps, prompt_len + num_steps)]
  chunk = max(chunk, math.ceil(num_steps / max_segments))
  plan, done = [], 0
  while done < num_steps:
    n = min(chunk, num_steps - done)
    done += n
    plan.append((n, prompt_len + done))
  return plan


def scan_with_growing_cache(body, cache, state, plan, start: int = 0):
  """Runs `body(t, cache, state) -> (cache, state, ys)` over the plan.

  Returns (cache, state, ys) with ys stacked over steps on axis 0 (None
  when the body returns no ys).
  """
  all_ys, t0 = [], start

  def scan_body(carry, t):
    c, s = carry
    c, s, ys = body(t, c, s)
    return (c, s), ys

  for steps, length in plan:
    cache = grow_cache(cache, length)
    (cache, state), ys = jax.lax.scan(
      scan_body, (cache, state), jnp.arange(t0, t0 + steps, dtype=jnp.int32)
    )
    all_ys.append(ys)
    t0 += steps
  if not all_ys or all_ys[0] is None:
    return cache, state, None
  ys = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *all_ys)
  return cache, state, ys


def reorder_rows(cache, rows, start: int = 0):
  """cache rows <- cache[rows] (beam search), for slots >= `start` only.

  For a `KVCache` whose rows of one group share slots [0, start) (a prompt
  prefilled once, then repeated), only keys / values after `start` move;
  `valid`, `end` and `next_pos` are equal within a group and stay. Other
  pytrees are gathered whole.
  """
  if not isinstance(cache, KVCache):
    return jax.tree.map(lambda x: x[rows], cache)
  move = lambda x: x.at[:, :, start:].set(x[rows, :, start:])
  return KVCache(
    k=tuple(move(x) for x in cache.k),
    v=tuple(move(x) for x in cache.v),
    valid=cache.valid,
    end=cache.end,
    next_pos=cache.next_pos,
  )


def repeat_rows(tree, n: int):
  """Each row of every leaf repeated n times, consecutively (i -> i*n..)."""
  if n == 1:
    return tree
  return jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), tree)
