"""Choosing a small SFT set from a pool of distilled traces, as S1 does.

S1 (Muennighoff et al. 2025) keeps 1,000 of 59K questions in three steps:
quality (drop traces that are wrong or badly formatted), difficulty (drop
questions that the models it distils into already answer) and diversity
(draw a domain uniformly at random, then a question of that domain,
favouring long traces, until the budget is spent). `s1_select` is the
third step over the survivors of the first two; `random_select` is S1's
control, the same number drawn uniformly from the whole pool.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def s1_select(
  keep: Sequence[bool],
  domains: Sequence[Hashable],
  lengths: Sequence[float],
  n: int,
  rng: np.random.Generator,
) -> list[int]:
  """Indices of `n` pool items chosen by S1's diversity sampling.

  Args:
    keep: per pool item, whether it passed the quality and difficulty
      filters; only these are chosen.
    domains: per item, its type (S1: the MSC subject; here a problem
      class), the unit over which the draw is spread.
    lengths: per item, its trace length; within a domain the item of rank r
      by decreasing length is drawn with weight 2**-r (S1's preference for
      long reasoning), ties in random order.
    n: how many to choose.
    rng: the random stream.

  Each round draws a domain uniformly among those with items left, then one
  item of it. Raises ValueError when fewer than `n` items are kept.
  """
  if not len(keep) == len(domains) == len(lengths):
    raise ValueError(
      f"keep, domains and lengths differ in length: {len(keep)}, "
      f"{len(domains)}, {len(lengths)}"
    )
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  kept = [i for i, k in enumerate(keep) if k]
  if len(kept) < n:
    raise ValueError(
      f"only {len(kept)} of {len(keep)} pool items pass the filters; cannot "
      f"choose {n}"
    )
  by_domain: dict[Hashable, list[int]] = {}
  for i in rng.permutation(kept):
    by_domain.setdefault(domains[i], []).append(int(i))
  for items in by_domain.values():  # stable: equal lengths stay shuffled
    items.sort(key=lambda i: -lengths[i])
  names = sorted(by_domain, key=str)
  chosen = []
  while len(chosen) < n:
    name = names[rng.integers(len(names))]
    items = by_domain[name]
    weights = 0.5 ** np.arange(len(items))
    chosen.append(items.pop(rng.choice(len(items), p=weights / weights.sum())))
    if not items:
      names.remove(name)
  return chosen


def random_select(size: int, n: int, rng: np.random.Generator) -> list[int]:
  """S1's control: `n` of `size` pool items uniformly, without filters."""
  if not 0 <= n <= size:
    raise ValueError(f"cannot choose {n} of {size} items")
  return [int(i) for i in rng.choice(size, n, replace=False)]
