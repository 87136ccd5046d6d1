"""An exported model on a task's held-out prompts, under any decoder.

    held = HeldOut(export_dir, config, num_prompts=256)
    greedy = held.sample(1, temperature=0.0, stop_strings=False)
    beams = held.beam(8, length_penalty=0.0)  # 8 rows per prompt
    held.majority_correct(held.sample(8, 1.0, False, seed=0))

For comparing decoders outside a training run (one device, the prompts
padded to the config's buckets): each call decodes every prompt and
returns a `Decoded` with the texts, their correctness and answers, their
lengths and the model's own teacher-forced log-prob of each completion.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from rlx import data, decoding, models, rewards
from rlx.train import lm
from rlx.train.evaluation import majority_correct


@dataclasses.dataclass(frozen=True)
class Decoded:
  """n consecutive completion rows per held-out prompt."""

  n: int
  texts: list[str]
  correct: np.ndarray  # [N] bool: the task's accuracy
  answers: list  # [N] extracted answers (None where there is none)
  lengths: np.ndarray  # [N] int64, completion tokens (EOS included)
  logprob: np.ndarray  # [N] the model's log-prob, teacher-forced
  check: float  # max |logprob - the decoder's own sum of log-probs|


class HeldOut:
  """The exported model, its tokenizer and the task's first `num_prompts`
  held-out prompts (task, prompt buckets, `max_new_tokens` and stop
  strings from `config`)."""

  def __init__(self, export: str, config, num_prompts: int):
    self.graphdef, self.params = nnx.split(models.load_pretrained(export))
    self.tok = data.load_tokenizer(export)
    if self.tok.eos_id is None:
      raise ValueError(f"{export}: the tokenizer has no EOS token")
    task = data.make_task(config.task.name, **dict(config.task.options))
    self.examples = task.eval[:num_prompts]
    if len(self.examples) < num_prompts:
      raise ValueError(
        f"the task has {len(self.examples)} held-out prompts, "
        f"fewer than {num_prompts}"
      )
    self.reward_fields = task.reward_fields
    prompts = [
      self.tok.encode(e["prompt"], add_bos=self.tok.adds_bos)
      for e in self.examples
    ]
    self.prompt_tokens, self.prompt_mask = decoding.pad_prompts(
      prompts,
      self.tok.pad_id,
      buckets=tuple(config.rollout.prompt_buckets),
    )
    self.max_new_tokens = config.rollout.max_new_tokens
    self.stops = tuple(
      tuple(self.tok.encode(s)) for s in config.rollout.stop_strings if s
    )

  def beam(self, k: int, length_penalty: float) -> Decoded:
    """Beam search with k beams, all k returned (best first), ending at
    EOS."""
    cfg = decoding.BeamConfig(
      max_new_tokens=self.max_new_tokens,
      num_beams=k,
      num_return_sequences=k,
      length_penalty=length_penalty,
      eos_ids=(self.tok.eos_id,),
      pad_id=self.tok.pad_id,
    )
    fn = decoding.make_beam_search(self.graphdef, self.params, cfg)
    return self._finish(fn(self.params, self.prompt_tokens, self.prompt_mask))

  def sample(
    self, n: int, temperature: float, stop_strings: bool, seed: int = 0
  ) -> Decoded:
    """n samples per prompt (temperature 0: greedy), ending at EOS, and at
    the config's stop strings with `stop_strings`."""
    cfg = decoding.SamplingConfig(
      max_new_tokens=self.max_new_tokens,
      temperature=temperature,
      num_samples=n,
      eos_ids=(self.tok.eos_id,),
      stop_sequences=self.stops if stop_strings else (),
      pad_id=self.tok.pad_id,
    )
    fn = decoding.make_sampler(self.graphdef, self.params, cfg)
    key = jax.random.key(seed)
    return self._finish(
      fn(self.params, self.prompt_tokens, self.prompt_mask, key)
    )

  def _finish(self, out) -> Decoded:
    out = jax.tree.map(np.asarray, out)
    n = len(out.tokens) // len(self.examples)
    texts = [
      self.tok.decode(t[m]) for t, m in zip(out.tokens, out.mask.astype(bool))
    ]
    fields = data.collate_fields(self.examples, self.reward_fields, n)
    logprob = lm.completion_logprobs(
      self.graphdef,
      self.params,
      self.prompt_tokens,
      self.prompt_mask,
      out.tokens,
      out.mask,
    )
    own = np.where(out.mask, out.raw_logprobs, 0.0).sum(1)
    return Decoded(
      n=n,
      texts=texts,
      correct=np.asarray(rewards.is_correct(texts, fields), bool),
      answers=[rewards.extract_answer(t) for t in texts],
      lengths=out.lengths.astype(np.int64),
      logprob=logprob,
      check=float(np.max(np.abs(logprob - own))),
    )

  def majority_correct(self, d: Decoded) -> np.ndarray:
    """[prompts] bool: the majority answer of each prompt's n rows is
    right (maj@n)."""
    return np.asarray(
      [
        majority_correct(
          d.texts[i * d.n : (i + 1) * d.n],
          data.collate_fields([e], self.reward_fields),
        )
        for i, e in enumerate(self.examples)
      ],
      bool,
    )

  def categories(self) -> np.ndarray:
    """Each prompt's `category` (`all` where the task has none)."""
    return np.asarray([e.get("category", "all") for e in self.examples])
