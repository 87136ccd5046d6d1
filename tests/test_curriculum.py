"""Kimi's curriculum: weighted data iteration and pass-rate difficulty."""

import json
import os
import types

import numpy as np
import pytest

from rlx.data import DataIterator
from rlx.train import curriculum
from rlx.train.config import ConfigError, check_config, default_config


def _stream(it, batches):
  return [x for _ in range(batches) for x in next(it)]


def test_weighted_iterator_draws_in_proportion_and_never_weight_zero():
  weights = np.array([0.0, 1.0, 2.0, 0.0, 5.0])
  it = DataIterator(list(range(5)), 7, seed=3, weights=weights)
  drawn = np.array(_stream(it, 3000))
  counts = np.bincount(drawn, minlength=5)
  assert counts[0] == counts[3] == 0
  expected = weights / weights.sum() * len(drawn)
  # Binomial standard errors: 5 of them is far beyond chance (p ~ 1e-6),
  # while sampling uniformly or by the wrong weights is hundreds away.
  se = np.sqrt(expected * (1 - weights / weights.sum()))
  np.testing.assert_array_less(np.abs(counts - expected), 5 * se + 1e-9)


def test_weighted_iterator_is_deterministic_and_resumes():
  examples = [{"id": i} for i in range(11)]
  weights = np.arange(11.0)
  a = DataIterator(examples, 4, seed=1, weights=weights)
  b = DataIterator(examples, 4, seed=1, weights=weights)
  c = DataIterator(examples, 4, seed=2, weights=weights)
  assert _stream(a, 5) == _stream(b, 5) != _stream(c, 5)
  state = json.loads(json.dumps(a.state()))
  expected = _stream(a, 6)
  resumed = DataIterator(examples, 4, seed=1, weights=weights)
  resumed.restore(state)
  assert _stream(resumed, 6) == expected
  # An epoch is len(examples) draws with replacement, by (seed, epoch).
  first = DataIterator(list(range(11)), 11, seed=1, weights=weights)
  rng = np.random.default_rng((1, 0))
  assert next(first) == rng.choice(11, 11, p=weights / weights.sum()).tolist()


def test_unweighted_iterator_is_unchanged():
  a = _stream(DataIterator(list(range(9)), 4, seed=5), 4)
  b = _stream(DataIterator(list(range(9)), 4, seed=5, weights=None), 4)
  assert a == b
  assert sorted(a[:9]) == list(range(9))


@pytest.mark.parametrize(
  "weights, match",
  [
    ([1.0, 2.0], "one entry per example"),
    ([1.0, -1.0, 1.0], r"weights\[1\] = -1.0"),
    ([1.0, float("nan"), 1.0], r"weights\[1\] = nan"),
    ([0.0, 0.0, 0.0], "all 0"),
    (["a", "b", "c"], "must be numbers"),
  ],
)
def test_weighted_iterator_refuses_bad_weights(weights, match):
  with pytest.raises(ValueError, match=match):
    DataIterator([1, 2, 3], 2, weights=weights)


def test_difficulty_weights_drop_solved_and_unsolved_and_favour_failures():
  w = curriculum.difficulty_weights([0.0, 0.125, 0.5, 0.875, 1.0])
  np.testing.assert_allclose(w, [0.0, 0.875, 0.5, 0.125, 0.0])
  with pytest.raises(ValueError, match="in \\[0, 1\\]"):
    curriculum.difficulty_weights([0.5, 1.5])


@pytest.mark.parametrize(
  "key, value, match",
  [
    ("sampling", "hard_first", "curriculum.sampling='hard_first'"),
    ("num_samples", 0, "curriculum.num_samples=0"),
    ("num_prompts", -1, "curriculum.num_prompts=-1"),
  ],
)
def test_config_refuses_bad_curriculum(key, value, match):
  config = default_config()
  config.curriculum[key] = value
  with pytest.raises(ConfigError, match=match):
    check_config(config)


class FakeTrainer:
  """A trainer whose sampler solves example i in its first `i % (k + 1)`
  of k samples: the pass rate of example i is (i % (k + 1)) / k. Its
  completions are as long as their sample's index plus one."""

  def __init__(self, examples, workdir, **curriculum_options):
    self.config = default_config()
    self.config.rollout.prompts_per_step = 4
    self.config.train.steps = 1
    self.config.curriculum.update(curriculum_options)
    self.task = types.SimpleNamespace(train=examples, reward_fields=("answer",))
    self.workdir = workdir
    self.calls = []

  def rows(self, n):
    return np.arange(n)

  def local(self, examples):
    return list(examples)

  def gather(self, x):
    return np.asarray(x)


def fake_generate(
  trainer, params, examples, key, *, temperature, num_samples, strategy
):
  """`rollout.generate` of a `FakeTrainer`: texts and lengths."""
  k = num_samples
  trainer.calls.append((len(examples), temperature, k, strategy))
  texts, lengths = [], []
  for e in examples:
    solved = int(e["answer"]) % (k + 1)
    for j in range(k):
      answer = e["answer"] if j < solved else "wrong"
      texts.append(f"<think></think><answer>{answer}</answer>")
      lengths.append(j + 1)
  return types.SimpleNamespace(texts=texts, lengths=np.array(lengths))


