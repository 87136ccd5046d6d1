"""One generic update for every algorithm, jitted over a device mesh.

`update_step(state, batch, key) -> (state, metrics)` runs a `lax.scan` over
`num_epochs` x `num_minibatches` of the rollout batch (reshuffled each epoch
with `key`); each minibatch step is `value_and_grad` of the algorithm's loss
(averaged over `grad_accum_steps` micro-batches), global-norm clipping and
AdamW. A non-finite loss or gradient norm leaves params and optimizer state
unchanged and counts in `metrics['skipped_steps']`; `param_norm` and
`param_norm_growth` (its ratio to the norm before the call) let the caller
stop on a finite but absurd update. Algorithms differ only
in their config object (`grpo.py`, `ppo.py`, `reinforce.py`, `sft.py`),
which supplies `loss(out, batch, ctx)` and `prepare_batch(...)`.

Batch: a dict of arrays with leading N (number of sequences), sharded over
the mesh's ('data', 'fsdp') axes:
  tokens [N, T] int32            prompt + completion, padded
  mask [N, T] bool               real (non-padding) tokens
  completion_mask [N, T] bool    tokens that count in the loss
  old_logprobs [N, T] f32        `token_logprobs` under the sampling policy
                                 (GRPO may omit it: on-policy, ratio 1)
  ref_logprobs [N, T] f32        only when `algo.needs_reference`
  rewards [N] f32                sequence rewards (RL algorithms)
  advantages [N] or [N, T] f32   added by `algo.prepare_batch`
  old_values, returns [N, T]     PPO only (`ppo.values`, `prepare_batch`)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlx.algos import losses, ppo
from rlx.algos.optim import OptimizerConfig, make_optimizer
from rlx.algos.validate import check_field
from rlx.models.sharding import BATCH_AXES, batch_sharding, state_shardings


@dataclasses.dataclass(frozen=True)
class UpdateConfig:
  """How the rollout batch is consumed, shared by all algorithms.

  chunk_size: positions per log-prob chunk (None: unchunked logits).
  temperature: the sampling temperature (log-probs of logits / T).
  prompt_length: static number of leading positions that are never
    completion tokens (the padded prompt of a rollout batch); their
    log-probs are not computed. Leave 0 when prompts vary in place (SFT).
    The RL loop pads every prompt to one width (`Trainer.prompt_len`) and
    accepts up to that: set it to that width to score only the
    completions, as TRL's `logits_to_keep` does (benchmarks/README.md:
    bench50m_micro's fp32 update 11.5 s -> 9.7 s with it).
  log_entropy: compute the policy entropy for metrics even when the loss
    does not need it.
  """

  num_epochs: int = 1
  num_minibatches: int = 1
  shuffle: bool = True
  chunk_size: int | None = 128
  temperature: float = 1.0
  prompt_length: int = 0
  log_entropy: bool = True

  def __post_init__(self):
    c = lambda *a: check_field(self, *a)
    c("num_epochs", self.num_epochs >= 1, ">= 1")
    c("num_minibatches", self.num_minibatches >= 1, ">= 1")
    c("chunk_size", self.chunk_size is None or self.chunk_size >= 1, ">= 1")
    c("temperature", self.temperature > 0, "> 0")
    c("prompt_length", self.prompt_length >= 0, ">= 0")


@dataclasses.dataclass(frozen=True)
class Algo:
  """An algorithm: its loss config, update schedule and optimizer."""

  name: str
  config: Any
  update: UpdateConfig = UpdateConfig()
  optimizer: OptimizerConfig = OptimizerConfig()

  @property
  def needs_reference(self) -> bool:
    """Whether batches need `ref_logprobs` (a frozen reference pass)."""
    return self.config.needs_reference

  @property
  def uses_value_head(self) -> bool:
    return isinstance(self.config, ppo.PPOConfig)

  def prepare_batch(self, batch: dict, group_size: int | None = None, **kw):
    """Adds advantages (and PPO returns): (batch, stats). Jittable."""
    return self.config.prepare_batch(batch, group_size, **kw)

  def replace(self, **changes) -> Algo:
    return dataclasses.replace(self, **changes)


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=["params", "opt_state", "step", "value_head"],
  meta_fields=[],
)
@dataclasses.dataclass
class TrainState:
  """params: the policy's nnx.State (fp32); value_head: PPO's or None;
  step: number of `update_step` calls."""

  params: Any
  opt_state: Any
  step: jax.Array
  value_head: Any = None


def init_train_state(graphdef, params, algo: Algo) -> TrainState:
  """Fresh optimizer state (and PPO value head) for `params`. Jittable."""
  value_head = None
  if algo.uses_value_head:
    hidden = nnx.merge(graphdef, params).config.hidden_size
    value_head = ppo.init_value_head(hidden)
  opt_state = make_optimizer(algo.optimizer).init((params, value_head))
  return TrainState(params, opt_state, jnp.zeros((), jnp.int32), value_head)


def _policy_outputs(algo: Algo, graphdef, trainable, batch) -> dict:
  params, value_head = trainable
  model = nnx.merge(graphdef, params)
  u = algo.update
  logp, entropy, hidden = losses.model_logprobs(
    model,
    batch["tokens"],
    batch["mask"],
    chunk_size=u.chunk_size,
    temperature=u.temperature,
    with_entropy=u.log_entropy or algo.config.needs_entropy,
    prompt_length=u.prompt_length,
  )
  out = {"logp": logp, "entropy": entropy}
  if value_head is not None:
    out["values"] = ppo.value_head_apply(value_head, hidden)
  return out


def _reduce_metrics(metrics: dict) -> dict:
  """Per-step metrics stacked by scan -> scalars (min / max / sum / mean)."""

  def one(name, x):
    if name.endswith("_min"):
      return jnp.min(x)
    if name.endswith("_max"):
      return jnp.max(x)
    if name == "skipped_steps":
      return jnp.sum(x)
    return jnp.mean(x)

  return {k: one(k, v) for k, v in metrics.items()}


def _advantage_metrics(batch: dict) -> dict:
  if "advantages" not in batch:
    return {}
  mask = batch["completion_mask"]
  adv = batch["advantages"]
  adv = jnp.broadcast_to(adv[:, None] if adv.ndim == 1 else adv, mask.shape)
  return {
    "advantages_mean": losses.masked_mean(adv, mask),
    "advantages_std": jnp.sqrt(losses.masked_var(adv, mask)),
    "advantages_min": losses.masked_min(adv, mask),
    "advantages_max": losses.masked_max(adv, mask),
  }


def _scan(f, carry, xs):
  """`lax.scan`, inlined when it has one step: a one-trip XLA while loop
  copies its carry (params and optimizer state) on CPU."""
  length = jax.tree.leaves(xs)[0].shape[0]
  return jax.lax.scan(f, carry, xs, unroll=length == 1)


def make_update_step(algo: Algo, graphdef, mesh: Mesh | None = None):
  """The pure `update_step(state, batch, key) -> (state, metrics)`.

  With `mesh`, minibatches are constrained to stay sharded over the batch
  axes after shuffling.
  """
  tx = make_optimizer(algo.optimizer)
  u, accum = algo.update, algo.optimizer.grad_accum_steps
  num_chunks = u.num_minibatches * accum

  def constrain(x, lead: int):
    if mesh is None:
      return x
    spec = PartitionSpec(*([None] * lead), BATCH_AXES)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

  def split(tree, parts: int):
    """[n, ...] -> [parts, n // parts, ...], sharded on the second axis."""
    return jax.tree.map(
      lambda x: constrain(x.reshape(parts, -1, *x.shape[1:]), 1), tree
    )

  def loss_fn(trainable, micro, ctx):
    out = _policy_outputs(algo, graphdef, trainable, micro)
    loss, metrics = algo.config.loss(out, micro, ctx)
    if "entropy" in out and u.log_entropy:
      metrics["entropy"] = losses.masked_mean(
        out["entropy"], micro["completion_mask"]
      )
    return loss, metrics

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def grads_of(trainable, minibatch, ctx):
    if accum == 1:
      (loss, metrics), grads = grad_fn(trainable, minibatch, ctx)
      return loss, metrics, grads

    def micro_step(acc, micro):
      (loss, metrics), grads = grad_fn(trainable, micro, ctx)
      acc = jax.tree.map(lambda a, g: a + g / accum, acc, grads)
      return acc, (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, trainable)
    grads, (loss, metrics) = _scan(micro_step, zeros, split(minibatch, accum))
    return jnp.mean(loss), _reduce_metrics(metrics), grads

  def minibatch_step(carry, minibatch, ctx):
    trainable, opt_state = carry
    loss, metrics, grads = grads_of(trainable, minibatch, ctx)
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, trainable)
    new_trainable = optax.apply_updates(trainable, updates)
    keep = lambda new, old: jax.tree.map(
      lambda n, o: jnp.where(ok, n, o), new, old
    )
    carry = (keep(new_trainable, trainable), keep(new_opt_state, opt_state))
    metrics = {
      **metrics,
      "grad_norm": grad_norm,
      "skipped_steps": (~ok).astype(jnp.int32),
    }
    return carry, metrics

  def update_step(state: TrainState, batch: dict, key):
    n = batch["tokens"].shape[0]
    if n % num_chunks:
      raise ValueError(
        f"batch of {n} sequences: must divide into num_minibatches="
        f"{u.num_minibatches} x grad_accum_steps={accum}"
      )
    mask = batch["completion_mask"]
    ctx = {"dapo_normalizer": jnp.sum(mask, dtype=jnp.float32) / num_chunks}

    def epoch(carry, epoch_key):
      data = batch
      if u.shuffle and u.num_minibatches > 1:
        perm = jax.random.permutation(epoch_key, n)
        data = jax.tree.map(lambda x: jnp.take(x, perm, axis=0), batch)
      step = functools.partial(minibatch_step, ctx=ctx)
      return _scan(step, carry, split(data, u.num_minibatches))

    keys = jax.random.split(key, u.num_epochs)
    carry = ((state.params, state.value_head), state.opt_state)
    carry, metrics = _scan(epoch, carry, keys)
    (params, value_head), opt_state = carry
    norm_before = optax.tree.norm(state.params)
    norm = optax.tree.norm(params)
    metrics = {
      **_reduce_metrics(metrics),
      **_advantage_metrics(batch),
      "param_norm": norm,
      "param_norm_growth": norm / norm_before,
    }
    return TrainState(params, opt_state, state.step + 1, value_head), metrics

  return update_step


