"""The r1_zero reproduction: `--quick` end to end (slow)."""

import pytest
from reproduction_helpers import run_quick


@pytest.mark.slow
def test_quick_run_rl_from_a_base_model_raises_the_reward(tmp_path):
  """`--quick` (a base model pretrained on prose with a fifth of it in R1
  markup, then GRPO with the accuracy and format rewards only) writes
  results.json with the issue's fields, and the claim holds: the mean
  reward over the last fifth of RL exceeds the first fifth by 0.1, and the
  format rate rises. It fails if RL does not move the policy toward the
  rewarded format (a sign error in the loss, advantages that ignore the
  reward, or an update that never reaches the params)."""
  r = run_quick("r1_zero", tmp_path)
  assert (tmp_path / "r1_zero.png").stat().st_size > 10_000
  n = len(r["steps"])
  for key in ("reward", "accuracy", "response_length", "format_rate"):
    assert len(r[key]) == n, key
  assert r["reward_last_fifth"] >= r["reward_first_fifth"] + 0.1, r
  fifth = n // 5
  assert sum(r["format_rate"][-fifth:]) > sum(r["format_rate"][:fifth])
