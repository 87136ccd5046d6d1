"""The exact Markov chain source against brute-force enumeration."""

import itertools

import numpy as np
import pytest

from rlx.data.markov import MarkovChain


def small_chain():
  trans = np.array(
    [
      [0.7, 0.2, 0.1, 0.0],
      [0.0, 0.5, 0.49, 0.01],
      [0.3, 0.0, 0.0, 0.7],
      [0.25, 0.25, 0.25, 0.25],
    ]
  )
  return MarkovChain(np.array([0.4, 0.3, 0.2, 0.1]), trans)


def enumerate_all(chain, length):
  xs = np.array(list(itertools.product(range(chain.num_states), repeat=length)))
  # Independent of `logprob`: a plain loop over the product of factors.
  p = np.array(
    [
      chain.initial_K[x[0]]
      * np.prod([chain.transition_KxK[a, b] for a, b in zip(x[:-1], x[1:])])
      for x in xs
    ]
  )
  return xs, p


def test_logprob_entropy_marginals_and_mass_equal_enumeration():
  chain, length = small_chain(), 4
  xs, p = enumerate_all(chain, length)
  assert p.sum() == pytest.approx(1.0)
  with np.errstate(divide="ignore"):
    np.testing.assert_allclose(chain.logprob(xs), np.log(p), rtol=1e-12)
  nz = p > 0
  assert chain.entropy(length) == pytest.approx(-np.sum(p[nz] * np.log(p[nz])))
  for t in range(length):
    want = np.bincount(xs[:, t], weights=p, minlength=4)
    np.testing.assert_allclose(chain.marginals(length)[t], want, atol=1e-12)
  events = chain.transition_KxK < 0.2
  hits = events[xs[:, :-1], xs[:, 1:]].mean(axis=1)
  assert chain.expected_transition_mass(length, events) == pytest.approx(
    np.sum(p * hits)
  )


def test_samples_follow_the_chain():
  chain = small_chain()
  x = chain.sample(20000, 6, np.random.default_rng(0))
  assert x.shape == (20000, 6) and x.dtype == np.int32
  assert np.all(np.isfinite(chain.logprob(x)))  # never an impossible step
  counts = np.zeros((4, 4))
  np.add.at(counts, (x[:, :-1], x[:, 1:]), 1)
  freq = counts / counts.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(freq, chain.transition_KxK, atol=0.015)
  first = np.bincount(x[:, 0], minlength=4) / len(x)
  np.testing.assert_allclose(first, chain.initial_K, atol=0.015)


def test_random_sparse_rows():
  rng = np.random.default_rng(1)
  chain = MarkovChain.random_sparse(
    10, num_common=3, num_rare=2, rare_range=(1e-3, 1e-2), rng=rng
  )
  P = chain.transition_KxK
  np.testing.assert_allclose(P.sum(axis=1), 1.0)
  assert np.all((P > 0).sum(axis=1) == 5)
  rare = (P > 0) & (P <= 1e-2)
  assert np.all(rare.sum(axis=1) == 2)
  assert np.all(P[rare] >= 1e-3)


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match="sum to 1"):
    MarkovChain(np.array([0.5, 0.4]), np.eye(2))
  with pytest.raises(ValueError, match="shape"):
    MarkovChain(np.array([1.0]), np.eye(2))
  with pytest.raises(ValueError, match=">= 0"):
    MarkovChain(np.array([1.5, -0.5]), np.eye(2))
  with pytest.raises(ValueError, match="outside"):
    small_chain().logprob(np.array([[0, 4]]))
  with pytest.raises(ValueError, match="num_common"):
    MarkovChain.random_sparse(
      3, num_common=3, num_rare=1, rng=np.random.default_rng(0)
    )


def test_token_rows_round_trip_and_score_foreign_tokens_impossible():
  chain = small_chain()
  x = chain.sample(6, 5, np.random.default_rng(0))
  rows = chain.token_rows(x, bos=1, offset=2)
  assert rows.dtype == np.int32 and rows.shape == (6, 6)
  assert np.all(rows[:, 0] == 1) and np.all(rows[:, 1:] == x + 2)
  np.testing.assert_array_equal(
    chain.token_logprob(rows, offset=2), chain.logprob(x)
  )
  rows[2, 3] = 0  # a pad token in a sample: no state
  rows[4, 1] = 2 + chain.num_states
  lp = chain.token_logprob(rows, offset=2)
  assert lp[2] == lp[4] == -np.inf
  np.testing.assert_array_equal(
    lp[[0, 1, 3, 5]], chain.logprob(x[[0, 1, 3, 5]])
  )
