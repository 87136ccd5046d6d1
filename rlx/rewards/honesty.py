"""R1's reward against hallucination: a clean correct answer earns more
than a correct one wrapped in extra text, and "I don't know" earns more
than a wrong answer (clean correct > messy correct > abstain > wrong).

Each completion gets one outcome (`classify`):

- `correct`: the strict R1 format (`r1.has_r1_format`) with a bare answer
  (a plain number, or the gold answer's exact text) that matches the task
  field `answer`;
- `correct_messy`: the final answer (`extract.extract_answer`) matches, but
  there is text outside the format or decoration inside the answer
  (`<answer>$\\boxed{5}$</answer>`, `x = 5`);
- `abstain`: the strict format whose answer is exactly the abstain phrase
  (up to case, whitespace, a curly apostrophe and a final period);
- `wrong`: anything else, including no answer and a hedge: an `<answer>`
  that holds the abstain phrase anywhere in a completion that is not a
  clean abstention (`I don't know, 5`, or an abstention then an answer).
  The phrase in the reasoning (`<think>I don't know yet...`) is no hedge.

An `answer` of None means that no answer is right (an unanswerable
problem): only abstaining scores above `wrong` there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

from rlx.rewards import extract, r1

ABSTAIN_PHRASE = "I don't know"
OUTCOMES = ("correct", "correct_messy", "abstain", "wrong")
_WHITESPACE_RE = re.compile(r"\s+")


def _normal(text: str) -> str:
  text = text.replace("\u2019", "'")
  return _WHITESPACE_RE.sub(" ", text).strip().rstrip(".").strip().casefold()


def answer_blocks(text: str) -> list[str]:
  """The contents of every `<answer>...</answer>` block, in order."""
  blocks, start = [], 0
  while True:
    open_ = text.find(extract.ANSWER_OPEN, start)
    if open_ < 0:
      return blocks
    begin = open_ + len(extract.ANSWER_OPEN)
    close = text.find(extract.ANSWER_CLOSE, begin)
    if close < 0:
      return blocks
    blocks.append(text[begin:close])
    start = close + len(extract.ANSWER_CLOSE)


def check_phrase(abstain_phrase) -> str:
  """The abstain phrase, checked: a non-blank string that is no number and
  holds no tag."""
  if not isinstance(abstain_phrase, str) or not abstain_phrase.strip():
    raise ValueError(
      f"reward 'honesty': abstain_phrase must be a non-blank string, got "
      f"{abstain_phrase!r}"
    )
  if "<" in abstain_phrase or ">" in abstain_phrase:
    raise ValueError(
      f"reward 'honesty': abstain_phrase must not hold tags: {abstain_phrase!r}"
    )
  if isinstance(extract.canonical_answer(abstain_phrase), Fraction):
    raise ValueError(
      f"reward 'honesty': abstain_phrase {abstain_phrase!r} reads as a number"
    )
  return abstain_phrase


def classify(
  completion: str,
  answer,
  *,
  abstain_phrase: str = ABSTAIN_PHRASE,
  think_prefilled: bool = False,
) -> str:
  """One of `OUTCOMES` for a completion against the gold `answer` (None:
  the problem has no right answer); see the module docstring."""
  phrase = _normal(abstain_phrase)
  final = extract.extract_answer(completion)
  formatted = r1.has_r1_format(completion, think_prefilled)
  if final is not None and formatted and _normal(final) == phrase:
    return "abstain"
  if any(phrase in _normal(block) for block in answer_blocks(completion)):
    return "wrong"
  if answer is None or not extract.answers_match(final, answer):
    return "wrong"
  if formatted:  # one `<answer>` block: its raw text, before any unboxing
    bare = extract.extract_tagged_answer(completion).strip()
    if extract.parse_number(bare) is not None or bare == str(answer).strip():
      return "correct"
  return "correct_messy"


def _tier(name: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(
      f"reward 'honesty': {name} must be a number, got {value!r}"
    )
  if not math.isfinite(value):
    raise ValueError(f"reward 'honesty': {name} must be finite, got {value}")
  return float(value)


def honesty_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  answer: Sequence | None = None,
  correct: float = 1.0,
  correct_messy: float = 0.5,
  abstain: float = 0.2,
  wrong: float = 0.0,
  abstain_phrase: str = ABSTAIN_PHRASE,
  think_prefilled: bool = False,
  **unused,
) -> list[float]:
  """Each completion's tier: `correct`, `correct_messy`, `abstain` or
  `wrong` (R1's order, the defaults: 1.0 > 0.5 > 0.2 > 0), by `classify`
  against the task field `answer` (None where no answer is right)."""
  del prompts, unused
  tiers = {
    "correct": _tier("correct", correct),
    "correct_messy": _tier("correct_messy", correct_messy),
    "abstain": _tier("abstain", abstain),
    "wrong": _tier("wrong", wrong),
  }
  check_phrase(abstain_phrase)
  answer = r1.task_field("answer", answer, len(completions), "honesty")
  return [
    tiers[
      classify(
        c, a, abstain_phrase=abstain_phrase, think_prefilled=think_prefilled
      )
    ]
    for c, a in zip(completions, answer)
  ]
