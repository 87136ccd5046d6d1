"""Pieces a reproduction script composes: `generate_all` over many
examples, sampling overrides (S1's budget forcing) through `generate`, and
`supervised_phase` with its own batch size."""

import jax
import numpy as np
import pytest
from test_train import load_config, tiny

from rlx.train import metrics as metrics_lib
from rlx.train import phases, rollout, trainer
from rlx.train.config import make_sft_algo


@pytest.fixture(scope="module")
def t(tmp_path_factory):
  config = tiny(load_config("grpo_arithmetic.py"))
  return trainer.Trainer(config, str(tmp_path_factory.mktemp("t")))


def test_generate_all_is_generate_per_padded_chunk(t):
  """12 examples in chunks of 8: chunk i is `generate` of its (padded)
  examples with `fold_in(key, i)`, rows in order, padding dropped."""
  examples, key = t.task.eval[:12], jax.random.key(3)
  kw = dict(temperature=1.0, num_samples=2, strategy="sample")
  whole = rollout.generate_all(t, t.initial_params, examples, key, 8, **kw)
  assert len(whole.examples) == 12 and len(whole.texts) == 24
  assert whole.completions.tokens.shape[0] == 24
  padded = examples[8:] + [examples[-1]] * 4
  second = rollout.generate(
    t, t.initial_params, padded, jax.random.fold_in(key, 1), **kw
  ).whole(t)
  assert whole.texts[16:] == second.texts[:8]
  np.testing.assert_array_equal(
    whole.completions.tokens[16:], second.completions.tokens[:8]
  )
  assert len(set(whole.texts)) > 1  # sampled: rows differ


def test_generate_takes_budget_forcing(t):
  """`max_thinking_tokens=3`: `</think>` within the first 4 tokens of every
  row, forced where the model did not write it."""
  end = t.tokenizer.encode("</think>")
  assert len(end) == 1
  out = rollout.generate(
    t, t.initial_params, t.task.eval[:8], jax.random.key(0),
    temperature=1.0, num_samples=1, strategy="sample",
    think_end=tuple(end), max_thinking_tokens=3,
  ).completions  # fmt: skip
  tokens, forced = np.asarray(out.tokens), np.asarray(out.forced)
  assert (tokens[:, :4] == end[0]).any(axis=1).all()
  assert forced.any()
  free = rollout.generate(
    t, t.initial_params, t.task.eval[:8], jax.random.key(0),
    temperature=1.0, num_samples=1, strategy="sample",
  ).completions  # fmt: skip
  assert not np.asarray(free.forced).any()
  with pytest.raises(ValueError, match="beam"):
    t.sampler(0.0, 2, "beam", max_thinking_tokens=3)


def test_supervised_phase_takes_its_own_batch_size(t, monkeypatch):
  seen = []
  real = phases.sft_batch

  def spy(trainer_, examples, rng):
    seen.append(len(examples))
    return real(trainer_, examples, rng)

  monkeypatch.setattr(phases, "sft_batch", spy)
  writer = metrics_lib.MetricsWriter(t.workdir)
  assert t.config.sft.batch_size != 16
  phases.supervised_phase(
    t, writer, phase="small_batch", params=t.initial_params,
    algo=make_sft_algo(t.config), data_seed=0, steps=2, batch_size=16,
  )  # fmt: skip
  writer.close()
  assert seen and set(seen) == {16}
