"""The r1_zero reproduction: `--quick` end to end (slow)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "reproductions", "r1_zero.py")


@pytest.mark.slow
def test_quick_run_rl_from_a_base_model_raises_the_reward(tmp_path):
  """`--quick` (a base model pretrained on prose with a fifth of it in R1
  markup, then GRPO with the accuracy and format rewards only) writes
  results.json with the issue's fields, and the claim holds: the mean
  reward over the last fifth of RL exceeds the first fifth by 0.1, and the
  format rate rises. It fails if RL does not move the policy toward the
  rewarded format (a sign error in the loss, advantages that ignore the
  reward, or an update that never reaches the params)."""
  proc = subprocess.run(
    [sys.executable, SCRIPT, f"--workdir={tmp_path}", "--quick"],
    cwd=ROOT,
    env=dict(os.environ, PYTHONPATH=ROOT),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(tmp_path / "results.json") as f:
    r = json.load(f)
  assert (tmp_path / "r1_zero.png").stat().st_size > 10_000
  n = len(r["steps"])
  for key in ("reward", "accuracy", "response_length", "format_rate"):
    assert len(r[key]) == n, key
  assert r["reward_last_fifth"] >= r["reward_first_fifth"] + 0.1, r
  fifth = n // 5
  assert sum(r["format_rate"][-fifth:]) > sum(r["format_rate"][:fifth])
