"""The training loop: prompts -> rollout -> rewards -> log-probs -> update.

`run(config, workdir)` is the library entry point behind
`experiments/run.py`, and what a notebook calls. It trains a policy with an
optional SFT warm-up on the task's worked solutions, then the configured RL
algorithm, checkpointing as it goes; a restarted run resumes from the
latest checkpoint in `workdir` (params, optimizer state, data position and,
through `fold_in(stream, step)`, the random numbers), so an interrupted run
ends bitwise identical to an uninterrupted one.

Multi-host: every process runs this same loop. Each draws the same global
prompt batch and works on its own rows of it (those of its devices' batch
shards, `Trainer.rows`): it decodes them, scores them and feeds them to
the update; scalar metrics are combined across processes (`gather`). Only
process 0 writes metrics, plots and exports; all take part in checkpoints.
With one process this is the single-host loop.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
import warnings
import zlib
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from rlx import algos, decoding, models, rewards
from rlx.data import DataIterator
from rlx.data import tasks as tasks_lib
from rlx.data import tokenizer as tokenizer_lib
from rlx.rewards import extract
from rlx.train import checkpoint as ckpt_lib
from rlx.train import curriculum
from rlx.train import metrics as metrics_lib
from rlx.train.config import (
  ConfigError,
  check_config,
  make_algo,
  make_sft_algo,
  optimizer_config,
)

TASK_SYMBOLS = ("<think>", "</think>", "<answer>", "</answer>")


# Setup ------------------------------------------------------------------------


def _stream(seed: int, name: str) -> jax.Array:
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


def _is_correct(completions, fields) -> np.ndarray:
  """Per-completion correctness, the task's accuracy without format."""
  return np.asarray(rewards.is_correct(completions, fields), bool)


def _majority_correct(completions_k, fields_one) -> bool:
  """maj@k: the most common extracted answer is correct."""
  answers = [extract.extract_answer(c) for c in completions_k]
  keys = []
  for a in answers:
    if a is None:
      continue
    canon = extract.canonical_answer(a)
    keys.append((a, str(canon) if canon is not None else a.strip()))
  if not keys:
    return False
  top = Counter(k for _, k in keys).most_common(1)[0][0]
  answer = next(a for a, k in keys if k == top)
  return bool(_is_correct([f"<answer>{answer}</answer>"], fields_one)[0])


