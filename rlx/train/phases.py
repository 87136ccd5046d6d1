"""The training phases a script composes: SFT on worked solutions
(`run_sft`, and `supervised_phase` for any examples), the RL phase
(`run_rl`) and the equal-compute SFT control (`run_control`). Each
checkpoints into `workdir/checkpoints/<phase>`, resumes from there, writes
its records to the metrics writer and shows a progress bar.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from rlx import algos, decoding
from rlx.data import DataIterator
from rlx.data import tasks as tasks_lib
from rlx.train import checkpoint as ckpt_lib
from rlx.train import curriculum, evaluation
from rlx.train import rollout as rollout_lib
from rlx.train.config import (
  ConfigError,
  make_algo,
  make_sft_algo,
  optimizer_config,
)
from rlx.train.trainer import Trainer, stream


def sft_batch(trainer: Trainer, examples, rng: np.random.Generator) -> dict:
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


class Progress:
  """A tqdm bar on process 0 that says when it is compiling (the first
  step) and when it is evaluating."""

  def __init__(self, enabled: bool, total: int | None, initial: int, desc):
    self.bar, self.desc, self.steps = None, desc, 0
    finished = total is not None and initial >= total  # nothing to show
    if enabled and jax.process_index() == 0 and not finished:
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
    """`evaluation.evaluate(trainer, params, step)`, said on the bar."""
    if self.bar is None:
      return evaluation.evaluate(trainer, params, step)
    n = len(trainer.task.eval[: trainer.config.eval.num_prompts])
    self.bar.set_description(f"{self.desc} (evaluating {n} prompts)")
    metrics = evaluation.evaluate(trainer, params, step)
    self.bar.set_description(self.desc + ("" if self.steps else " (compiling)"))
    return metrics

  def close(self):
    if self.bar is not None:
      self.bar.close()


def _save_due(step: int, total: int, every: int) -> bool:
  return step % every == 0 or step == total


class TrainingDivergedError(RuntimeError):
  """Updates that cannot be trusted; raised before they are saved."""


class UpdateGuard:
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
  params, _ = supervised_phase(
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
  params, _ = supervised_phase(
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


def supervised_phase(
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
  examples: list | None = None,
  batch_size: int | None = None,
):
  """SFT on worked solutions (of `examples`, default the task's training
  set; each needs a `solution` or `teacher_solutions`, see
  `tasks.draw_solution`), `batch_size` per step (default
  `config.sft.batch_size`), from `params`, logged as `phase`
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
  batch_size = batch_size or config.sft.batch_size
  train_set = trainer.task.train if examples is None else list(examples)
  data = DataIterator(train_set, batch_size, seed=data_seed)
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

  bar = Progress(config.train.progress, steps, start, phase)
  np_rng = lambda step: np.random.default_rng(  # the teacher's draws
    [config.seed, zlib.crc32(phase.encode()), step]
  )
  first = [train_set[i % len(train_set)] for i in range(batch_size)]
  example = _to_device(sft_batch(trainer, first, np_rng(0)), mesh)
  update = algos.compile_update_step(
    algo, trainer.graphdef, state, example, mesh
  )
  key = stream(config.seed, phase)
  pending, guard = False, UpdateGuard(config, phase)
  step = start
  while not done(step):
    step += 1
    t0 = time.perf_counter()
    batch = sft_batch(trainer, next(data), np_rng(step))
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


def run_sft_unless_rl_resumes(trainer: Trainer, writer):
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


def _nanmean(x: np.ndarray) -> float:
  x = np.asarray(x, np.float64)
  ok = np.isfinite(x)
  return float(x[ok].mean()) if ok.any() else float("nan")


