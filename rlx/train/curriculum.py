"""Kimi k1.5's curriculum: prompts drawn for RL by their difficulty.

A training prompt's difficulty is the SFT model's pass rate over k
samples. RL then draws prompts with weight `1 - pass_rate` (the ones the
model fails more often come up more often), and never draws the prompts it
always solves (their groups have no reward variance, so no advantage) or
never solves (no correct sample to reinforce). `config.curriculum.sampling
= "pass_rate"` selects it for the RL phase; the data iterator takes the
weights (`rlx.data.DataIterator(weights=...)`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zlib

import jax
import numpy as np

from rlx import rewards
from rlx.train import rollout as rollout_lib

SAMPLINGS = ("uniform", "pass_rate")
FILE = "curriculum.json"


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
  """How the RL phase draws its prompts.

  Attributes:
    sampling: "uniform" (shuffled epochs) or "pass_rate" (Kimi's
      prioritised sampling by the SFT model's pass rate).
    num_samples: k, samples per prompt for the pass rate.
    num_prompts: estimate the first this many training prompts, the only
      ones RL then draws; 0: every training prompt.
  """

  sampling: str = "uniform"
  num_samples: int = 8
  num_prompts: int = 0

  def __post_init__(self):
    if self.sampling not in SAMPLINGS:
      raise ValueError(
        f"CurriculumConfig.sampling={self.sampling!r}: allowed {SAMPLINGS}"
      )
    for name, low in (("num_samples", 1), ("num_prompts", 0)):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(
          f"CurriculumConfig.{name}={value!r}: must be an integer >= {low}"
        )


def difficulty_weights(pass_rates) -> np.ndarray:
  """Sampling weight per prompt: `1 - pass_rate`, and 0 for the prompts
  always solved (pass rate 1) or never solved (pass rate 0)."""
  p = np.asarray(pass_rates, np.float64)
  if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
    raise ValueError(f"pass rates must be a vector in [0, 1], got {p!r}")
  return np.where((p > 0) & (p < 1), 1.0 - p, 0.0)


@dataclasses.dataclass(frozen=True)
class Groups:
  """k samples of each of this process's prompts (`trainer.local` rows).

  Attributes:
    texts: the completions, k consecutive per prompt.
    lengths: [n, k] completion lengths in tokens.
    correct: [n, k] task accuracy without format (`rewards.is_correct`).
  """

  texts: list[str]
  lengths: np.ndarray
  correct: np.ndarray

  def shortest_correct(self, accept=None) -> list[int | None]:
    """Per prompt: the index (0..k-1) of its shortest sample that is
    correct and, with `accept`, for which `accept(text)` holds (the first
    such at equal lengths); None where no sample is. Kimi's long2short
    rejection sampling keeps these."""
    n, k = self.correct.shape
    out = []
    for i in range(n):
      good = [
        j
        for j in range(k)
        if self.correct[i, j]
        and (accept is None or accept(self.texts[i * k + j]))
      ]
      out.append(min(good, key=lambda j: self.lengths[i, j]) if good else None)
    return out


def _sampled_chunks(trainer, params, examples, num_samples, key, temperature):
  """Yields, per chunk of `rollout.prompts_per_step` examples (the last one
  padded), its length, this process's rows of it, their texts, lengths
  [rows, k] and correctness [rows, k]. The prompt batch of the RL rollout,
  so that with `k` equal to the group size its compiled sampler is reused."""
  if not examples:
    raise ValueError("the curriculum needs at least one example")
  batch = trainer.config.rollout.prompts_per_step
  for start in range(0, len(examples), batch):
    chunk = list(examples[start : start + batch])
    padded = chunk + [chunk[-1]] * (batch - len(chunk))
    sub = jax.random.fold_in(key, start)
    out = rollout_lib.generate(
      trainer,
      params,
      padded,
      sub,
      temperature=temperature,
      num_samples=num_samples,
      strategy="sample",
    )
    fields = rollout_lib.task_fields(
      trainer, trainer.local(padded), num_samples
    )
    ok = np.asarray(rewards.is_correct(out.texts, fields), bool)
    lengths = np.asarray(out.lengths).reshape(-1, num_samples)
    rows = trainer.rows(batch)
    yield len(chunk), rows, out.texts, lengths, ok.reshape(-1, num_samples)


def sample_groups(
  trainer, params, examples, num_samples: int, key, temperature: float
) -> Groups:
  """Samples `num_samples` completions of each of `examples` with `params`.

  Every process calls it with the same examples and gets its own rows.
  """
  texts, lengths, correct = [], [], []
  for n, rows, chunk_texts, chunk_lengths, ok in _sampled_chunks(
    trainer, params, examples, num_samples, key, temperature
  ):
    keep = np.flatnonzero(rows < n)  # less the padding
    for i in keep:
      texts.extend(chunk_texts[i * num_samples : (i + 1) * num_samples])
    lengths.append(chunk_lengths[keep])
    correct.append(ok[keep])
  return Groups(texts, np.concatenate(lengths), np.concatenate(correct))


def pass_rates(
  trainer, params, examples, num_samples: int, key, temperature: float
) -> np.ndarray:
  """Each example's share of `num_samples` sampled completions that are
  correct (`rewards.is_correct`), on every process."""
  rates = []
  for n, _, _, _, ok in _sampled_chunks(
    trainer, params, examples, num_samples, key, temperature
  ):
    rates.append(trainer.gather(ok.mean(axis=1))[:n])
  return np.concatenate(rates)


def sampling_key(seed: int) -> jax.Array:
  """The random stream of the pass-rate samples of a run with `seed`."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(b"curriculum"))


def rl_weights(trainer, params) -> np.ndarray | None:
  """The RL data iterator's weights over `trainer.task.train` under
  `config.curriculum`: None for uniform sampling; for "pass_rate", the
  `difficulty_weights` of `params`' pass rates (0 beyond the estimated
  prompts). Deterministic for a seed, so a resumed run gets the same.
  Process 0 writes the pass rates to `workdir/curriculum.json`."""
  config = trainer.config
  c = CurriculumConfig(**dict(config.curriculum))
  if c.sampling == "uniform" or not config.train.steps:
    return None
  train = trainer.task.train
  n = min(c.num_prompts or len(train), len(train))
  rates = pass_rates(
    trainer,
    params,
    train[:n],
    c.num_samples,
    sampling_key(config.seed),
    config.rollout.temperature,
  )
  weights = np.zeros(len(train))
  weights[:n] = difficulty_weights(rates)
  summary = {
    "num_prompts": n,
    "num_samples": c.num_samples,
    "always_solved": int((rates == 1).sum()),
    "never_solved": int((rates == 0).sum()),
    "drawn": int((weights > 0).sum()),
    "mean_pass_rate": float(rates.mean()),
  }
  logging.info("curriculum: %s", summary)
  if not summary["drawn"]:
    raise ValueError(
      f"curriculum: every one of the {n} estimated prompts is always or "
      f"never solved in {c.num_samples} samples; none is left to draw "
      "(raise curriculum.num_samples or num_prompts, or sample uniformly)"
    )
  if jax.process_index() == 0:
    path = os.path.join(trainer.workdir, FILE)
    with open(path, "w") as f:
      json.dump({**summary, "pass_rates": rates.tolist()}, f)
  return weights