@pytest.fixture
def fake_sampler(monkeypatch):
  monkeypatch.setattr(curriculum.rollout_lib, "generate", fake_generate)


def _examples(n):
  return [{"prompt": f"q{i}", "answer": str(i)} for i in range(n)]


@pytest.mark.usefixtures("fake_sampler")
def test_pass_rates_and_groups_over_padded_chunks(tmp_path):
  k, examples = 3, _examples(10)  # 3 chunks of 4, the last padded
  trainer = FakeTrainer(examples, str(tmp_path))
  key = curriculum.sampling_key(0)
  rates = curriculum.pass_rates(trainer, None, examples, k, key, 1.0)
  np.testing.assert_allclose(rates, [(i % 4) / 3 for i in range(10)])
  assert trainer.calls == [(4, 1.0, 3, "sample")] * 3
  groups = curriculum.sample_groups(trainer, None, examples, k, key, 1.0)
  assert len(groups.texts) == 30 and groups.lengths.shape == (10, 3)
  np.testing.assert_array_equal(groups.lengths[7], [1, 2, 3])
  np.testing.assert_array_equal(groups.correct[6], [True, True, False])
  assert groups.texts[6 * 3] == "<think></think><answer>6</answer>"


@pytest.mark.usefixtures("fake_sampler")
def test_rl_weights_estimate_the_first_prompts_and_write_them(tmp_path):
  examples = _examples(12)
  trainer = FakeTrainer(
    examples, str(tmp_path), sampling="pass_rate", num_samples=3, num_prompts=6
  )
  weights = curriculum.rl_weights(trainer, None)
  rates = np.array([(i % 4) / 3 for i in range(6)])
  expected = np.zeros(12)
  expected[:6] = np.where((rates > 0) & (rates < 1), 1 - rates, 0)
  np.testing.assert_allclose(weights, expected)
  with open(os.path.join(tmp_path, curriculum.FILE)) as f:
    saved = json.load(f)
  np.testing.assert_allclose(saved["pass_rates"], rates)
  assert (saved["always_solved"], saved["never_solved"]) == (1, 2)
  assert saved["drawn"] == 3 and saved["num_prompts"] == 6


@pytest.mark.usefixtures("fake_sampler")
def test_rl_weights_uniform_is_none_and_nothing_to_draw_is_an_error(tmp_path):
  trainer = FakeTrainer(_examples(8), str(tmp_path))
  assert curriculum.rl_weights(trainer, None) is None
  assert not trainer.calls
  # Examples 0 and 4 only: never and always solved with k = 3.
  trainer = FakeTrainer(
    [_examples(8)[i] for i in (0, 4, 0, 4)],
    str(tmp_path),
    sampling="pass_rate",
    num_samples=3,
  )
  with pytest.raises(ValueError, match="none is left to draw"):
    curriculum.rl_weights(trainer, None)


def test_training_run_draws_by_pass_rate(tmp_path, monkeypatch):
  """The RL phase of `train.run` builds its data iterator from the
  curriculum: the pass rates of the SFT params on the training prompts."""
  import test_train

  from rlx import train
  from rlx.train import phases

  seen = {}

  def fake_rates(trainer, params, examples, k, key, temperature):
    seen["args"] = (len(examples), k, temperature)
    return np.linspace(0.0, 1.0, len(examples))

  iterators = []

  class Recording(DataIterator):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      iterators.append(kwargs.get("weights"))

  monkeypatch.setattr(curriculum, "pass_rates", fake_rates)
  monkeypatch.setattr(phases, "DataIterator", Recording)
  config = test_train.tiny(test_train.load_config("grpo_arithmetic.py"))
  config.control.enabled = False
  config.curriculum.sampling = "pass_rate"
  config.curriculum.num_prompts = 5
  config.curriculum.num_samples = 3
  train.run(config, str(tmp_path))
  assert seen["args"] == (5, 3, config.rollout.temperature)
  sft, rl = iterators  # the SFT phase samples uniformly
  assert sft is None
  np.testing.assert_allclose(rl[:5], [0, 0.75, 0.5, 0.25, 0])
  assert not rl[5:].any()
  with open(tmp_path / curriculum.FILE) as f:
    assert json.load(f)["drawn"] == 3


def test_shortest_correct_sample_per_prompt():
  """Long2short's choice: the shortest correct (and accepted) sample; the
  first at equal lengths; None where no sample qualifies."""
  groups = curriculum.Groups(
    texts=["a", "bb", "ok", "ok", "x", "y", "ok", "bad"],
    lengths=np.array([[5, 3], [4, 4], [2, 9], [1, 2]]),
    correct=np.array(
      [[True, True], [True, True], [False, False], [1, 1]]
    ).astype(bool),
  )
  assert groups.shortest_correct() == [1, 0, None, 0]
  accept = lambda text: text != "bb"
  assert groups.shortest_correct(accept) == [0, 0, None, 0]
  assert groups.shortest_correct(lambda t: t == "bb") == [1, None, None, None]
