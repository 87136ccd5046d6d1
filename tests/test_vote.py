"""Majority vote over extracted answers."""

import pytest

from rlx.rewards import vote


def tagged(answer):
  return f"<think>x</think><answer>{answer}</answer>"


def test_the_most_common_value_wins_in_any_spelling():
  texts = [tagged("12"), tagged("7"), tagged("12.0"), tagged("24/2")]
  assert vote.majority_answer(texts) == "12"


def test_completions_without_an_answer_do_not_vote():
  texts = ["no answer", "still none", tagged("3"), "<answer>"]
  assert vote.majority_answer(texts) == "3"
  assert vote.majority_answer(["nothing", ""]) is None
  assert vote.majority_answer([]) is None


def test_a_tie_goes_to_the_answer_seen_first():
  assert vote.majority_answer([tagged("5"), tagged("4"), tagged("4")]) == "4"
  assert vote.majority_answer([tagged("5"), tagged("4")]) == "5"
  assert vote.majority_answer([tagged("4"), tagged("5")]) == "4"


def test_a_single_string_is_refused():
  with pytest.raises(TypeError, match="sequence of completions"):
    vote.majority_answer(tagged("5"))
