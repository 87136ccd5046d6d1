"""The S1 reproduction: `--quick` end to end (slow)."""

import pytest
from reproduction_helpers import run_quick


@pytest.mark.slow
def test_quick_run_budget_forcing_and_selection(tmp_path):
  """`--quick` writes results.json with the issue's fields, and:

  - forcing the end of thinking caps the thinking tokens at each budget,
    and accuracy at the largest budget beats the smallest (S1's scaling);
    fails if the forcing never reached the decoder or cut every trace;
  - appended `Wait`s lengthen the thinking (fails if they were ignored);
  - the curated set holds only traces with the right answer on problems
    the student gets wrong, the random one also others (fails if a filter
    is not applied), and the curated set's student is at least as good as
    the random one's within two standard errors.
  """
  r = run_quick("s1", tmp_path, timeout=600)
  assert (tmp_path / "s1.png").stat().st_size > 10_000
  budgets, acc, tok = r["budgets"], r["accuracy"], r["thinking_tokens"]
  assert len(budgets) == len(acc) == len(tok) >= 2
  assert set(r["waits"]) == {"0", "1", "2", "4"}
  assert set(r["selection"]) == {"s1k", "random1k"}
  for b, n in zip(budgets, tok):
    assert n <= b + 1e-9, (b, n)
  assert acc[-1] > acc[0], r
  wait = r["points"]["s1k"]["wait"]
  assert wait["4"]["thinking_tokens"] > wait["0"]["thinking_tokens"]
  s1k, rnd = r["points"]["s1k"], r["points"]["random1k"]
  assert s1k["size"] == rnd["size"] > 0
  assert s1k["right_share"] == s1k["hard_share"] == 1.0
  assert rnd["right_share"] < 1.0
  se = (s1k["accuracy_se"] ** 2 + rnd["accuracy_se"] ** 2) ** 0.5
  assert s1k["accuracy"] >= rnd["accuracy"] - 2 * se, r["selection"]
