"""Whether a completion is right: one test for the metric and the rewards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rlx.rewards import countdown, r1


def is_correct(completions: Sequence[str], fields: Mapping) -> list[bool]:
  """Per-completion correctness without format: the task's accuracy.

  With the task fields `numbers` and `target` (Countdown): exactly where
  `countdown_reward` gives 1.0 without `strict_format`. Otherwise exactly
  where `accuracy_reward` gives 1.0 against the field `answer`. Training
  and evaluation accuracy use this, so they cannot disagree with the
  reward.
  """
  if "numbers" in fields:
    return countdown.countdown_correct(
      completions, fields["numbers"], fields["target"]
    )
  scores = r1.accuracy_reward(None, completions, answer=fields["answer"])
  return [s == 1.0 for s in scores]
