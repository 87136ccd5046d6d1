"""S1's data selection (`rlx.data.selection`) and the verbose arithmetic
traces it is used with (`tasks.verbose_trace`)."""

import re

import numpy as np
import pytest

from rlx.data import selection, tasks


def test_s1_select_keeps_only_filtered_items_without_repeats():
  rng = np.random.default_rng(0)
  keep = rng.random(300) < 0.5
  domains = rng.integers(0, 5, 300).tolist()
  lengths = rng.integers(10, 60, 300).tolist()
  chosen = selection.s1_select(keep, domains, lengths, 100, rng)
  assert len(chosen) == len(set(chosen)) == 100
  assert all(keep[i] for i in chosen)
  # Every kept item, when asked for all of them.
  everything = selection.s1_select(keep, domains, lengths, keep.sum(), rng)
  assert sorted(everything) == np.flatnonzero(keep).tolist()


def test_s1_select_spreads_over_domains():
  # 90 items of domain "a", 10 of "b": a uniform draw of 20 items takes
  # about 2 of "b"; S1's draw picks the domain first, so "b" gives about
  # half of them until it runs out (fails if domains are not balanced).
  domains = ["a"] * 90 + ["b"] * 10
  counts = []
  for seed in range(20):
    rng = np.random.default_rng(seed)
    chosen = selection.s1_select([True] * 100, domains, [1] * 100, 20, rng)
    counts.append(sum(domains[i] == "b" for i in chosen))
  assert np.mean(counts) > 8


def test_s1_select_prefers_long_traces():
  # One domain, distinct lengths: rank r is drawn with weight 2**-r, so the
  # 5 chosen of 50 are nearly the 5 longest (a uniform draw: mean rank 25).
  lengths = np.random.default_rng(1).permutation(50).tolist()
  ranks = []
  for seed in range(20):
    rng = np.random.default_rng(seed)
    chosen = selection.s1_select([True] * 50, [0] * 50, lengths, 5, rng)
    ranks += [49 - lengths[i] for i in chosen]
  assert np.mean(ranks) < 5


def test_selection_errors():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="only 1 of 3 pool items"):
    selection.s1_select([True, False, False], [0, 0, 0], [1, 1, 1], 2, rng)
  with pytest.raises(ValueError, match="differ in length"):
    selection.s1_select([True], [0, 1], [1], 1, rng)
  with pytest.raises(ValueError, match="cannot choose 5 of 3"):
    selection.random_select(3, 5, rng)
  chosen = selection.random_select(10, 10, rng)
  assert sorted(chosen) == list(range(10))


_SAY = re.compile(r"(-?\d+) (plus|minus) (\d+) is (-?\d+)\.")


def _check_verbose(example):
  """Parses a verbose solution; returns (every statement true, answer,
  where the check ends)."""
  match = re.fullmatch(
    r"<think>(.*) Wait, check: (.*) So (-?\d+)\.</think>"
    r"<answer>(-?\d+)</answer>",
    example,
  )
  assert match, example
  forward, check, so, answer = match.groups()
  statements = [_SAY.findall(part) for part in (forward, check)]
  true = all(
    int(c) == (int(a) + int(b) if op == "plus" else int(a) - int(b))
    for part in statements
    for a, op, b, c in part
  )
  assert so == answer
  assert int(statements[0][-1][3]) == int(answer)
  return true, int(answer), int(statements[1][-1][3])


def test_verbose_traces_are_right_and_checked():
  def make(**kw):
    return tasks.make_task(
      "arithmetic",
      num_train=300,
      num_eval=20,
      digits=1,
      num_operands=3,
      ops="+-",
      trace="verbose",
      **kw,
    )

  short = tasks.make_task(
    "arithmetic", num_train=300, num_eval=20, digits=1, num_operands=3, ops="+-"
  )
  exact, carry = make(), make(teacher="carry", teacher_rate=0.7)
  for s, e, c in zip(short.train, exact.train, carry.train):
    # The problems do not depend on the trace style.
    assert (s["prompt"], s["answer"]) == (e["prompt"], e["answer"])
    ops = re.findall(r"[+-]", e["expression"])
    value = int(re.match(r"\d+", e["expression"]).group())
    for op, x in zip(ops, re.findall(r"\d+", e["expression"])[1:]):
      value += int(x) if op == "+" else -int(x)
    true, answer, checked = _check_verbose(e["solution"])
    assert true and answer == value == int(e["answer"])
    assert checked == int(re.match(r"\d+", e["expression"]).group())
    # A carry-dropping teacher's verbose solution: its check ends on the
    # first operand exactly when its answer is right.
    for _, text in c.get("teacher_solutions", [[1.0, c["solution"]]]):
      _, answer, checked = _check_verbose(text)
      first = int(re.match(r"\d+", e["expression"]).group())
      assert (checked == first) == (answer == value)
  assert "Wait, check:" in exact.train[0]["solution"]
  with pytest.raises(ValueError, match="trace must be one of"):
    tasks.make_task("arithmetic", num_train=5, num_eval=1, trace="long")
  with pytest.raises(ValueError, match="ops '\\+' and '-' only"):
    tasks.make_task("arithmetic", num_train=5, num_eval=1, trace="verbose")
