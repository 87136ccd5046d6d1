"""An exported model on held-out prompts under several decoders
(`rlx.train.heldout`)."""

import numpy as np
import pytest

from rlx import data, models
from rlx.train import default_config, heldout
from rlx.train.trainer import TASK_SYMBOLS


@pytest.fixture(scope="module")
def held(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("export"))
  config = default_config()
  config.rollout.max_new_tokens = 6
  task = data.make_task(config.task.name, **dict(config.task.options))
  texts = [e["prompt"] + e["solution"] for e in task.train[:200]]
  tok = data.train_sentencepiece(texts, 120, user_defined_symbols=TASK_SYMBOLS)
  tok.save(path)
  model_config = models.preset(
    "tiny", vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64
  )
  models.save_pretrained(models.init_model(model_config, 0), path)
  return heldout.HeldOut(path, config, num_prompts=6)


def test_greedy_is_one_beam_and_log_probs_match_the_decoder(held):
  greedy = held.sample(1, 0.0, stop_strings=False)
  beam = held.beam(1, length_penalty=0.0)
  assert greedy.n == beam.n == 1 and len(greedy.texts) == 6
  assert greedy.texts == beam.texts
  np.testing.assert_allclose(greedy.logprob, beam.logprob, atol=1e-4)
  assert greedy.check < 1e-3 and beam.check < 1e-3
  assert np.all(greedy.logprob < 0)
  assert greedy.correct.dtype == bool and greedy.lengths.max() <= 6


def test_wider_beams_return_k_rows_best_first(held):
  d = held.beam(3, length_penalty=0.0)
  assert d.n == 3 and len(d.texts) == 18
  assert np.all(np.diff(d.logprob.reshape(6, 3), axis=1) <= 1e-4)


def test_majority_vote_and_categories(held):
  d = held.sample(1, 0.0, stop_strings=False)
  answers = [f"<answer>{e['answer']}</answer>" for e in held.examples]
  right = heldout.Decoded(
    n=3,
    texts=[t for a in answers for t in (a, a, "<answer>0</answer>")],
    correct=d.correct,
    answers=[],
    lengths=d.lengths,
    logprob=d.logprob,
    check=0.0,
  )
  assert held.majority_correct(right).all()
  wrong = heldout.Decoded(**{**right.__dict__, "texts": ["x"] * 18})
  assert not held.majority_correct(wrong).any()
  assert set(held.categories()) <= {"carry", "no_carry"}
