"""Jitted decoders over a split model: what the training loop calls.

`make_sampler(graphdef, params, cfg, mesh=None)` returns `run(params,
prompt_tokens_NxP, prompt_mask_NxP, key) -> DecodeOutput`, and
`make_beam_search(graphdef, params, cfg, mesh=None)` returns `run(params,
prompt_tokens_BxP, prompt_mask_BxP) -> DecodeOutput`, each compiled once per
prompt shape (`params` given to the maker, or an abstract copy, says how the
params are sharded on `mesh`). The KV cache is created inside the compiled
function (it never crosses the host boundary, so there is no buffer to
donate; the scan updates it in place). Params are not donated: the same
params are used again by the update.
"""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec

from rlx.decoding import step as step_lib
from rlx.decoding.beam import BeamConfig, beam_search
from rlx.decoding.sampling import SamplingConfig, sample
from rlx.models.sharding import BATCH_AXES, batch_sharding, state_shardings
from rlx.models.transformer import KVCache


def _constrain_cache(cache: KVCache, mesh) -> KVCache:
  """Cache rows over the batch axes, kv heads over 'tensor' if divisible."""
  if mesh is None:
    return cache
  bsize = mesh.shape["data"] * mesh.shape["fsdp"]
  rows = BATCH_AXES if cache.valid.shape[0] % bsize == 0 else None
  heads = cache.k[0].shape[1] % mesh.shape["tensor"] == 0
  kv = NamedSharding(
    mesh, PartitionSpec(rows, "tensor" if heads else None, None, None)
  )
  row = lambda nd: NamedSharding(mesh, PartitionSpec(rows, *[None] * nd))
  c = jax.lax.with_sharding_constraint
  return KVCache(
    k=tuple(c(x, kv) for x in cache.k),
    v=tuple(c(x, kv) for x in cache.v),
    valid=c(cache.valid, row(1)),
    end=c(cache.end, row(0)),
    next_pos=c(cache.next_pos, row(0)),
  )


def _jit(run, params, mesh, nargs: int):
  if mesh is None:
    return jax.jit(run)
  shardings = (
    state_shardings(params, mesh),
    batch_sharding(mesh, 2),
    batch_sharding(mesh, 2),
  )
  rep = NamedSharding(mesh, PartitionSpec())
  return jax.jit(run, in_shardings=shardings + (rep,) * (nargs - 3))


def make_sampler(graphdef, params, cfg: SamplingConfig, mesh=None):
  """jit(run(params, tokens_NxP, mask_NxP, key) -> DecodeOutput).

  `params` (or an abstract copy) gives the param shardings on `mesh`; with
  a mesh, N must be divisible by mesh data * fsdp.
  """

  def run(params, tokens_NxP, mask_NxP, key):
    step = step_lib.model_step_fn(graphdef, params)
    config = step_lib.model_config(graphdef, params)
    n, p = tokens_NxP.shape
    cache = _constrain_cache(step_lib.new_cache(config, n, p), mesh)
    return sample(step, cache, tokens_NxP, mask_NxP, key, cfg)

  return _jit(run, params, mesh, 4)


def make_beam_search(graphdef, params, cfg: BeamConfig, mesh=None):
  """jit(run(params, tokens_BxP, mask_BxP) -> DecodeOutput)."""

  def run(params, tokens_BxP, mask_BxP):
    step = step_lib.model_step_fn(graphdef, params)
    config = step_lib.model_config(graphdef, params)
    b, p = tokens_BxP.shape
    cache = _constrain_cache(step_lib.new_cache(config, b, p), mesh)
    return beam_search(step, cache, tokens_BxP, mask_BxP, cfg)

  return _jit(run, params, mesh, 3)
