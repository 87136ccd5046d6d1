"""Deterministic, resumable batching of examples."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np


def _check_weights(weights, n: int) -> np.ndarray:
  """Sampling weights as float64 probabilities, or a ValueError that says
  what is wrong with them."""
  try:
    w = np.asarray(weights, np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"weights must be numbers, got {weights!r}") from e
  if w.shape != (n,):
    raise ValueError(
      f"weights must have one entry per example: shape {w.shape}, "
      f"expected ({n},)"
    )
  if not np.isfinite(w).all() or (w < 0).any():
    bad = int(np.flatnonzero(~np.isfinite(w) | (w < 0))[0])
    raise ValueError(
      f"weights must be finite and >= 0; weights[{bad}] = {float(w[bad])}"
    )
  if not w.sum() > 0:
    raise ValueError("weights are all 0: no example could be drawn")
  return w / w.sum()


class DataIterator:
  """Endless iterator of full batches over shuffled epochs.

  Epoch e visits the examples in the order
  `np.random.default_rng((seed, e)).permutation(len(examples))`. Batches
  are consecutive slices of the concatenated epochs, so every batch has
  exactly `batch_size` examples and a batch may straddle two epochs. The
  position is `state()`, a JSON-able `{"epoch", "index"}` (the next example
  is number `index` of epoch `epoch`); `restore(state)` resumes exactly.

  With `weights` (one non-negative number per example, not all 0), an
  epoch is instead `len(examples)` draws with replacement, example i with
  probability `weights[i] / sum(weights)`: prioritised sampling, where an
  example of weight 0 is never drawn (a curriculum, `rlx.train.curriculum`).
  The order is still a function of (seed, epoch), so it resumes the same.
  """

  def __init__(
    self,
    examples: Sequence,
    batch_size: int,
    seed: int = 0,
    weights: Sequence[float] | np.ndarray | None = None,
  ):
    if not len(examples):
      raise ValueError("DataIterator needs at least one example")
    if int(batch_size) != batch_size or batch_size < 1:
      raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if int(seed) != seed or seed < 0:
      raise ValueError(f"seed must be a non-negative int, got {seed}")
    self._examples = examples
    self._batch_size = int(batch_size)
    self._seed = int(seed)
    self._probs = (
      None if weights is None else _check_weights(weights, len(examples))
    )
    self._epoch = 0
    self._index = 0
    self._order_epoch = -1
    self._order = np.empty(0, np.int64)

  def _epoch_order(self) -> np.ndarray:
    if self._order_epoch != self._epoch:
      rng = np.random.default_rng((self._seed, self._epoch))
      n = len(self._examples)
      if self._probs is None:
        self._order = rng.permutation(n)
      else:
        self._order = rng.choice(n, size=n, replace=True, p=self._probs)
      self._order_epoch = self._epoch
    return self._order

  def __iter__(self) -> DataIterator:
    return self

  def __next__(self) -> list:
    n = len(self._examples)
    batch = []
    while len(batch) < self._batch_size:
      take = min(self._batch_size - len(batch), n - self._index)
      order = self._epoch_order()[self._index : self._index + take]
      batch.extend(self._examples[i] for i in order)
      self._index += take
      if self._index == n:
        self._epoch += 1
        self._index = 0
    return batch

  def state(self) -> dict[str, int]:
    """The position of the next batch."""
    return {"epoch": self._epoch, "index": self._index}

  def restore(self, state: Mapping[str, int]) -> None:
    """Moves to a position returned by `state()`."""
    epoch, index = state.get("epoch"), state.get("index")
    n = len(self._examples)
    integral = all(
      isinstance(x, numbers.Integral) and not isinstance(x, bool)
      for x in (epoch, index)
    )
    if not integral or epoch < 0 or not 0 <= index < n:
      raise ValueError(
        f"bad iterator state {dict(state)!r}: need integers epoch >= 0 and "
        f"0 <= index < {n}"
      )
    self._epoch, self._index = int(epoch), int(index)
