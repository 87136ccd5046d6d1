"""DeepSeek-R1 style format and accuracy rewards."""

from __future__ import annotations

from collections.abc import Sequence

from rlx.rewards import extract

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TAGS = (THINK_OPEN, THINK_CLOSE, extract.ANSWER_OPEN, extract.ANSWER_CLOSE)


def task_field(name: str, values, n: int, reward: str) -> Sequence:
  """Returns a task field checked to be a sequence aligned with the batch."""
  if values is None:
    if not n:
      return ()
    raise ValueError(f"reward '{reward}' needs the task field '{name}'")
  if isinstance(values, (str, bytes)) or len(values) != n:
    raise ValueError(
      f"reward '{reward}': task field '{name}' must be a sequence of length "
      f"{n} (one per completion)"
    )
  return values


def has_r1_format(completion: str, think_prefilled: bool = False) -> bool:
  """Whether a completion has the strict R1 format.

  The completion, with leading and trailing whitespace removed, must be
  exactly `<think>T</think>W<answer>A</answer>` where W is whitespace only,
  A is not blank, and each of the four tags occurs exactly once (so T and A
  contain no tags). T may be empty. With `think_prefilled=True` the prompt
  already ends with `<think>`: the completion must then be
  `T</think>W<answer>A</answer>` (plus surrounding whitespace) and must not
  contain `<think>` itself.
  """
  text = THINK_OPEN + completion if think_prefilled else completion
  text = text.strip()
  if any(text.count(tag) != 1 for tag in _TAGS):
    return False
  if not text.startswith(THINK_OPEN) or not text.endswith(extract.ANSWER_CLOSE):
    return False
  think_end = text.find(THINK_CLOSE) + len(THINK_CLOSE)
  answer_start = text.find(extract.ANSWER_OPEN)
  if answer_start < think_end or text[think_end:answer_start].strip():
    return False
  answer = text[
    answer_start + len(extract.ANSWER_OPEN) : -len(extract.ANSWER_CLOSE)
  ]
  return bool(answer.strip())


def format_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  think_prefilled: bool = False,
  **unused,
) -> list[float]:
  """1.0 when `has_r1_format(completion, think_prefilled)`, else 0.0."""
  del prompts, unused
  return [float(has_r1_format(c, think_prefilled)) for c in completions]


def accuracy_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  answer: Sequence[str] | None = None,
  **unused,
) -> list[float]:
  """1.0 when the extracted answer equals the task field `answer`.

  See `extract.extract_answer` and `extract.answers_match`.
  """
  del prompts, unused
  answer = task_field("answer", answer, len(completions), "accuracy")
  return [
    float(extract.answers_match(extract.extract_answer(c), a))
    for c, a in zip(completions, answer)
  ]


def accuracy_if_format_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  answer: Sequence[str] | None = None,
  think_prefilled: bool = False,
  **unused,
) -> list[float]:
  """Accuracy that only counts when the strict R1 format holds."""
  del unused
  accuracy = accuracy_reward(prompts, completions, answer=answer)
  return [
    a if has_r1_format(c, think_prefilled) else 0.0
    for a, c in zip(accuracy, completions)
  ]
