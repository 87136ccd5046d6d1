"""Scoring and training a causal LM on given sequences (`rlx.train.lm`)."""

import jax
import numpy as np
import pytest
from flax import nnx

from rlx import algos, models
from rlx.train import lm


def tiny_model(seed=0):
  config = models.preset(
    "tiny", vocab_size=8, hidden_size=32, intermediate_size=64
  )
  return nnx.split(models.init_model(config, seed))


def rows():
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 8, (5, 7)).astype(np.int32)
  tokens[:, 0] = 1
  mask = np.ones(tokens.shape, bool)
  mask[1, :2] = False  # left padding
  mask[3, :4] = False
  tokens[~mask] = 0
  return tokens, mask


def reference_logprobs(graphdef, params, tokens, mask):
  """Each row on its own, unpadded, through the full forward pass."""
  model = nnx.merge(graphdef, params)
  out = []
  for t, m in zip(tokens, mask):
    real = t[m][None]
    logits, _ = model(real)
    lp = jax.nn.log_softmax(np.asarray(logits[0], np.float64), axis=-1)
    out.append(
      float(sum(lp[i, real[0, i + 1]] for i in range(real.shape[1] - 1)))
    )
  return np.array(out)


def test_sequence_logprobs_equal_a_per_row_forward_pass():
  graphdef, params = tiny_model()
  tokens, mask = rows()
  logp, count = lm.sequence_logprobs(
    graphdef, params, tokens, mask, batch_size=2
  )
  np.testing.assert_array_equal(count, mask.sum(axis=1) - 1)
  want = reference_logprobs(graphdef, params, tokens, mask)
  np.testing.assert_allclose(logp, want, rtol=1e-4, atol=1e-4)


def test_next_token_logprobs_are_distributions_that_score_the_rows():
  graphdef, params = tiny_model()
  tokens, _ = rows()
  tokens[:, :] = np.where(tokens == 0, 3, tokens)
  lp = lm.next_token_logprobs(graphdef, params, tokens, batch_size=3)
  assert lp.shape == (5, 7, 8)
  np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-5)
  picked = np.take_along_axis(lp[:, :-1], tokens[:, 1:, None], -1)[..., 0]
  logp, _ = lm.sequence_logprobs(graphdef, params, tokens)
  np.testing.assert_allclose(picked.sum(1), logp, rtol=1e-4, atol=1e-4)


def test_trainer_fits_the_rows_and_keeps_the_callers_params():
  graphdef, params = tiny_model()
  before = jax.tree.map(np.array, params)
  data = np.array([[1, 2, 3, 4, 5, 6], [1, 7, 6, 5, 4, 3]] * 8, np.int32)
  trainer = lm.LMTrainer(
    graphdef, algos.OptimizerConfig(learning_rate=1e-2), batch_size=8
  )
  start, _ = lm.sequence_logprobs(graphdef, params, data)
  trained, losses = trainer.fit(params, data, steps=60, seed=0)
  update = trainer._update
  end, count = lm.sequence_logprobs(graphdef, trained, data)
  assert losses.shape == (60,)
  # Two sequences, equally likely: the best per-sequence log-likelihood is
  # log(1/2) (the first symbol), the rest is determined.
  assert np.mean(end) > -1.0 > np.mean(start)
  jax.tree.map(
    np.testing.assert_array_equal, before, jax.tree.map(np.array, params)
  )
  trainer.fit(params, data[::-1], steps=2, seed=1)
  assert trainer._update is update  # compiled once for this row length


def test_bad_input_is_refused():
  graphdef, params = tiny_model()
  trainer = lm.LMTrainer(
    graphdef, algos.OptimizerConfig(learning_rate=1e-2), batch_size=8
  )
  with pytest.raises(ValueError, match="fewer than batch_size"):
    trainer.fit(params, np.ones((4, 5), np.int32), steps=1, seed=0)
  with pytest.raises(ValueError, match="integer"):
    lm.sequence_logprobs(graphdef, params, np.ones((2, 5)))
  with pytest.raises(ValueError, match="T >= 2"):
    lm.sequence_logprobs(graphdef, params, np.ones((2, 1), np.int32))
  with pytest.raises(ValueError, match="mask has shape"):
    lm.sequence_logprobs(
      graphdef, params, np.ones((2, 4), np.int32), np.ones((2, 3), bool)
    )


def test_completion_logprobs_score_each_completion_after_its_prompt():
  """Two completions per left-padded prompt, right-padded, against a full
  forward pass over each prompt + completion written out unpadded."""
  graphdef, params = tiny_model()
  prompts = np.array([[0, 1, 3, 4], [1, 5, 2, 6]], np.int32)
  prompt_mask = np.array([[0, 1, 1, 1], [1, 1, 1, 1]], bool)
  completions = np.array([[2, 7, 0], [3, 3, 5], [6, 0, 0], [4, 2, 7]], np.int32)
  mask = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], bool)
  got = lm.completion_logprobs(
    graphdef, params, prompts, prompt_mask, completions, mask
  )
  model = nnx.merge(graphdef, params)
  for i in range(4):
    p = prompts[i // 2][prompt_mask[i // 2]]
    c = completions[i][mask[i]]
    logits, _ = model(np.concatenate([p, c])[None])
    lp = jax.nn.log_softmax(np.asarray(logits[0], np.float64), axis=-1)
    want = sum(lp[len(p) - 1 + j, c[j]] for j in range(len(c)))
    np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)


def test_perplexities_are_exp_of_the_mean_scored_negative_logprob():
  graphdef, params = tiny_model()
  tokens, mask = rows()
  logp, count = lm.sequence_logprobs(graphdef, params, tokens, mask)
  ppl = lm.perplexities(graphdef, params, tokens, mask)
  np.testing.assert_allclose(np.log(ppl), -logp / count, rtol=1e-12)
  assert np.all(ppl > 1.0)
