"""Rollouts: generate completions for a batch of prompts, score them, and
turn them into the update's batch.

    rollout = generate(trainer, params, examples, key)  # G per prompt
    rollout = score(trainer, rollout)                    # rewards, correct
    batch = rl_batch(trainer, rollout, per_reward=True)  # for the update

Every process calls these with the same global batch of `examples` and
holds its own rows of the result (`Trainer.rows`); `Rollout.whole` and
`Rollout.local` move between the two.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np

from rlx import algos, decoding, rewards
from rlx.data import tasks as tasks_lib
from rlx.train.trainer import Trainer, encode_prompts


@dataclasses.dataclass
class Rollout:
  """G completions for each of a batch of prompts.

  `examples` is the global batch (every process has it); the arrays hold
  this process's rows (or every row, after `whole`): one prompt row per
  example and G consecutive completion rows per prompt row.
  """

  examples: list
  prompt_tokens: np.ndarray  # [n, P] int32, left-padded
  prompt_mask: np.ndarray  # [n, P]
  completions: decoding.DecodeOutput  # [n * G, T] rows
  texts: list[str]  # [n * G] decoded completions
  group_size: int
  rewards: np.ndarray | None = None  # [n * G] weighted total; NaN unscored
  reward_table: np.ndarray | None = None  # [n * G, K] each reward function's
  correct: np.ndarray | None = None  # [n * G] bool: the task's accuracy
  metrics: dict = dataclasses.field(default_factory=dict)

  @property
  def lengths(self) -> np.ndarray:
    return np.asarray(self.completions.lengths)

  def _map(self, fn_prompt_rows, fn_completion_rows, texts=None) -> Rollout:
    rows = lambda x: None if x is None else fn_completion_rows(x)
    completions = jax.tree.map(fn_completion_rows, self.completions)
    if texts is None:
      texts = list(fn_completion_rows(np.asarray(self.texts, object)))
    return dataclasses.replace(
      self,
      prompt_tokens=fn_prompt_rows(self.prompt_tokens),
      prompt_mask=fn_prompt_rows(self.prompt_mask),
      completions=completions,
      texts=texts(completions) if callable(texts) else texts,
      rewards=rows(self.rewards),
      reward_table=rows(self.reward_table),
      correct=rows(self.correct),
    )

  def whole(self, trainer: Trainer) -> Rollout:
    """Every process's rows, on every process (texts decoded again: only
    arrays travel between processes)."""
    texts = lambda out: decode_texts(trainer, out)
    return self._map(trainer.gather, trainer.gather, texts)

  def local(self, trainer: Trainer) -> Rollout:
    """This process's rows of a whole rollout."""
    local = lambda x: np.asarray(x)[trainer.rows(len(x))]
    return self._map(local, local)

  def groups(self, indices) -> Rollout:
    """The rollout of the prompts at `indices` of a whole rollout."""
    G = self.group_size
    indices = np.asarray(indices, int)
    rows = (indices[:, None] * G + np.arange(G)).reshape(-1)
    pick = lambda x: np.asarray(x)[indices]
    return dataclasses.replace(
      self._map(pick, lambda x: np.asarray(x)[rows]),
      examples=[self.examples[i] for i in indices],
    )


def concat(rollouts: list[Rollout]) -> Rollout:
  """The rollouts' prompts and completions one after the other."""
  first = rollouts[0]
  cat = lambda *xs: None if xs[0] is None else np.concatenate(xs)
  field = lambda name: cat(*(getattr(r, name) for r in rollouts))
  return dataclasses.replace(
    first,
    examples=[e for r in rollouts for e in r.examples],
    prompt_tokens=field("prompt_tokens"),
    prompt_mask=field("prompt_mask"),
    completions=jax.tree.map(
      lambda *xs: np.concatenate(xs), *(r.completions for r in rollouts)
    ),
    texts=[t for r in rollouts for t in r.texts],
    rewards=field("rewards"),
    reward_table=field("reward_table"),
    correct=field("correct"),
  )


def generate(
  trainer: Trainer,
  params,
  examples: list,
  key,
  *,
  temperature: float | None = None,
  num_samples: int | None = None,
  strategy: str | None = None,
  **overrides,
) -> Rollout:
  """Completions of a global batch of `examples`, `num_samples` per prompt
  (defaults: the config's rollout settings; `overrides`: further
  `SamplingConfig` fields, see `Trainer.sampler`). Every process calls it
  with the same examples and gets its own rows."""
  r = trainer.config.rollout
  temperature = r.temperature if temperature is None else temperature
  num_samples = trainer.G if num_samples is None else num_samples
  strategy = r.strategy if strategy is None else strategy
  prompts = encode_prompts(
    trainer.local(examples), trainer.tokenizer, trainer.add_bos
  )
  tokens, mask = decoding.pad_prompts(
    prompts, trainer.tokenizer.pad_id, length=trainer.prompt_len
  )
  batch = algos.host_local_to_global({"t": tokens, "m": mask}, trainer.mesh)
  decode = trainer.sampler(temperature, num_samples, strategy, **overrides)
  out = jax.tree.map(trainer.fetch, decode(params, batch["t"], batch["m"], key))
  return Rollout(
    examples, tokens, mask, out, decode_texts(trainer, out), num_samples
  )


