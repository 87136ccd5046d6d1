"""Left-padding prompts to a few fixed lengths, so shapes stay static."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096)


def bucket_length(n: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
  """The smallest bucket >= n."""
  for b in sorted(buckets):
    if b >= n:
      return int(b)
  raise ValueError(
    f"prompt length {n} exceeds the largest bucket {max(buckets)}"
  )


def pad_prompts(
  prompts: Sequence[Sequence[int]],
  pad_id: int,
  buckets: Sequence[int] | None = DEFAULT_BUCKETS,
  length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads token lists to one length -> (tokens [N, L] int32, mask).

  The length is `length` if given, else the bucket of the longest prompt
  (or exactly the longest prompt when `buckets` is None). `mask` is 1 on
  real tokens, 0 on padding.
  """
  if not prompts:
    raise ValueError("pad_prompts: no prompts")
  longest = max(len(p) for p in prompts)
  if min(len(p) for p in prompts) == 0:
    raise ValueError("pad_prompts: empty prompt (needs >= 1 token)")
  if length is None:
    length = longest if buckets is None else bucket_length(longest, buckets)
  if longest > length:
    raise ValueError(f"prompt of {longest} tokens exceeds length {length}")
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  mask = np.zeros((len(prompts), length), np.int32)
  for i, p in enumerate(prompts):
    if len(p):
      tokens[i, length - len(p) :] = np.asarray(p, np.int32)
      mask[i, length - len(p) :] = 1
  return tokens, mask
