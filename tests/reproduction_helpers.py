"""Running a reproduction script's `--quick` mode from a slow test."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_quick(name: str, workdir, timeout: int = 900) -> dict:
  """`python experiments/reproductions/NAME.py --workdir=WORKDIR --quick`,
  as a user runs it (one CPU device, not the tests' eight); returns its
  results.json. Fails with the script's stderr when it fails."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  script = os.path.join(ROOT, "experiments", "reproductions", f"{name}.py")
  proc = subprocess.run(
    [sys.executable, script, f"--workdir={workdir}", "--quick"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)
