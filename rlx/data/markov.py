"""A Markov chain over a small alphabet whose probabilities are exact.

A "real" data source for experiments that need the true distribution:
every sequence's log-likelihood, the state marginals at each position and
the entropy of fixed-length sequences are computed in closed form, not
estimated, so a model's KL divergence from the truth and the mass it puts
on the truth's rare events can be measured against known values.

    chain = MarkovChain.random_sparse(12, num_common=3, num_rare=3, rng=rng)
    x_NxL = chain.sample(1000, 16, rng)     # states in [0, num_states)
    logp_N = chain.logprob(x_NxL)           # exact, -inf if impossible
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _check_distribution(name: str, p: np.ndarray, axis: int = -1):
  if not np.all(np.isfinite(p)) or np.any(p < 0):
    raise ValueError(f"MarkovChain.{name}: entries must be finite and >= 0")
  sums = p.sum(axis=axis)
  if not np.allclose(sums, 1.0, atol=1e-9):
    raise ValueError(
      f"MarkovChain.{name}: must sum to 1 along its last axis, got sums "
      f"{np.round(np.atleast_1d(sums), 6).tolist()}"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovChain:
  """initial_K: distribution of the first state; transition_KxK[s, s']:
  probability of s' after s. Rows may hold exact zeros (impossible
  transitions)."""

  initial_K: np.ndarray
  transition_KxK: np.ndarray

  def __post_init__(self):
    init = np.asarray(self.initial_K, np.float64)
    trans = np.asarray(self.transition_KxK, np.float64)
    if init.ndim != 1 or trans.shape != (init.size, init.size):
      raise ValueError(
        f"MarkovChain: initial_K has shape {init.shape} and transition_KxK "
        f"{trans.shape}; they must be [K] and [K, K]"
      )
    _check_distribution("initial_K", init)
    _check_distribution("transition_KxK", trans)
    object.__setattr__(self, "initial_K", init)
    object.__setattr__(self, "transition_KxK", trans)

  @property
  def num_states(self) -> int:
    return self.initial_K.size

  @classmethod
  def random_sparse(
    cls,
    num_states: int,
    *,
    num_common: int,
    num_rare: int,
    rare_range: tuple[float, float] = (1e-3, 2e-2),
    concentration: float = 1.0,
    rng: np.random.Generator,
  ) -> MarkovChain:
    """A chain with a heavy head and a thin tail in every row: after each
    state, `num_common` successors share most of the mass (Dirichlet
    weights of `concentration`), `num_rare` successors get probabilities
    drawn log-uniformly from `rare_range`, and the rest are impossible
    (probability exactly 0). The first state is uniform."""
    if num_common < 1 or num_rare < 0 or num_common + num_rare > num_states:
      raise ValueError(
        f"random_sparse: need 1 <= num_common ({num_common}) and 0 <= "
        f"num_rare ({num_rare}) with num_common + num_rare <= num_states "
        f"({num_states})"
      )
    lo, hi = rare_range
    if not 0 < lo <= hi or num_rare * hi >= 1:
      raise ValueError(
        f"random_sparse: rare_range={rare_range} must satisfy 0 < low <= "
        f"high and num_rare * high < 1"
      )
    trans = np.zeros((num_states, num_states))
    for s in range(num_states):
      succ = rng.permutation(num_states)
      common, rare = succ[:num_common], succ[num_common:][:num_rare]
      rare_p = np.exp(rng.uniform(np.log(lo), np.log(hi), num_rare))
      trans[s, rare] = rare_p
      weights = rng.dirichlet(np.full(num_common, concentration))
      trans[s, common] = weights * (1.0 - rare_p.sum())
    return cls(np.full(num_states, 1.0 / num_states), trans)

  def sample(self, n: int, length: int, rng: np.random.Generator):
    """n sequences of `length` states, int32 [n, length]."""
    if n < 0 or length < 1:
      raise ValueError(f"sample(n={n}, length={length}): need n >= 0, >= 1")
    x = np.empty((n, length), np.int32)
    x[:, 0] = rng.choice(self.num_states, size=n, p=self.initial_K)
    cdf = np.cumsum(self.transition_KxK, axis=1)
    cdf[:, -1] = 1.0
    for t in range(1, length):
      u = rng.random(n)[:, None]
      x[:, t] = np.sum(u >= cdf[x[:, t - 1]], axis=1)
    return x

  def _check_states(self, x_NxL: np.ndarray) -> np.ndarray:
    x = np.asarray(x_NxL)
    if x.ndim != 2 or x.shape[1] < 1:
      raise ValueError(f"sequences must be [N, L] with L >= 1, got {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= self.num_states):
      raise ValueError(
        f"sequences hold states outside [0, {self.num_states}): "
        f"min {x.min()}, max {x.max()}"
      )
    return x.astype(np.int64)

  def transition_logprobs(self, x_NxL: np.ndarray) -> np.ndarray:
    """log P(x_t | x_{t-1}) for t >= 1 and log P(x_0) at t = 0, [N, L]
    (-inf where impossible)."""
    x = self._check_states(x_NxL)
    with np.errstate(divide="ignore"):
      out = np.empty(x.shape)
      out[:, 0] = np.log(self.initial_K[x[:, 0]])
      out[:, 1:] = np.log(self.transition_KxK[x[:, :-1], x[:, 1:]])
    return out

  def logprob(self, x_NxL: np.ndarray) -> np.ndarray:
    """Exact log-likelihood of each sequence, [N] (-inf if impossible)."""
    return self.transition_logprobs(x_NxL).sum(axis=1)

  def token_rows(self, x_NxL: np.ndarray, bos: int, offset: int):
    """Sequences as a language model's token rows: [bos, x + offset],
    int32 [N, L + 1]."""
    x = self._check_states(x_NxL)
    bos_N = np.full((x.shape[0], 1), bos, np.int64)
    return np.concatenate([bos_N, x + offset], axis=1).astype(np.int32)

  def token_logprob(self, tokens_NxT: np.ndarray, offset: int) -> np.ndarray:
    """Exact log-likelihood [N] of the sequences in `token_rows` (a model's
    samples, say): -inf where a token after the first is no state."""
    x = np.asarray(tokens_NxT)[:, 1:] - offset
    ok = np.all((x >= 0) & (x < self.num_states), axis=1)
    out = np.full(x.shape[0], -np.inf)
    out[ok] = self.logprob(x[ok])
    return out

  def marginals(self, length: int) -> np.ndarray:
    """P(x_t = s) for t < length, [length, K]."""
    m = np.empty((length, self.num_states))
    m[0] = self.initial_K
    for t in range(1, length):
      m[t] = m[t - 1] @ self.transition_KxK
    return m

  def entropy(self, length: int) -> float:
    """Entropy in nats of the distribution of `length`-state sequences."""
    plogp = lambda p: float(-np.sum(p * np.log(np.where(p > 0, p, 1.0))))
    row_h = np.array([plogp(row) for row in self.transition_KxK])
    m = self.marginals(length)
    return float(plogp(self.initial_K) + (m[:-1] @ row_h).sum())

  def expected_transition_mass(self, length: int, events_KxK) -> float:
    """The chance that a transition of a `length`-state sequence is one of
    `events_KxK` (a boolean [K, K] set of (s, s') pairs), averaged over the
    length - 1 transitions: sum_t sum_s P(x_t = s) P(s' in events | s)."""
    events = np.asarray(events_KxK, bool)
    if events.shape != self.transition_KxK.shape:
      raise ValueError(
        f"events_KxK has shape {events.shape}, want {self.transition_KxK.shape}"
      )
    if length < 2:
      raise ValueError(f"length={length}: a transition needs length >= 2")
    row_mass = np.where(events, self.transition_KxK, 0.0).sum(axis=1)
    return float((self.marginals(length)[:-1] @ row_mass).mean())
