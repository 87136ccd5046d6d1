"""What one run builds once from its config: the mesh, the task, the
tokenizer, the model and its compiled decoders (`Trainer`), and the helpers
that split a global batch among processes.

Multi-host: every process runs the same code. Each draws the same global
prompt batch and works on its own rows of it (those of its devices' batch
shards, `Trainer.rows`); `gather` and `mean_over_processes` combine them.
With one process this is the single-host case.
"""

from __future__ import annotations

import logging
import os
import shutil
import zlib

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from rlx import decoding, models, rewards
from rlx.data import tasks as tasks_lib
from rlx.data import tokenizer as tokenizer_lib
from rlx.train import checkpoint as ckpt_lib
from rlx.train.config import ConfigError, check_config

TASK_SYMBOLS = ("<think>", "</think>", "<answer>", "</answer>")


def stream(seed: int, name: str) -> jax.Array:
  """A named random stream; per step use `fold_in(stream, step)`."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


def build_tokenizer(config, task, workdir: str) -> tokenizer_lib.Tokenizer:
  """The configured tokenizer, the checkpoint's, or one trained on the task.

  A trained tokenizer is saved in `workdir/tokenizer` and reused on resume.
  """
  path = config.tokenizer.path or config.model.checkpoint
  if path:
    return tokenizer_lib.load_tokenizer(path)
  saved = os.path.join(workdir, "tokenizer")
  if os.path.exists(os.path.join(saved, tokenizer_lib.SP_MODEL)):
    return tokenizer_lib.load_tokenizer(saved)
  texts = [e["prompt"] + e.get("solution", "") for e in task.train]
  tok = tokenizer_lib.train_sentencepiece(
    texts,
    config.tokenizer.vocab_size,
    user_defined_symbols=TASK_SYMBOLS,
    cover_ascii=False,
  )
  if jax.process_index() == 0:  # atomically: other processes may load it
    shutil.rmtree(saved + ".tmp", ignore_errors=True)
    tok.save(saved + ".tmp")
    os.replace(saved + ".tmp", saved)
  return tok


def build_model(config, tokenizer, mesh) -> models.Transformer:
  m = config.model
  if m.checkpoint:
    model = models.load_pretrained(m.checkpoint, m.dtype, mesh=mesh)
    if model.config.vocab_size < tokenizer.vocab_size:
      raise ConfigError(
        f"model.checkpoint vocab_size={model.config.vocab_size} is smaller "
        f"than the tokenizer's {tokenizer.vocab_size}"
      )
    return model
  overrides = dict(m.overrides)
  overrides.setdefault("vocab_size", tokenizer.vocab_size)
  overrides.setdefault("bos_token_id", tokenizer.bos_id)
  overrides.setdefault("eos_token_id", tokenizer.eos_id)
  try:
    model_config = models.preset(m.preset, dtype=m.dtype, **overrides)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.model: {e}") from e
  seed = config.seed
  return models.create_sharded(
    lambda: models.init_model(model_config, seed), mesh
  )


def encode_prompts(examples, tokenizer, add_bos: bool) -> list[list[int]]:
  return [tokenizer.encode(e["prompt"], add_bos=add_bos) for e in examples]


def check_prompt_lengths(task, tokenizer, config, add_bos: bool):
  """Apply `rollout.overlong_prompts` to both splits; returns the task."""
  limit = config.rollout.max_prompt_len
  splits = {}
  for split in ("train", "eval"):
    examples = getattr(task, split)
    if not examples:
      raise ConfigError(
        f"task {task.name!r} has no {split} examples; check config.task"
      )
    lengths = np.array(
      [len(ids) for ids in encode_prompts(examples, tokenizer, add_bos)]
    )
    over = lengths > limit
    if over.any() and config.rollout.overlong_prompts == "error":
      raise ConfigError(
        f"{int(over.sum())} of {len(examples)} {split} prompts are longer "
        f"than rollout.max_prompt_len={limit} tokens (longest "
        f"{int(lengths.max())}); raise rollout.max_prompt_len or set "
        "rollout.overlong_prompts='filter' to drop them"
      )
    if over.any():
      logging.warning(
        "dropping %d of %d %s prompts longer than %d tokens",
        int(over.sum()),
        len(examples),
        split,
        limit,
      )
    splits[split] = [e for e, o in zip(examples, over) if not o]
    if not splits[split]:
      raise ConfigError(f"no {split} prompt fits rollout.max_prompt_len")
  return tasks_lib.Task(
    name=task.name,
    train=splits["train"],
    eval=splits["eval"],
    reward_fields=task.reward_fields,
  )


class Trainer:
  """What one run builds once from its config: the mesh, the task (its
  prompts checked against `rollout.max_prompt_len`), the tokenizer, the
  model (`graphdef`, `initial_params`), the reward specs and the compiled
  decoders."""

  def __init__(self, config, workdir: str):
    check_config(config, jax.device_count())
    self.config = config
    self.workdir = workdir
    os.makedirs(workdir, exist_ok=True)
    mc = config.mesh
    self.mesh = models.make_mesh(mc.data, mc.fsdp, mc.tensor)
    # The batch shards each process holds (those of its devices).
    self.num_shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
    index = models.batch_sharding(self.mesh, 1).devices_indices_map(
      (self.num_shards,)
    )
    shards = [set() for _ in range(jax.process_count())]
    for device, i in index.items():
      shards[device.process_index].update(np.arange(self.num_shards)[i])
    self.shards = [sorted(s) for s in shards]

    try:
      task = tasks_lib.make_task(config.task.name, **dict(config.task.options))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"config.task.options: {e}") from e
    self.tokenizer = build_tokenizer(config, task, workdir)
    self.add_bos = self.tokenizer.adds_bos
    self.task = check_prompt_lengths(task, self.tokenizer, config, self.add_bos)
    self.model = build_model(config, self.tokenizer, self.mesh)
    self.graphdef, params = nnx.split(self.model)
    self.initial_params = params
    # Shapes and shardings only: the params themselves get donated.
    self.abstract_params = ckpt_lib.abstract_like(params)

    r = config.rollout
    self.G = r.num_samples
    longest = max(
      len(ids)
      for ids in encode_prompts(
        self.task.train + self.task.eval, self.tokenizer, self.add_bos
      )
    )
    self.prompt_len = decoding.bucket_length(longest, tuple(r.prompt_buckets))
    eos = self.tokenizer.eos_id
    stops = tuple(tuple(self.tokenizer.encode(s)) for s in r.stop_strings if s)
    self.sampling = dict(
      max_new_tokens=r.max_new_tokens,
      eos_ids=() if eos is None else (eos,),
      stop_sequences=stops,
      pad_id=self.tokenizer.pad_id,
    )
    # User rewards are imported now, not after the SFT warm-up.
    self.reward_specs = rewards.check_reward_specs(
      [
        rewards.RewardSpec(
          config.reward.functions.get(name, name),
          weight,
          dict(config.reward.kwargs.get(name, {})),
        )
        for name, weight in config.reward.weights.items()
      ],
      memory_limit_mb=config.reward.memory_limit_mb,
    )
    self._samplers = {}

  # Rows of a batch by process ------------------------------------------------

  def rows(self, n: int, process: int | None = None) -> np.ndarray:
    """The rows of an n-row batch that `process` (default: this one) holds,
    in the order `jax.make_array_from_process_local_data` expects them."""
    size = n // self.num_shards
    shards = self.shards[jax.process_index() if process is None else process]
    return np.concatenate([np.arange(s * size, (s + 1) * size) for s in shards])

  def local(self, examples: list) -> list:
    """This process's rows of a global batch of examples."""
    return [examples[i] for i in self.rows(len(examples))]

  def gather(self, local) -> np.ndarray:
    """The whole batch, on every process, from each process's rows of it."""
    local = np.asarray(local)
    n = len(local) // len(self.shards[jax.process_index()]) * self.num_shards
    rows = [self.rows(n, p) for p in range(jax.process_count())]
    whole = np.empty((n, *local.shape[1:]), local.dtype)
    whole[np.concatenate(rows)] = multihost_utils.process_allgather(
      local, tiled=True
    )
    return whole

  def fetch(self, x: jax.Array) -> np.ndarray:
    """This process's rows of a global array (batch on axis 0)."""
    x = jax.device_put(x, models.batch_sharding(self.mesh, x.ndim))
    parts = {s.index[0].start or 0: s.data for s in x.addressable_shards}
    return np.concatenate([np.asarray(parts[k]) for k in sorted(parts)])

  def mean_over_processes(self, metrics: dict) -> dict:
    """Per-process scalars -> global: means, or sums for failure counts."""
    keys = sorted(metrics)
    values = multihost_utils.process_allgather(
      np.array([metrics[k] for k in keys], np.float64)
    )
    return {
      k: float(v.sum() if k.startswith("reward_failures/") else v.mean())
      for k, v in zip(keys, values.T)
    }

  # Decoders -------------------------------------------------------------------

  def sampler(
    self, temperature: float, num_samples: int, strategy: str, **overrides
  ):
    """The compiled decoder `(params, tokens, mask, key) -> DecodeOutput`
    for these settings (built once): `strategy` 'sample' (temperature 0:
    greedy) or 'beam' (`num_samples` beams, all returned). `overrides` are
    further `SamplingConfig` fields for 'sample', e.g. S1's budget forcing
    (`think_end`, `wait`, `min_thinking_tokens`, `max_thinking_tokens`,
    `max_waits`) or another `max_new_tokens`."""
    key = (temperature, num_samples, strategy, tuple(sorted(overrides.items())))
    if overrides and strategy == "beam":
      raise ValueError(f"beam search takes no sampling overrides: {overrides}")
    if key not in self._samplers:
      r = self.config.rollout
      params = self.abstract_params
      if strategy == "beam":
        cfg = decoding.BeamConfig(
          num_beams=num_samples,
          num_return_sequences=num_samples,
          max_new_tokens=r.max_new_tokens,
          eos_ids=self.sampling["eos_ids"],
          pad_id=self.tokenizer.pad_id,
        )
        fn = decoding.make_beam_search(self.graphdef, params, cfg, self.mesh)
        self._samplers[key] = lambda p, t, m, k: fn(p, t, m)
      else:
        greedy = temperature == 0
        cfg = decoding.SamplingConfig(
          temperature=temperature,
          top_k=0 if greedy else r.top_k,
          top_p=1.0 if greedy else r.top_p,
          min_p=0.0 if greedy else r.min_p,
          num_samples=num_samples,
          **{**self.sampling, **overrides},
        )
        self._samplers[key] = decoding.make_sampler(
          self.graphdef, params, cfg, self.mesh
        )
    return self._samplers[key]