class Trainer:
  """Holds what one run builds once: mesh, model, jitted functions."""

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

  # Rollout --------------------------------------------------------------------

  def sampler(self, temperature: float, num_samples: int, strategy: str):
    key = (temperature, num_samples, strategy)
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
          **self.sampling,
        )
        self._samplers[key] = decoding.make_sampler(
          self.graphdef, params, cfg, self.mesh
        )
    return self._samplers[key]

  def generate(self, params, examples, key, temperature, num_samples, strategy):
    """Completions of a global batch of `examples` (num_samples consecutive
    rows each): this process's prompt tokens, mask and decoder output rows.
    Every process calls it with the same examples."""
    prompts = encode_prompts(self.local(examples), self.tokenizer, self.add_bos)
    tokens, mask = decoding.pad_prompts(
      prompts, self.tokenizer.pad_id, length=self.prompt_len
    )
    batch = algos.host_local_to_global({"t": tokens, "m": mask}, self.mesh)
    fn = self.sampler(temperature, num_samples, strategy)
    out = fn(params, batch["t"], batch["m"], key)
    return tokens, mask, jax.tree.map(self.fetch, out)

  def decode_texts(self, out) -> list[str]:
    return [
      self.tokenizer.decode(row[m.astype(bool)])
      for row, m in zip(out.tokens, out.mask)
    ]

  # Scoring --------------------------------------------------------------------

  def task_fields(self, examples, repeat: int) -> dict:
    return tasks_lib.collate_fields(examples, self.task.reward_fields, repeat)

  def score(self, examples, completions, lengths):
    """Rewards of this process's rows of a global batch of `examples`."""
    examples = self.local(examples)
    fields = self.task_fields(examples, self.G)
    fields["completion_lengths"] = [int(n) for n in lengths]
    fields["group_size"] = self.G
    prompts = [e["prompt"] for e in examples for _ in range(self.G)]
    total, metrics = rewards.compute_rewards(
      self.reward_specs,
      prompts,
      completions,
      fields,
      timeout_s=self.config.reward.timeout_s,
      fail_on_error=self.config.reward.fail_on_error,
      max_abs=self.config.reward.max_abs,
      memory_limit_mb=self.config.reward.memory_limit_mb,
    )
    correct = _is_correct(completions, fields)
    metrics = self.mean_over_processes(metrics)
    return np.asarray(total, np.float32), correct, metrics

  # Evaluation -----------------------------------------------------------------

  def evaluate(self, params, step: int) -> dict:
    """Greedy accuracy, pass@k, maj@k, mean@k (the share of the k samples
    that are correct: the sampled accuracy RL maximises) and mean length on
    held-out prompts.

    Each process scores its rows of every chunk; `gather` combines them."""
    e = self.config.eval
    examples = self.task.eval[: e.num_prompts]
    shards = self.num_shards
    batch = max(shards, e.batch_size // shards * shards)
    key = jax.random.fold_in(_stream(self.config.seed, "eval"), step)
    correct, lengths, passk, meank, majk = [], [], [], [], []
    for start in range(0, len(examples), batch):
      chunk = examples[start : start + batch]
      padded = chunk + [chunk[-1]] * (batch - len(chunk))
      local = self.local(padded)
      _, _, out = self.generate(params, padded, key, 0.0, 1, "sample")
      texts = self.decode_texts(out)
      correct.append(_is_correct(texts, self.task_fields(local, 1)))
      lengths.append(out.lengths)
      if e.num_samples:
        k = e.num_samples
        sub = jax.random.fold_in(key, start)
        _, _, out = self.generate(
          params, padded, sub, e.temperature, k, "sample"
        )
        texts = self.decode_texts(out)
        ok = _is_correct(texts, self.task_fields(local, k)).reshape(-1, k)
        passk.append(ok.any(axis=1))
        meank.append(ok.mean(axis=1))
        if "answer" in self.task.reward_fields:
          majk.append(
            [
              _majority_correct(
                texts[i * k : (i + 1) * k], self.task_fields([ex], 1)
              )
              for i, ex in enumerate(local)
            ]
          )

    def rows(chunks):  # every process's rows, less the last chunk's padding
      return np.concatenate([self.gather(c) for c in chunks])[: len(examples)]

    per_prompt = {"accuracy": rows(correct)}
    if passk:
      per_prompt[f"pass@{e.num_samples}"] = rows(passk)
      per_prompt[f"mean@{e.num_samples}"] = rows(meank)
    if majk:
      per_prompt[f"maj@{e.num_samples}"] = rows(majk)
    metrics = summarise(per_prompt, examples, "eval")
    metrics["eval/num_prompts"] = len(examples)
    metrics["eval/response_length"] = float(np.mean(rows(lengths)))
    return metrics

  def teacher_metrics(self) -> dict:
    """The SFT teacher's accuracy on the held-out prompts, where the task
    says it (`teacher_accuracy`: its expected accuracy; `majority_accuracy`:
    that of its most likely answer)."""
    examples = self.task.eval[: self.config.eval.num_prompts]
    if "teacher_accuracy" not in examples[0]:
      return {}
    per_prompt = {
      "accuracy": np.array([e["teacher_accuracy"] for e in examples]),
      "majority_accuracy": np.array([e["teacher_majority"] for e in examples]),
    }
    return summarise(per_prompt, examples, "teacher")


def summarise(per_prompt: dict, examples: list, prefix: str) -> dict:
  """Means and standard errors of per-prompt values, overall and for each
  `category` of the examples: `{prefix}/{name}`, `{prefix}/{name}_se`,
  `{prefix}/{category}/{name}`, `{prefix}/{category}/{name}_se`."""
  categories = np.array([ex.get("category", "") for ex in examples])
  groups = {"": np.ones(len(examples), bool)}
  for c in sorted(set(categories) - {""}):
    groups[f"{c}/"] = categories == c
  metrics = {}
  for group, rows in groups.items():
    for name, values in per_prompt.items():
      v = np.asarray(values, np.float64)[rows]
      se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
      metrics[f"{prefix}/{group}{name}"] = float(v.mean())
      metrics[f"{prefix}/{group}{name}_se"] = float(se)
  return metrics


# Phases -----------------------------------------------------------------------


def _sft_batch(trainer: Trainer, examples, rng: np.random.Generator) -> dict:
  """This process's rows of a global batch of `examples`: prompt + worked
  solution (drawn with `rng` where the task's teacher can write several,
  `tasks.draw_solution`) + EOS, loss on the solution tokens only."""
  tok = trainer.tokenizer
  rows, masks = [], []
  solutions = [tasks_lib.draw_solution(e, rng) for e in examples]
  for e, solution in zip(trainer.local(examples), trainer.local(solutions)):
    prompt = tok.encode(e["prompt"], add_bos=trainer.add_bos)
    answer = tok.encode(solution)
    if tok.eos_id is not None:
      answer = answer + [tok.eos_id]
    rows.append(prompt + answer)
    masks.append([0] * len(prompt) + [1] * len(answer))
  length = trainer.prompt_len + trainer.config.rollout.max_new_tokens
  longest = max(len(r) for r in rows)
  if longest > length:
    raise ConfigError(
      f"an SFT example is {longest} tokens, more than the prompt bucket "
      f"{trainer.prompt_len} + rollout.max_new_tokens="
      f"{trainer.config.rollout.max_new_tokens}"
    )
  tokens, mask = decoding.pad_prompts(rows, tok.pad_id, length=length)
  comp = np.zeros_like(mask)
  for i, m in enumerate(masks):
    comp[i, length - len(m) :] = m
  return {"tokens": tokens, "mask": mask, "completion_mask": comp}


def _to_device(batch: dict, mesh) -> dict:
  return algos.host_local_to_global(batch, mesh)


def _scalars(tree) -> dict:
  """Replicated scalars (on every process) -> floats."""
  return {k: float(v.addressable_data(0)) for k, v in tree.items()}


class _Progress:
  """A tqdm bar on process 0 that says when it is compiling (the first
  step) and when it is evaluating."""

  def __init__(self, enabled: bool, total: int | None, initial: int, desc):
    self.bar, self.desc, self.steps = None, desc, 0
    if enabled and jax.process_index() == 0:
      from tqdm.auto import tqdm

      self.bar = tqdm(
        total=total,
        initial=initial,
        desc=f"{desc} (compiling)",
        dynamic_ncols=True,
      )

  def update(self, **postfix):
    self.steps += 1
    if self.bar is not None:
      self.bar.set_description(self.desc, refresh=False)
      self.bar.set_postfix(
        {k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False
      )
      self.bar.update(1)

  def evaluate(self, trainer: Trainer, params, step: int) -> dict:
    """`trainer.evaluate(params, step)`, said on the bar."""
    if self.bar is None:
      return trainer.evaluate(params, step)
    n = len(trainer.task.eval[: trainer.config.eval.num_prompts])
    self.bar.set_description(f"{self.desc} (evaluating {n} prompts)")
    metrics = trainer.evaluate(params, step)
    self.bar.set_description(self.desc + ("" if self.steps else " (compiling)"))
    return metrics

  def close(self):
    if self.bar is not None:
      self.bar.close()


def _save_due(step: int, total: int, every: int) -> bool:
  return step % every == 0 or step == total


class TrainingDivergedError(RuntimeError):
  """Updates that cannot be trusted; raised before they are saved."""


class _UpdateGuard:
  """Reports every skipped update step; stops the run after
  `train.max_consecutive_skips` in a row, or after one step that grows the
  params' norm more than `train.max_param_norm_growth` times."""

  def __init__(self, config, phase: str):
    self.max_skips = config.train.max_consecutive_skips
    self.max_growth = config.train.max_param_norm_growth
    self.phase = phase
    self.skips = 0

  def check(self, step: int, m: dict) -> None:
    loss, grad_norm = m.get("loss", np.nan), m.get("grad_norm", np.nan)
    norm = m.get("param_norm", 0.0)
    if m.get("skipped_steps"):
      self.skips += 1
      logging.warning(
        "%s step %d: update skipped (%d optimizer steps): loss=%.4g, "
        "grad_norm=%.4g are not finite; params unchanged (%d in a row)",
        self.phase,
        step,
        int(m["skipped_steps"]),
        loss,
        grad_norm,
        self.skips,
      )
      if self.skips >= self.max_skips:
        if not np.isfinite(norm):
          cause = "the params themselves are not finite (a damaged checkpoint?)"
        elif not np.isfinite(loss):
          cause = (
            "the loss is not finite: check the rewards and advantages, or "
            "lower the learning rate"
          )
        else:
          cause = "the gradients overflow: lower the learning rate"
        raise TrainingDivergedError(
          f"{self.phase}: {self.skips} update steps in a row (to step "
          f"{step}) were skipped, reaching train.max_consecutive_skips="
          f"{self.max_skips}; likely cause: {cause}"
        )
    else:
      self.skips = 0
    growth = m.get("param_norm_growth", 1.0)
    if self.max_growth and not growth <= self.max_growth:  # NaN too
      raise TrainingDivergedError(
        f"{self.phase} step {step}: one update grew the params' global norm "
        f"{growth:.3g} times (to {norm:.3g}), more than "
        f"train.max_param_norm_growth={self.max_growth}; stopped before "
        "saving it. Likely cause: a learning rate far too high"
      )


def run_sft(trainer: Trainer, writer):
  """The SFT warm-up; returns the final params (resuming if possible)."""
  config = trainer.config
  params, _ = _supervised_phase(
    trainer,
    writer,
    phase="sft",
    params=trainer.initial_params,
    algo=make_sft_algo(config),
    data_seed=config.seed + 1,
    steps=config.sft.steps,
  )
  return params


def run_control(trainer: Trainer, sft_params, writer, seconds: float):
  """The equal-compute SFT control: SFT continues from `sft_params` on the
  task's worked solutions for `seconds` of step time (the RL phase's),
  rounded up to a multiple of `control.eval_every` steps. Returns the
  final params."""
  c = trainer.config.control
  opt = optimizer_config(
    trainer.config,
    0,
    "control",
    learning_rate=c.learning_rate,
    warmup_steps=c.warmup_steps,
    schedule="constant",
  )
  params, _ = _supervised_phase(
    trainer,
    writer,
    phase="control",
    params=sft_params,
    algo=algos.make("sft", optimizer=opt),
    data_seed=trainer.config.seed + 3,
    seconds=seconds,
    eval_every=c.eval_every,
  )
  return params


def _supervised_phase(
  trainer: Trainer,
  writer,
  *,
  phase: str,
  params,
  algo,
  data_seed: int,
  steps: int | None = None,
  seconds: float | None = None,
  eval_every: int = 0,
):
  """SFT on the task's worked solutions from `params`, logged as `phase`
  and checkpointed in `checkpoints/{phase}`, resuming from there: for
  `steps` steps, or until the step time (update and batching, without
  evaluation, saving or the first step after a start, which compiles)
  reaches `seconds` at a multiple of `eval_every`. Returns the final params
  and the step time spent."""
  config = trainer.config
  mesh = trainer.mesh
  state = algos.create_train_state(trainer.graphdef, params, algo, mesh)
  ckpt = ckpt_lib.Checkpointer(
    os.path.join(trainer.workdir, "checkpoints", phase),
    keep=config.train.keep_checkpoints,
    async_save=config.train.async_checkpoints,
  )
  batch_size = config.sft.batch_size
  data = DataIterator(trainer.task.train, batch_size, seed=data_seed)
  start, elapsed = 0, 0.0
  restored = ckpt.restore_latest(ckpt_lib.abstract_like(state))
  if restored is not None:
    start, state, meta = restored
    data.restore(meta["data"])
    elapsed = meta.get("elapsed_s", 0.0)
  writer.truncate(lambda r: r["phase"] != phase or r["step"] <= start)

  def done(step):
    if steps is not None:
      return step >= steps
    if eval_every and step % eval_every:
      return False
    # Process 0's clock decides, so that every process stops at one step.
    times = multihost_utils.broadcast_one_to_all(np.array([elapsed, seconds]))
    return bool(times[0] >= times[1])

  if done(start):
    ckpt.close()
    return state.params, elapsed

  bar = _Progress(config.train.progress, steps, start, phase)
  np_rng = lambda step: np.random.default_rng(  # the teacher's draws
    [config.seed, zlib.crc32(phase.encode()), step]
  )
  train_set = trainer.task.train
  first = [train_set[i % len(train_set)] for i in range(batch_size)]
  example = _to_device(_sft_batch(trainer, first, np_rng(0)), mesh)
  update = algos.compile_update_step(
    algo, trainer.graphdef, state, example, mesh
  )
  key = _stream(config.seed, phase)
  pending, guard = False, _UpdateGuard(config, phase)
  step = start
  while not done(step):
    step += 1
    t0 = time.perf_counter()
    batch = _sft_batch(trainer, next(data), np_rng(step))
    batch = _to_device(batch, mesh)
    state, m = update(state, batch, jax.random.fold_in(key, step))
    m = _scalars(m)
    if step > start + 1:  # the first step compiles
      elapsed += time.perf_counter() - t0
    record = {f"update/{k}": v for k, v in m.items()}
    record["time/elapsed_s"] = elapsed
    if eval_every and step % eval_every == 0:
      record.update(bar.evaluate(trainer, state.params, step))
    writer.write(step, record, phase)
    bar.update(loss=m["loss"])
    guard.check(step, m)
    pending |= done(step) or step % config.train.save_every == 0
    if pending and not m.get("skipped_steps"):
      ckpt.save(step, state, {"data": data.state(), "elapsed_s": elapsed})
      pending = False
  bar.close()
  ckpt.close()
  return state.params, elapsed


def _run_sft_unless_rl_resumes(trainer: Trainer, writer):
  """`run_sft`, or, when no SFT checkpoint can be restored but RL has
  checkpoints of its own, the initial params for RL to resume over (unless
  the algorithm needs the SFT policy as its reference)."""
  try:
    return run_sft(trainer, writer)
  except ckpt_lib.CheckpointCorruptError as e:
    rl_dir = os.path.join(trainer.workdir, "checkpoints", "rl")
    if not os.path.isdir(rl_dir) or not any(
      name.isdigit() for name in os.listdir(rl_dir)
    ):
      raise
    name = trainer.config.algo.name
    if make_algo(trainer.config, 1).needs_reference:
      raise ckpt_lib.CheckpointCorruptError(
        f"{e}\nRL has checkpoints in {rl_dir}, but {name} needs the SFT "
        "policy as its reference"
      ) from None
    logging.warning("%s\nRL resumes from its own checkpoints in %s", e, rl_dir)
    return trainer.initial_params


def run_rl(trainer: Trainer, sft_params, writer):
  """The RL phase from `sft_params`; returns the final params and the step
  time spent (rollout, rewards and update, without evaluation, saving or
  the first step after a start, which compiles)."""
  config = trainer.config
  r, mesh, G = config.rollout, trainer.mesh, trainer.G
  steps = config.train.steps
  updates = config.algo.num_epochs * config.algo.num_minibatches
  algo = make_algo(config, updates)
  state = algos.create_train_state(trainer.graphdef, sft_params, algo, mesh)
  # A copy: the train state's params may alias `sft_params` and be donated.
  ref_params = (
    jax.tree.map(jnp.copy, sft_params) if algo.needs_reference else None
  )
  ckpt = ckpt_lib.Checkpointer(
    os.path.join(trainer.workdir, "checkpoints", "rl"),
    keep=config.train.keep_checkpoints,
    async_save=config.train.async_checkpoints,
  )
  data = DataIterator(
    trainer.task.train,
    r.prompts_per_step,
    seed=config.seed + 2,
    weights=curriculum.rl_weights(trainer, sft_params),
  )
  start, running_mean, elapsed = 0, 0.0, 0.0
  restored = ckpt.restore_latest(ckpt_lib.abstract_like(state))
  if restored is not None:
    start, state, meta = restored
    data.restore(meta["data"])
    running_mean = meta.get("running_mean", 0.0)
    elapsed = meta.get("elapsed_s", 0.0)
    writer.truncate(lambda rec: rec["phase"] != "rl" or rec["step"] <= start)
  else:
    writer.truncate(lambda rec: rec["phase"] != "rl")

  graphdef = trainer.graphdef
  u = algo.update
  logprobs = functools.partial(
    algos.token_logprobs,
    graphdef,
    chunk_size=u.chunk_size,
    temperature=u.temperature,
  )

  # One on-policy GRPO update needs no old log-prob pass: its ratio is 1.
  needs_old = not (isinstance(algo.config, algos.GRPOConfig) and updates == 1)

  def prepare(params, ref_params, value_head, batch, running_mean):
    batch = dict(batch)
    if needs_old:
      batch["old_logprobs"] = logprobs(params, batch["tokens"], batch["mask"])
    if ref_params is not None:
      batch["ref_logprobs"] = logprobs(
        ref_params, batch["tokens"], batch["mask"]
      )
    if value_head is not None:
      batch["old_values"] = algos.values(
        graphdef, params, value_head, batch["tokens"], batch["mask"]
      )
    return algo.prepare_batch(batch, G, running_mean=running_mean)

  prepare = jax.jit(prepare)
  update = None
  rollout_key = _stream(config.seed, "rollout")
  update_key = _stream(config.seed, "update")
  bar = _Progress(config.train.progress, steps, start, config.algo.name)
  if start == 0:
    record = {
      **bar.evaluate(trainer, state.params, 0),
      **trainer.teacher_metrics(),
    }
    writer.write(0, {**record, "time/elapsed_s": 0.0}, "rl")
  pending, guard = False, _UpdateGuard(config, "rl")
  for step in range(start + 1, steps + 1):
    t0 = time.perf_counter()
    examples, prompt_tokens, prompt_mask, out, texts = _rollout(
      trainer, state.params, data, jax.random.fold_in(rollout_key, step)
    )
    t1 = time.perf_counter()
    reward, correct, reward_metrics = trainer.score(
      examples, texts, out.lengths
    )
    if r.dynamic_sampling:
      examples, prompt_tokens, prompt_mask, out, reward, correct, extra = (
        _dynamic_sampling(
          trainer,
          state.params,
          data,
          rollout_key,
          step,
          (examples, prompt_tokens, prompt_mask, out, reward, correct),
        )
      )
      reward_metrics.update(extra)
    t2 = time.perf_counter()
    batch = _rl_batch(
      prompt_tokens, prompt_mask, out, reward, G, trainer.sampling
    )
    batch = _to_device(batch, mesh)
    batch, stats = prepare(
      state.params,
      ref_params,
      state.value_head,
      batch,
      jnp.float32(running_mean),
    )
    if update is None:
      update = algos.compile_update_step(algo, graphdef, state, batch, mesh)
    state, m = update(state, batch, jax.random.fold_in(update_key, step))
    m, stats = _scalars(m), _scalars(stats)
    running_mean = stats.get("running_mean", running_mean)
    t3 = time.perf_counter()
    if step > start + 1:  # the first step compiles
      elapsed += t3 - t0

    record = {
      # NaN: unscored by every reward (left out of the advantages too).
      "train/reward": _nanmean(trainer.gather(reward)),
      "train/accuracy": float(trainer.gather(correct).mean()),
      "train/response_length": float(trainer.gather(out.lengths).mean()),
      "time/rollout_s": t1 - t0,
      "time/reward_s": t2 - t1,
      "time/update_s": t3 - t2,
      "time/elapsed_s": elapsed,
      **{f"train/{k}": v for k, v in reward_metrics.items()},
      **{f"update/{k}": v for k, v in {**stats, **m}.items()},
    }
    every = config.train.eval_every
    if step == steps or (every and step % every == 0):
      record.update(bar.evaluate(trainer, state.params, step))
    writer.write(step, record, "rl")
    bar.update(reward=record["train/reward"], acc=record["train/accuracy"])
    guard.check(step, m)
    pending |= _save_due(step, steps, config.train.save_every)
    if pending and not m.get("skipped_steps"):
      meta = {"data": data.state(), "running_mean": running_mean}
      ckpt.save(step, state, {**meta, "elapsed_s": elapsed})
      pending = False
  bar.close()
  ckpt.close()
  return state.params, elapsed


def _rollout(trainer: Trainer, params, data, key):
  """The global batch of examples and this process's rollout rows."""
  examples = next(data)
  strategy = trainer.config.rollout.strategy
  temperature = trainer.config.rollout.temperature
  tokens, mask, out = trainer.generate(
    params, examples, key, temperature, trainer.G, strategy
  )
  return examples, tokens, mask, out, trainer.decode_texts(out)


def _dynamic_sampling(trainer, params, data, rollout_key, step, first):
  """DAPO: replace groups whose rewards are all equal by fresh groups.

  Up to `dynamic_sampling_max_rounds` extra rollouts; groups still missing
  are filled with zero-std groups, so the batch shape never changes. Groups
  are picked from the whole batch (gathered from every process); each
  process then keeps its rows of the result.
  """
  G = trainer.G

  def whole(rollout):  # (examples, tokens, mask, out, reward, correct)
    return (rollout[0], *jax.tree.map(trainer.gather, rollout[1:]))

  examples, tokens, mask, out, reward, correct = whole(first)
  n = len(examples)

  def informative(rew):  # unscored (NaN) samples left out, as in the loss
    with warnings.catch_warnings():  # an all-NaN group's std is NaN
      warnings.simplefilter("ignore", RuntimeWarning)
      return np.nan_to_num(np.nanstd(rew.reshape(-1, G), axis=1)) > 0

  keep = [i for i in range(n) if informative(reward)[i]]
  pool = [(examples, tokens, mask, out, reward, correct, keep)]
  have = len(keep)
  rounds = 0
  while (
    have < n and rounds < trainer.config.rollout.dynamic_sampling_max_rounds
  ):
    rounds += 1
    key = jax.random.fold_in(jax.random.fold_in(rollout_key, step), rounds)
    ex, tk, mk, o, texts = _rollout(trainer, params, data, key)
    rew, cor, _ = trainer.score(ex, texts, o.lengths)
    ex, tk, mk, o, rew, cor = whole((ex, tk, mk, o, rew, cor))
    good = [i for i in range(n) if informative(rew)[i]]
    pool.append((ex, tk, mk, o, rew, cor, good))
    have += len(good)
  picks = [(p, i) for p, entry in enumerate(pool) for i in entry[6]][:n]
  filler = [i for i in range(n) if i not in pool[0][6]]
  while len(picks) < n:
    picks.append((0, filler.pop(0)))

  def gather_rows(get):
    rows = []
    for p, i in picks:
      x = get(pool[p])
      rows.append(x[i * G : (i + 1) * G])
    return np.concatenate(rows)

  out_fields = {
    name: gather_rows(lambda e, name=name: getattr(e[3], name))
    for name in ("tokens", "mask", "lengths", "logprobs", "raw_logprobs")
  }
  new_out = type(out)(
    **{
      **{f: getattr(out, f) for f in out.__dataclass_fields__},
      **out_fields,
    }
  )
  new_examples = [pool[p][0][i] for p, i in picks]
  new_tokens = np.concatenate([pool[p][1][i : i + 1] for p, i in picks])
  new_mask = np.concatenate([pool[p][2][i : i + 1] for p, i in picks])
  metrics = {
    "dynamic_sampling/rounds": rounds,
    "dynamic_sampling/informative_groups": min(have, n) / n,
  }
  picked = (
    new_tokens,
    new_mask,
    new_out,
    gather_rows(lambda e: e[4]),
    gather_rows(lambda e: e[5]),
  )
  local = lambda x: x[trainer.rows(len(x))]
  return (new_examples, *jax.tree.map(local, picked), metrics)


def _nanmean(x: np.ndarray) -> float:
  x = np.asarray(x, np.float64)
  ok = np.isfinite(x)
  return float(x[ok].mean()) if ok.any() else float("nan")


def _rl_batch(prompt_tokens, prompt_mask, out, reward, G, sampling) -> dict:
  """Prompt (repeated G times) + completion rows for the update; `truncated`
  flags the completions that hit `max_new_tokens` without a stop."""
  eos = [(e,) for e in sampling["eos_ids"]]
  stops = eos + list(sampling["stop_sequences"])
  ptok = np.repeat(prompt_tokens, G, axis=0)
  pmask = np.repeat(prompt_mask, G, axis=0)
  cmask = np.asarray(out.mask, np.int32)
  return {
    "tokens": np.concatenate([ptok, np.asarray(out.tokens, np.int32)], 1),
    "mask": np.concatenate([pmask, cmask], 1),
    "completion_mask": np.concatenate([np.zeros_like(pmask), cmask], 1),
    "rewards": np.asarray(reward, np.float32),
    "truncated": algos.truncated_completions(out.tokens, out.lengths, stops),
  }


# Entry point ------------------------------------------------------------------


def run(config, workdir: str) -> dict:
  """Train as configured; returns the summary (see `summarise_run`), also
  written to `workdir/summary.json`.

  Writes to `workdir`: metrics.jsonl, summary.json, tensorboard/,
  plots.png, checkpoints/{sft,rl,control}/ and export/ (the RL policy in HF
  format, with the tokenizer). With `control.enabled`, after RL an SFT
  control continues from the SFT params for the RL phase's step time.
  """
  start = time.perf_counter()
  trainer = Trainer(config, workdir)
  main = jax.process_index() == 0
  writer = metrics_lib.MetricsWriter(workdir, enabled=main)
  try:
    sft_params = trainer.initial_params
    if config.sft.steps:
      sft_params = _run_sft_unless_rl_resumes(trainer, writer)
    params, rl_seconds = run_rl(trainer, sft_params, writer)
    if config.control.enabled:
      # The RL state may have donated `sft_params`: restore them.
      sft_params = run_sft(trainer, writer) if config.sft.steps else None
      run_control(trainer, sft_params, writer, rl_seconds)
  finally:
    writer.close()
  multihost_utils.sync_global_devices("rlx.train.run: metrics written")
  if config.train.export:
    export = os.path.join(workdir, "export")
    models.save_pretrained(nnx.merge(trainer.graphdef, params), export)
    if main:
      trainer.tokenizer.save(export)
  records = metrics_lib.read_metrics(workdir)
  summary = metrics_lib.summarise_run(records)
  summary["wall_s"] = time.perf_counter() - start
  previous = metrics_lib.read_summary(workdir)
  if previous and {k: previous.get(k) for k in summary if k != "wall_s"} == {
    k: v for k, v in summary.items() if k != "wall_s"
  }:
    # Nothing was left to train: keep the wall time of the run that did it.
    summary["wall_s"] = previous["wall_s"]
    if main:
      logging.warning("%s already holds this finished run", workdir)
  if main:
    metrics_lib.plot_metrics(workdir)
    metrics_lib.write_summary(workdir, summary)
  return summary
