"""Length-based rewards: Kimi k1.5 length penalty and DAPO overlong."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rlx.rewards import r1


def _lengths(completions, completion_lengths, reward: str) -> list[float]:
  if completion_lengths is None:
    return [float(len(c)) for c in completions]
  lengths = r1.task_field(
    "completion_lengths", completion_lengths, len(completions), reward
  )
  return [float(x) for x in lengths]


def kimi_length_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  group_size: int | None = None,
  completion_lengths: Sequence[int] | None = None,
  correct_fn: str = "accuracy",
  think_prefilled: bool = False,
  **fields,
) -> list[float]:
  """Kimi k1.5 length reward over groups of `group_size` completions.

  Consecutive blocks of `group_size` completions are the samples of one
  prompt. With len_i the token count (`completion_lengths`) or, without
  that field, the character count: lambda_i = 0.5 - (len_i - min_len) /
  (max_len - min_len); the reward is lambda_i when correct and
  min(0, lambda_i) when wrong; 0 for the whole group when max_len ==
  min_len. A completion is correct when the reward named `correct_fn`
  (e.g. "accuracy", "accuracy_if_format", "countdown"; called with the same
  task fields and `think_prefilled`) gives it at least 1.0.
  """
  from rlx.rewards import registry

  if correct_fn == "kimi_length":
    raise ValueError("reward 'kimi_length': correct_fn cannot be itself")
  correct_reward = registry.get_reward_fn(correct_fn)
  n = len(completions)
  if group_size is None:
    if not n:
      return []
    raise ValueError("reward 'kimi_length' needs 'group_size'")
  if int(group_size) != group_size or group_size < 1 or n % group_size:
    raise ValueError(
      f"reward 'kimi_length': group_size={group_size!r} must be a positive "
      f"integer dividing the batch size {n}"
    )
  group_size = int(group_size)
  lengths = _lengths(completions, completion_lengths, "kimi_length")
  correct = [
    float(x) >= 1.0
    for x in correct_reward(
      prompts, completions, think_prefilled=think_prefilled, **fields
    )
  ]
  if len(correct) != n:
    raise ValueError(f"reward '{correct_fn}' returned {len(correct)} values")
  rewards = []
  for start in range(0, n, group_size):
    group = lengths[start : start + group_size]
    lo, hi = min(group), max(group)
    for length, ok in zip(group, correct[start : start + group_size]):
      if hi == lo:
        rewards.append(0.0)
        continue
      lam = 0.5 - (length - lo) / (hi - lo)
      rewards.append(lam if ok else min(0.0, lam))
  return rewards


def overlong_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  max_len: int | None = None,
  cache_len: int | None = None,
  completion_lengths: Sequence[int] | None = None,
  **unused,
) -> list[float]:
  """DAPO soft overlong penalty from token counts `completion_lengths`.

  With L_max = `max_len` and L_cache = `cache_len`: 0 when len <= L_max -
  L_cache; (L_max - L_cache - len) / L_cache inside the cache window, which
  falls linearly to -1 at len = L_max; -1 beyond L_max.
  """
  del prompts, unused
  if max_len is None or cache_len is None:
    raise ValueError("reward 'overlong' needs 'max_len' and 'cache_len'")
  if not (0 < cache_len <= max_len) or not math.isfinite(max_len):
    raise ValueError(
      f"reward 'overlong' needs 0 < cache_len <= max_len, got "
      f"max_len={max_len!r}, cache_len={cache_len!r}"
    )
  n = len(completions)
  lengths = r1.task_field(
    "completion_lengths", completion_lengths, n, "overlong"
  )
  start = max_len - cache_len
  rewards = []
  for length in lengths:
    if length <= start:
      rewards.append(0.0)
    elif length <= max_len:
      rewards.append((start - length) / cache_len)
    else:
      rewards.append(-1.0)
  return rewards
