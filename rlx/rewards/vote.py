"""Majority vote over extracted answers (self-consistency, maj@k)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rlx.rewards import extract


def majority_answer(completions: Sequence[str]) -> str | None:
  """The most common final answer of `completions`, or None if none has one.

  Answers are extracted with `extract_answer` and counted by their
  canonical form (`12`, `12.0` and `24/2` are one vote), so the returned
  text is the first spelling seen of the winning value. Ties go to the
  answer seen first. Completions without an answer do not vote.
  """
  if isinstance(completions, str):
    raise TypeError("majority_answer takes a sequence of completions")
  votes = []
  for text in completions:
    answer = extract.extract_answer(text)
    if answer is None:
      continue
    canon = extract.canonical_answer(answer)
    votes.append((answer.strip() if canon is None else canon, answer))
  if not votes:
    return None
  top = Counter(key for key, _ in votes).most_common(1)[0][0]
  return next(answer for key, answer in votes if key == top)