# Devices ----------------------------------------------------------------------


def tree_shardings(tree, mesh: Mesh):
  """NamedShardings for any pytree holding nnx Variables (params, optimizer
  state): Variables follow their logical axes, other leaves replicate."""
  replicated = NamedSharding(mesh, PartitionSpec())

  def one(x):
    if isinstance(x, nnx.Variable):
      return state_shardings(x, mesh)
    return replicated

  return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_shardings(batch: dict, mesh: Mesh) -> dict:
  """Leading axis over ('data', 'fsdp') for every array of a batch."""
  return {k: batch_sharding(mesh, np.ndim(v)) for k, v in batch.items()}


def create_train_state(graphdef, params, algo: Algo, mesh: Mesh) -> TrainState:
  """`init_train_state`, jitted straight into its sharded layout."""
  init = functools.partial(init_train_state, graphdef, algo=algo)
  abstract = jax.eval_shape(init, params)
  shardings = tree_shardings(abstract, mesh)
  return jax.jit(init, out_shardings=shardings)(params)


def compile_update_step(
  algo: Algo, graphdef, state: TrainState, batch: dict, mesh: Mesh
):
  """`jax.jit` of the update with explicit shardings; donates the state.

  state / batch: concrete or abstract (`jax.ShapeDtypeStruct`) examples.
  Returns `fn(state, batch, key) -> (state, metrics)`; metrics replicate.
  """
  n = jax.tree.leaves(batch)[0].shape[0]
  shards = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
  per_chunk = n // (
    algo.update.num_minibatches * algo.optimizer.grad_accum_steps
  )
  if per_chunk % shards:
    raise ValueError(
      f"{per_chunk} sequences per micro-batch (N={n} / num_minibatches x "
      f"grad_accum_steps) must divide over the {shards} batch shards of the "
      f"mesh {dict(mesh.shape)}"
    )
  state_sh = tree_shardings(state, mesh)
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.jit(
    make_update_step(algo, graphdef, mesh),
    in_shardings=(state_sh, batch_shardings(batch, mesh), replicated),
    out_shardings=(state_sh, replicated),
    donate_argnums=(0,),
  )


def host_local_to_global(local_batch: dict, mesh: Mesh) -> dict:
  """This process's rows of a batch -> global arrays sharded over the batch
  axes (`jax.make_array_from_process_local_data`). Each process passes its
  own consecutive slice; with one process this is a plain `device_put`."""
  return {
    k: jax.make_array_from_process_local_data(
      batch_sharding(mesh, np.ndim(v)), np.asarray(v)
    )
    for k, v in local_batch.items()
  }
