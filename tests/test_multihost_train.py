"""Two processes train like one: `experiments/run.py` over a mesh spanning
two processes (2 CPU devices each, gloo collectives) against one process
with 4 devices, then a restart that resumes from the shared checkpoints."""

import os
import sys

import pytest
from multihost import free_port, run_processes
from test_train import ROOT, _params_of
from test_update_devices import assert_same_params

from rlx.train import metrics as metrics_lib

# The smoke variant, with a length reward so that its untrained policy gets
# groups with unequal rewards (a gradient, and DAPO resampling the others).
CONFIG = """
from experiments.configs import grpo_arithmetic


def get_config():
  c = grpo_arithmetic.get_config("smoke")
  c.reward.weights = dict(accuracy_if_format=1.0, overlong=1.0)
  c.reward.kwargs = dict(overlong=dict(max_len=32, cache_len=20))
  c.rollout.dynamic_sampling = True
  c.eval.num_prompts = 10  # two chunks of 8, the second mostly padding
  c.control.eval_every = 4  # the SFT control stops on process 0's clock
  return c
"""
ROLLOUT_KEYS = (
  "train/reward",
  "train/accuracy",
  "train/response_length",
  "train/dynamic_sampling/rounds",
)


def _train(config, workdir, steps, processes):
  """`run.py` as `processes` processes sharing 4 CPU devices."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // processes}"
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
  # Compiled once, reused by the restart.
  env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(config.parent, "jax_cache")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  cmd = [
    sys.executable,
    os.path.join(ROOT, "experiments", "run.py"),
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.train.steps={steps}",
    "--config.mesh.data=4",
  ]
  if processes > 1:
    cmd += [
      f"--coordinator_address=127.0.0.1:{free_port()}",
      f"--num_processes={processes}",
    ]
  cmds = [
    cmd + ([f"--process_id={i}"] if processes > 1 else [])
    for i in range(processes)
  ]
  return run_processes(cmds, env, timeout=300)


def _rl_records(workdir):
  records = metrics_lib.read_metrics(workdir)
  return {r["step"]: r for r in records if r["phase"] == "rl"}


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume(tmp_path):
  config = tmp_path / "config.py"
  config.write_text(CONFIG)
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _train(config, one, 3, processes=1)
  logs = _train(config, two, 2, processes=2)
  assert "outputs in" in logs[0] and "outputs in" not in logs[1]
  _train(config, two, 3, processes=2)  # resumes at step 2

  control = [
    r for r in metrics_lib.read_metrics(two) if r["phase"] == "control"
  ]
  assert control and len(control) % 4 == 0
  want, got = _rl_records(one), _rl_records(two)
  assert sorted(got) == sorted(want) == [0, 1, 2, 3]
  assert "eval/accuracy" in got[2], "the restart did not resume"
  # The same rollouts (sampling is sharding-invariant): equal rewards,
  # lengths and resampling rounds. The updates match to rounding only:
  # gloo sums the gradients across processes in another order.
  for step in (1, 2, 3):
    for key in ROLLOUT_KEYS:
      assert got[step][key] == want[step][key], (step, key)
    assert got[step]["update/grad_norm"] > 0
  for key in ("eval/accuracy", "eval/response_length", "eval/pass@2"):
    assert got[3][key] == want[3][key], key
  want_params, got_params = _params_of(one), _params_of(two)
  assert got_params.keys() == want_params.keys()
  assert_same_params(
    [got_params[k] for k in want_params], list(want_params.values())
  )