def generate_all(
  trainer: Trainer, params, examples: list, key, batch_size: int, **kwargs
) -> Rollout:
  """`generate` over any number of `examples`, in global batches of
  `batch_size` (the last one padded, so one compiled decoder serves all;
  batch `i` draws with `fold_in(key, i)`); the whole rollout, on every
  process. `kwargs` as for `generate`."""
  chunks = []
  for i, start in enumerate(range(0, len(examples), batch_size)):
    chunk = examples[start : start + batch_size]
    chunk = chunk + [chunk[-1]] * (batch_size - len(chunk))
    sub = jax.random.fold_in(key, i)
    chunks.append(
      generate(trainer, params, chunk, sub, **kwargs).whole(trainer)
    )
  return concat(chunks).groups(np.arange(len(examples)))


def decode_texts(trainer: Trainer, out: decoding.DecodeOutput) -> list[str]:
  """The text of each completion row (its mask's tokens)."""
  return [
    trainer.tokenizer.decode(np.asarray(row)[np.asarray(m, bool)])
    for row, m in zip(out.tokens, out.mask)
  ]


def task_fields(trainer: Trainer, examples: list, repeat: int) -> dict:
  """The task's reward fields of `examples`, each repeated `repeat` times."""
  return tasks_lib.collate_fields(examples, trainer.task.reward_fields, repeat)


def is_correct(completions, fields) -> np.ndarray:
  """Per-completion correctness: the task's accuracy, without format."""
  return np.asarray(rewards.is_correct(completions, fields), bool)


def score(trainer: Trainer, rollout: Rollout) -> Rollout:
  """The rollout with the configured rewards (`rewards`: the weighted
  total, `reward_table`: each function's values; NaN where unscored),
  `correct`, and the reward metrics (combined over processes)."""
  G = rollout.group_size
  examples = trainer.local(rollout.examples)
  fields = task_fields(trainer, examples, G)
  fields["completion_lengths"] = [int(n) for n in rollout.lengths]
  fields["group_size"] = G
  prompts = [e["prompt"] for e in examples for _ in range(G)]
  c = trainer.config.reward
  total, table, metrics = rewards.compute_rewards(
    trainer.reward_specs,
    prompts,
    rollout.texts,
    fields,
    timeout_s=c.timeout_s,
    fail_on_error=c.fail_on_error,
    max_abs=c.max_abs,
    memory_limit_mb=c.memory_limit_mb,
    per_reward=True,
  )
  return dataclasses.replace(
    rollout,
    rewards=np.asarray(total, np.float32),
    reward_table=table,
    correct=is_correct(rollout.texts, fields),
    metrics=trainer.mean_over_processes(metrics),
  )


def informative_groups(rollout: Rollout) -> np.ndarray:
  """[n] bool: groups whose scored rewards are not all equal (unscored,
  NaN, samples left out, as in the advantages)."""
  r = np.asarray(rollout.rewards, np.float64).reshape(-1, rollout.group_size)
  with warnings.catch_warnings():  # an all-NaN group's std is NaN
    warnings.simplefilter("ignore", RuntimeWarning)
    return np.nan_to_num(np.nanstd(r, axis=1)) > 0


def dynamic_sampling(trainer: Trainer, params, first: Rollout, draw, key):
  """DAPO: replace the groups whose rewards are all equal by fresh ones.

  `draw()` gives the next global batch of examples. Up to
  `rollout.dynamic_sampling_max_rounds` extra rollouts; groups still
  missing are filled with zero-std groups of `first`, so the batch shape
  never changes. Groups are picked from the whole batch (gathered from
  every process); each process keeps its rows of the result, whose metrics
  say how many rounds it took.
  """
  n = len(first.examples)
  max_rounds = trainer.config.rollout.dynamic_sampling_max_rounds
  whole = first.whole(trainer)
  picked = [whole.groups(np.flatnonzero(informative_groups(whole)))]
  have = len(picked[0].examples)
  rounds = 0
  while have < n and rounds < max_rounds:
    rounds += 1
    extra = generate(trainer, params, draw(), jax.random.fold_in(key, rounds))
    extra = score(trainer, extra).whole(trainer)
    good = extra.groups(np.flatnonzero(informative_groups(extra)))
    picked.append(good)
    have += len(good.examples)
  if have < n:
    filler = np.flatnonzero(~informative_groups(whole))[: n - have]
    picked.append(whole.groups(filler))
  batch = concat(picked).groups(np.arange(n)).local(trainer)
  batch.metrics = {
    **first.metrics,
    "dynamic_sampling/rounds": rounds,
    "dynamic_sampling/informative_groups": min(have, n) / n,
  }
  return batch


def rl_batch(trainer: Trainer, rollout: Rollout, per_reward: bool) -> dict:
  """The update's batch of this process's rows: prompt (repeated G times)
  + completion, `rewards` ([N, K] per reward function with `per_reward`,
  for GRPO's `multi_objective_aggregation`; else the [N] weighted total),
  and `truncated`, the completions that hit `max_new_tokens` without a
  stop."""
  G, out, s = rollout.group_size, rollout.completions, trainer.sampling
  stops = [(e,) for e in s["eos_ids"]] + list(s["stop_sequences"])
  ptok = np.repeat(rollout.prompt_tokens, G, axis=0)
  pmask = np.repeat(rollout.prompt_mask, G, axis=0)
  cmask = np.asarray(out.mask, np.int32)
  reward = rollout.reward_table if per_reward else rollout.rewards
  return {
    "tokens": np.concatenate([ptok, np.asarray(out.tokens, np.int32)], 1),
    "mask": np.concatenate([pmask, cmask], 1),
    "completion_mask": np.concatenate([np.zeros_like(pmask), cmask], 1),
    "rewards": np.asarray(reward, np.float32),
    "truncated": algos.truncated_completions(out.tokens, out.lengths, stops),
  }
