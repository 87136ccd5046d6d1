"""Held-out evaluation: greedy accuracy, pass@k, mean@k and maj@k, with
standard errors, overall and per problem class; the teacher's accuracy
where the task knows it; the share of each prompt's completions in any
classes a script defines (`outcome_shares`). (Per-sequence log-probs and
perplexities of any token rows: `rlx.train.lm.sequence_logprobs`.)"""

from __future__ import annotations

import jax
import numpy as np

from rlx.rewards import vote
from rlx.train.rollout import generate, is_correct, task_fields
from rlx.train.trainer import Trainer, stream


def majority_correct(completions_k, fields_one) -> bool:
  """maj@k: the most common extracted answer is correct."""
  answer = vote.majority_answer(completions_k)
  if answer is None:
    return False
  return bool(is_correct([f"<answer>{answer}</answer>"], fields_one)[0])


def evaluate(trainer: Trainer, params, step: int) -> dict:
  """Greedy accuracy, pass@k, maj@k, mean@k (the share of the k samples
  that are correct: the sampled accuracy RL maximises) and mean length on
  held-out prompts.

  Each process scores its rows of every chunk; `gather` combines them."""
  e = trainer.config.eval
  examples = trainer.task.eval[: e.num_prompts]
  key = jax.random.fold_in(stream(trainer.config.seed, "eval"), step)
  correct, lengths, passk, meank, majk = [], [], [], [], []
  for start, _, padded in chunks(trainer, examples):
    local = trainer.local(padded)
    greedy = generate(
      trainer,
      params,
      padded,
      key,
      temperature=0.0,
      num_samples=1,
      strategy="sample",
    )
    correct.append(is_correct(greedy.texts, task_fields(trainer, local, 1)))
    lengths.append(greedy.lengths)
    if e.num_samples:
      k = e.num_samples
      sub = jax.random.fold_in(key, start)
      texts = generate(
        trainer,
        params,
        padded,
        sub,
        temperature=e.temperature,
        num_samples=k,
        strategy="sample",
      ).texts
      ok = is_correct(texts, task_fields(trainer, local, k)).reshape(-1, k)
      passk.append(ok.any(axis=1))
      meank.append(ok.mean(axis=1))
      if "answer" in trainer.task.reward_fields:
        majk.append(
          [
            majority_correct(
              texts[i * k : (i + 1) * k], task_fields(trainer, [ex], 1)
            )
            for i, ex in enumerate(local)
          ]
        )

  def rows(parts):  # every process's rows, less the last chunk's padding
    return np.concatenate([trainer.gather(c) for c in parts])[: len(examples)]

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


def chunks(trainer: Trainer, examples: list):
  """(start, chunk, padded) for each of the evaluation's batches of
  `examples` (`eval.batch_size`, a multiple of the shards); `padded`
  repeats the last example up to the batch, so that one compiled shape
  serves every chunk."""
  shards = trainer.num_shards
  batch = max(shards, trainer.config.eval.batch_size // shards * shards)
  for start in range(0, len(examples), batch):
    chunk = examples[start : start + batch]
    yield start, chunk, chunk + [chunk[-1]] * (batch - len(chunk))


def outcome_shares(
  trainer: Trainer,
  params,
  examples: list,
  key,
  classify,
  outcomes: tuple,
  *,
  temperature: float,
  num_samples: int,
) -> dict:
  """Per prompt, the share of its `num_samples` completions (greedy at
  temperature 0) that `classify(text, example)` puts in each of
  `outcomes` (correct / abstain / wrong, say): {outcome: [len(examples)]}.
  A chunk starting at `start` decodes with `fold_in(key, start)`."""
  n, shares = num_samples, {o: [] for o in outcomes}
  for start, chunk, padded in chunks(trainer, examples):
    texts = generate(
      trainer,
      params,
      padded,
      jax.random.fold_in(key, start),
      temperature=temperature,
      num_samples=n,
      strategy="sample",
    ).texts
    local = trainer.local(padded)
    codes = [
      outcomes.index(classify(t, local[i // n])) for i, t in enumerate(texts)
    ]
    codes = np.array(codes, np.int32).reshape(len(local), n)
    kinds = np.array(outcomes)[trainer.gather(codes)[: len(chunk)]]
    for o in outcomes:
      shares[o].extend((kinds == o).mean(axis=1))
  return {o: np.array(v) for o, v in shares.items()}


def teacher_metrics(trainer: Trainer) -> dict:
  """The SFT teacher's accuracy on the held-out prompts, where the task
  says it (`teacher_accuracy`: its expected accuracy; `majority_accuracy`:
  that of its most likely answer)."""
  examples = trainer.task.eval[: trainer.config.eval.num_prompts]
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
