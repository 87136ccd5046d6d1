"""The Kimi k1.5 reproduction, `--quick`: it runs end to end, writes the
fields the README and the checker read, and shows the qualitative effects
that hold even at the quick sizes."""

import os

import pytest
from reproduction_helpers import run_quick


@pytest.mark.slow
def test_kimi_quick(tmp_path):
  r = run_quick("kimi", tmp_path, timeout=600)
  assert os.path.exists(tmp_path / "kimi.png")
  for arm in ("sft", "no_penalty", "length_penalty", "long2short_sft"):
    assert 0 <= r[arm]["accuracy"] <= 1 and r[arm]["length"] > 0, arm
  curves = r["curriculum"]
  assert len(curves["uniform"]) == len(curves["by_difficulty"])
  assert len(curves["uniform"]) == len(r["curriculum_steps"]) >= 2
  # Both arms start from the same SFT model: equal at step 0.
  assert curves["uniform"][0] == curves["by_difficulty"][0]
  assert curves["uniform"][0] == r["sft"]["accuracy"]
  # The curriculum's pass rates are those of long2short's samples (one key,
  # one model): fails if the RL phase estimated them from other params.
  assert r["pass_rates_match_samples"]
  q = r["pass_rates"]
  assert q["drawn"] + q["always_solved"] + q["never_solved"] == q["num_prompts"]
  # Long2short fine-tunes on the shortest correct of k samples, and the
  # teacher re-checks each step 0-2 times: the fine-tuned model must answer
  # in clearly fewer tokens than the long-thinking SFT model (fails if the
  # selection kept long samples or the fine-tuning did not take).
  l2s = r["long2short_sft"]
  assert l2s["train_mean_length"] < l2s["sampled_correct_mean_length"]
  assert l2s["length"] < 0.85 * r["sft"]["length"]
  # The length penalty shortens responses against the same RL run without
  # it, held out and in the rollouts of the second half of RL (the arms
  # draw the same prompts and random numbers); fails if the Kimi reward
  # did not reach the update or rewarded length the wrong way round.
  pen, base = r["length_penalty"], r["no_penalty"]
  assert pen["length"] < base["length"]
  assert pen["train_length_late"] < base["train_length_late"]