class RLStep:
  """One step of `run_rl`: rollout, rewards (and dynamic sampling), the
  update's batch, `prepare` (old/reference log-probs, advantages) and the
  update, compiled on first use. `times` holds the last step's seconds:
  `rollout_s` (decoding and texts), `reward_s`, `batch_s` (host batch and
  transfer) and `update_s` (prepare, update and its scalars)."""

  def __init__(self, trainer: Trainer, algo, updates: int):
    config = trainer.config
    u = algo.update
    if u.prompt_length > trainer.prompt_len:
      raise ConfigError(
        f"config.algo.options.prompt_length={u.prompt_length}: must be at "
        f"most the rollout's padded prompt width, {trainer.prompt_len} "
        "tokens here (completions start there; positions before "
        "prompt_length are not scored)"
      )
    self.trainer, self.algo, self.update = trainer, algo, None
    graphdef, G = trainer.graphdef, trainer.G
    logprobs = functools.partial(
      algos.token_logprobs,
      graphdef,
      chunk_size=u.chunk_size,
      temperature=u.temperature,
      prompt_length=u.prompt_length,
    )
    # One on-policy GRPO update needs no old log-prob pass: its ratio is 1.
    grpo = isinstance(algo.config, algos.GRPOConfig)
    needs_old = not (grpo and updates == 1)
    self.per_reward = grpo

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

    self.prepare = jax.jit(prepare)
    self.rollout_key = stream(config.seed, "rollout")
    self.update_key = stream(config.seed, "update")
    self.times = {}

  def __call__(self, state, ref_params, examples, draw, step, running_mean):
    """`(state, rollout, update metrics, prepare stats)` of step `step` on
    the global batch `examples`; `draw()` gives dynamic sampling's next."""
    trainer, mesh = self.trainer, self.trainer.mesh
    t0 = time.perf_counter()
    key = jax.random.fold_in(self.rollout_key, step)
    rollout = rollout_lib.generate(trainer, state.params, examples, key)
    t1 = time.perf_counter()
    rollout = rollout_lib.score(trainer, rollout)
    if trainer.config.rollout.dynamic_sampling:
      rollout = rollout_lib.dynamic_sampling(
        trainer, state.params, rollout, draw, key
      )
    t2 = time.perf_counter()
    batch = rollout_lib.rl_batch(trainer, rollout, self.per_reward)
    batch = _to_device(batch, mesh)
    t3 = time.perf_counter()
    batch, stats = self.prepare(
      state.params,
      ref_params,
      state.value_head,
      batch,
      jnp.float32(running_mean),
    )
    if self.update is None:
      self.update = algos.compile_update_step(
        self.algo, trainer.graphdef, state, batch, mesh
      )
    key = jax.random.fold_in(self.update_key, step)
    state, m = self.update(state, batch, key)
    m, stats = _scalars(m), _scalars(stats)
    t4 = time.perf_counter()
    self.times = dict(
      rollout_s=t1 - t0, reward_s=t2 - t1, batch_s=t3 - t2, update_s=t4 - t3
    )
    return state, rollout, m, stats


def run_rl(trainer: Trainer, sft_params, writer):
  """The RL phase from `sft_params`; returns the final params and the step
  time spent (rollout, rewards and update, without evaluation, saving or
  the first step after a start, which compiles)."""
  config = trainer.config
  r, mesh = config.rollout, trainer.mesh
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

  rl_step = RLStep(trainer, algo, updates)
  bar = Progress(config.train.progress, steps, start, config.algo.name)
  if start == 0:
    record = {
      **bar.evaluate(trainer, state.params, 0),
      **evaluation.teacher_metrics(trainer),
    }
    writer.write(0, {**record, "time/elapsed_s": 0.0}, "rl")
  pending, guard = False, UpdateGuard(config, "rl")
  for step in range(start + 1, steps + 1):
    state, rollout, m, stats = rl_step(
      state, ref_params, next(data), lambda: next(data), step, running_mean
    )
    running_mean = stats.get("running_mean", running_mean)
    t = rl_step.times
    if step > start + 1:  # the first step compiles
      elapsed += sum(t.values())

    record = {
      # NaN: unscored by every reward (left out of the advantages too).
      "train/reward": _nanmean(trainer.gather(rollout.rewards)),
      "train/accuracy": float(trainer.gather(rollout.correct).mean()),
      "train/response_length": float(trainer.gather(rollout.lengths).mean()),
      "time/rollout_s": t["rollout_s"],
      "time/reward_s": t["reward_s"],
      "time/update_s": t["batch_s"] + t["update_s"],
      "time/elapsed_s": elapsed,
      **{f"train/{k}": v for k, v in rollout.metrics.items()},
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
