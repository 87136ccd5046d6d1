"""Held-out evaluation's chunks and per-prompt outcome shares
(`rlx.train.evaluation`)."""

import types

import jax
import numpy as np

from rlx.train import Trainer, default_config, evaluation


def _trainer(tmp_path):
  config = default_config()
  config.eval.batch_size = 8
  config.rollout.max_new_tokens = 4
  config.train.progress = False
  return Trainer(config, str(tmp_path))


def test_chunks_cover_the_examples_once_with_the_last_padded():
  eval_config = types.SimpleNamespace(batch_size=8)
  config = types.SimpleNamespace(eval=eval_config)
  trainer = types.SimpleNamespace(num_shards=4, config=config)
  examples = list(range(12))
  parts = list(evaluation.chunks(trainer, examples))
  assert [start for start, _, _ in parts] == [0, 8]
  assert sum((chunk for _, chunk, _ in parts), []) == examples
  assert parts[1][2] == [8, 9, 10, 11, 11, 11, 11, 11]


def test_outcome_shares_count_each_prompts_completions(tmp_path):
  """12 prompts in chunks of 8: a classifier by prompt (`odd` for every
  other prompt) gives shares of exactly 0 or 1 for the 12 real prompts,
  none for the padding; with 3 samples per prompt, the shares of a
  classifier by text still sum to 1 per prompt."""
  trainer = _trainer(tmp_path)
  examples = trainer.task.eval[:12]
  odd = {e["prompt"] for e in examples[1::2]}
  by_prompt = lambda text, e: "odd" if e["prompt"] in odd else "even"
  params = trainer.initial_params
  greedy = evaluation.outcome_shares(
    trainer,
    params,
    examples,
    jax.random.key(0),
    by_prompt,
    ("even", "odd"),
    temperature=0.0,
    num_samples=1,
  )
  np.testing.assert_array_equal(greedy["odd"], [0, 1] * 6)
  np.testing.assert_array_equal(greedy["even"], [1, 0] * 6)
  by_text = lambda text, e: "long" if len(text) > 3 else "short"
  sampled = evaluation.outcome_shares(
    trainer,
    params,
    examples,
    jax.random.key(1),
    by_text,
    ("short", "long"),
    temperature=1.0,
    num_samples=3,
  )
  assert sampled["long"].shape == (12,)
  np.testing.assert_allclose(sampled["short"] + sampled["long"], 1.0)
  assert set(np.round(3 * sampled["long"], 6)) <= {0.0, 1.0, 2.0, 3.0}
