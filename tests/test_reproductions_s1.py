"""The S1 reproduction, shortened (`--quick`): distillation SFT on a
curated set, then budget forcing (slow)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_s1_quick(tmp_path):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device, as the script runs
  env["PYTHONPATH"] = ROOT
  script = os.path.join(ROOT, "experiments", "reproductions", "s1.py")
  subprocess.run(
    [sys.executable, script, f"--workdir={tmp_path}", "--quick"],
    check=True,
    env=env,
    cwd=ROOT,
  )
  with open(tmp_path / "results.json") as f:
    results = json.load(f)
  assert (tmp_path / "s1.png").exists()
  budgets, acc = results["budgets"], results["accuracy"]
  assert len(budgets) == len(acc) == len(results["thinking_tokens"]) >= 2
  assert set(results["waits"]) == {"0", "1", "2", "4"}
  assert set(results["selection"]) == {"s1k", "random1k"}
  # Forcing the end of thinking sooner gives fewer thinking tokens.
  assert results["thinking_tokens"][0] < results["thinking_tokens"][-1]
  # S1's test-time scaling: fails if a student that may think for the
  # largest budget is no more accurate than one cut off after the smallest
  # (e.g. if it answered without using its trace).
  assert acc[-1] > acc[0]
  # S1's selection: fails if SFT on the curated set (right traces of
  # problems the student got wrong, spread over problem types) is worse
  # than SFT on as many random traces.
  sel = results["selection"]
  assert sel["s1k"] >= sel["random1k"]
