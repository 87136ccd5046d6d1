"""The training loop: configs, errors, outputs, NaN steps and kill -9 resume."""

import functools
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rlx import train
from rlx.train import config as config_lib
from rlx.train import evaluation
from rlx.train import metrics as metrics_lib
from rlx.train import rollout as rollout_lib
from rlx.train.config import ConfigError, check_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "experiments/configs/grpo_arithmetic.py")
CONFIGS = sorted(
  p
  for p in glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))
  if "def get_config" in open(p).read()
)


def load_config(name: str, arg: str | None = "smoke"):
  path = os.path.join(ROOT, "experiments", "configs", name)
  spec = importlib.util.spec_from_file_location(name[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny(config):
  """Smaller still than the smoke variant: seconds per test."""
  config.eval.num_prompts = 4
  config.eval.num_samples = 0
  config.eval.batch_size = 4
  config.train.progress = False
  return config


def _make_jsonl(tmp_path):
  path = tmp_path / "gsm.jsonl"
  with open(path, "w") as f:
    for i in range(40):
      q = f"Tom has {i} apples and buys {i + 3} more. How many now?"
      f.write(
        json.dumps({"question": q, "answer": f"{i}+{i + 3}\n#### {2 * i + 3}"})
      )
      f.write("\n")
  return str(path)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_each_config_builds_and_runs_two_steps(path, tmp_path, monkeypatch):
  name = os.path.basename(path)
  config = tiny(load_config(name))
  if config.model.checkpoint:  # the HF config: a tiny local checkpoint
    from hf_helpers import make_hf_checkpoint

    from rlx.data.tokenizer import train_sentencepiece
    from rlx.models import load_pretrained, save_pretrained

    tok = train_sentencepiece(
      ["Tom has 3 apples. <think>a</think><answer>7</answer>"] * 10,
      vocab_size=120,
      user_defined_symbols=["<think>", "</think>", "<answer>", "</answer>"],
    )
    ckpt, _ = make_hf_checkpoint(tmp_path / "ckpt", "qwen2", vocab_size=128)
    save_pretrained(load_pretrained(ckpt), ckpt)
    tok.save(ckpt)
    config.model.checkpoint = ckpt
    config.task.options.path = _make_jsonl(tmp_path)
    config.task.options.eval_fraction = 0.3
  workdir = str(tmp_path / "run")
  train.run(config, workdir)
  records = metrics_lib.read_metrics(workdir)
  rl = [r for r in records if r["phase"] == "rl" and r["step"] > 0]
  assert [r["step"] for r in rl] == list(range(1, config.train.steps + 1))
  if config.sft.steps:
    sft = [r for r in records if r["phase"] == "sft"]
    assert len(sft) == config.sft.steps
  assert os.path.exists(os.path.join(workdir, "export", "config.json"))


def test_default_config_writes_metrics_events_plots_and_export(tmp_path):
  config = tiny(load_config("grpo_arithmetic.py"))
  config.train.progress = True
  workdir = str(tmp_path / "run")
  summary = train.run(config, workdir)
  assert {"before", "after"} <= set(summary)
  records = metrics_lib.read_metrics(workdir)
  last = [r for r in records if r["phase"] == "rl"][-1]
  for key in ("train/reward", "train/accuracy", "update/loss", "eval/accuracy"):
    assert key in last
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.*"))
  assert os.path.getsize(os.path.join(workdir, "plots.png")) > 1000
  from rlx.models import load_pretrained

  model = load_pretrained(os.path.join(workdir, "export"))
  assert model.config.num_layers == 2


def test_bad_configs_name_the_key():
  base = lambda: load_config("grpo_arithmetic.py")
  c = base()
  c.algo.name = "grpoo"
  with pytest.raises(ConfigError, match=r"algo.name='grpoo'.*allowed"):
    check_config(c, 8)
  c = base()
  c.reward.weights = {"acuracy": 1.0}
  with pytest.raises(
    ConfigError, match=r"reward.weights.acuracy.*unknown reward"
  ):
    check_config(c, 8)
  c = base()
  c.unlock()
  c.train.stepz = 3
  with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'"):
    check_config(c, 8)
  c = base()
  c.rollout.prompts_per_step = 3
  c.rollout.num_samples = 2
  with pytest.raises(ConfigError, match=r"prompts_per_step=3.*data x fsdp = 8"):
    check_config(c, 8)
  c = base()
  c.algo.num_minibatches = 3
  with pytest.raises(ConfigError, match=r"num_minibatches=3.*= 16"):
    check_config(c, 1)
  c = base()
  c.mesh.fsdp = 3
  with pytest.raises(ConfigError, match=r"config.mesh.*8 devices"):
    check_config(c, 8)
  c = base()
  c.algo.options = {"betta": 0.1}
  with pytest.raises(ConfigError, match=r"config.algo \(grpo\).*betta"):
    train.config.make_algo(c, 1)


NAN = float("nan")


@pytest.mark.parametrize(
  "key, value, match",
  [
    ("sft.learning_rate", -1.0, r"sft.learning_rate=-1.0: must be a finite"),
    ("sft.learning_rate", NAN, r"sft.learning_rate=nan: must be a finite"),
    ("optimizer.learning_rate", -1e-3, r"optimizer.learning_rate=-0.001"),
    ("optimizer.learning_rate", NAN, r"optimizer.learning_rate=nan"),
    ("optimizer.b2", 1.0, r"optimizer.b2=1.0: must be in \[0, 1\)"),
    ("algo.num_epochs", 0, r"algo.num_epochs=0: must be an integer >= 1"),
    ("algo.options", {"betta": 0.1}, r"algo \(grpo\).*'betta'"),
    ("rollout.top_p", 2.0, r"rollout.top_p=2.0: .* in \(0, 1\]"),
    ("rollout.top_p", 0.0, r"rollout.top_p=0.0: .* in \(0, 1\]"),
    ("rollout.temperature", -1.0, r"rollout.temperature=-1.0: .*>= 0"),
    ("rollout.prompt_buckets", (), r"rollout.prompt_buckets=\(\): .*non-em"),
    ("eval.num_samples", -1, r"eval.num_samples=-1: must be an integer >= 0"),
    ("eval.num_prompts", 0, r"eval.num_prompts=0: must be an integer >= 1"),
    ("reward.timeout_s", 0.0, r"reward.timeout_s=0.0: .* > 0"),
    ("reward.timeout_s", -5.0, r"reward.timeout_s=-5.0: .* > 0"),
    ("reward.weights", {}, r"reward.weights=\{\}: must name at least one"),
    (
      "reward.kwargs",
      {"acuracy_if_format": {"x": 1}},
      r"reward.kwargs.acuracy_if_format=.*names no reward in reward.weig",
    ),
    ("rollout.num_samples", 1, r"rollout.num_samples=1: must be >= 2 for"),
    ("train.max_consecutive_skips", 0, r"train.max_consecutive_skips=0"),
    ("train.max_param_norm_growth", 0.5, r"train.max_param_norm_growth="),
  ],
)
def test_every_config_mistake_is_one_line_naming_the_key(key, value, match):
  c = load_config("grpo_arithmetic.py", None)
  *path, name = key.split(".")
  section = c
  for part in path:
    section = section[part]
  section[name] = value
  with pytest.raises(ConfigError, match=r"^config\." + match) as error:
    check_config(c, 8)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("algo", ["rloo", "reinforce_baseline", "dr_grpo"])
def test_one_sample_per_prompt_is_refused_for_group_baselines(algo):
  c = load_config("grpo_arithmetic.py", None)
  c.algo.name, c.algo.options = algo, {}
  c.rollout.num_samples = 1
  with pytest.raises(ConfigError, match=rf"must be >= 2 for {algo}"):
    check_config(c, 8)
  c.algo.name = "reinforce"  # no baseline: one sample per prompt is fine
  check_config(c, 8)


def test_config_mistakes_stop_the_run_before_sft(tmp_path):
  config = tiny(load_config("grpo_arithmetic.py"))
  assert config.sft.steps > 0
  config.algo.options = {"betta": 0.1}
  workdir = str(tmp_path / "run")
  with pytest.raises(ConfigError, match="betta"):
    train.run(config, workdir)
  assert not os.path.exists(workdir)


def test_command_line_unknown_key_is_one_line_and_new_weight_works(tmp_path):
  """Both fail or pass `check_config` before any work: the second only on
  the mesh, checked after the reward weights."""
  cmd = [
    sys.executable,
    os.path.join(ROOT, "experiments", "run.py"),
    f"--config={DEFAULT_CONFIG}:smoke",
    f"--workdir={tmp_path / 'run'}",
  ]
  bad = subprocess.run(
    cmd + ["--config.train.stepz=3"],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert bad.returncode != 0
  assert bad.stderr.strip().splitlines() == [
    "error: unknown config key 'train.stepz' (did you mean train.steps?); "
    "allowed keys here: ['async_checkpoints', 'eval_every', 'export', "
    "'keep_checkpoints', 'max_consecutive_skips', 'max_param_norm_growth', "
    "'progress', 'save_every', 'steps']"
  ]
  new = subprocess.run(
    cmd + ["--config.reward.weights.overlong=1.0", "--config.mesh.fsdp=3"],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert new.stderr.strip().splitlines() == [
    "error: config.mesh={'data': -1, 'fsdp': 3, 'tensor': 1}: data x fsdp x "
    "tensor must equal the 2 devices"
  ]
  assert not os.path.exists(tmp_path / "run")


def test_locked_config_rejects_unknown_override():
  from ml_collections import config_flags  # noqa: F401

  c = load_config("grpo_arithmetic.py")
  c.lock()
  with pytest.raises(AttributeError, match="stepz"):
    c.train.stepz = 1


def test_overlong_prompts_error_or_filter(tmp_path):
  config = tiny(load_config("grpo_arithmetic.py"))
  config.rollout.max_prompt_len = 4
  with pytest.raises(
    ConfigError,
    match=r"train prompts are longer than "
    r"rollout.max_prompt_len=4 tokens \(longest \d+\)",
  ):
    train.run(config, str(tmp_path / "a"))


def _params_of(workdir):
  from safetensors.numpy import load_file

  return load_file(os.path.join(workdir, "export", "model.safetensors"))


# The smoke model answers nothing right after 3 SFT steps, so accuracy
# rewards are all 0 and RL would never move a parameter; Kimi's length
# reward ranks the wrong answers of a group by length, so RL steps do.
_LENGTH_REWARD_CONFIG = f"""
import sys
sys.path.insert(0, {ROOT!r})
from experiments.configs import grpo_arithmetic

def get_config(arg=None):
  c = grpo_arithmetic.get_config(arg)
  c.reward.weights = dict(kimi_length=1.0)
  return c
"""


def _run_cmd(workdir, steps, extra=(), config=DEFAULT_CONFIG):
  return [
    sys.executable,
    os.path.join(ROOT, "experiments", "run.py"),
    f"--config={config}:smoke",
    f"--workdir={workdir}",
    f"--config.train.steps={steps}",
    "--config.sft.steps=3",
    "--config.train.save_every=1",
    "--config.eval.num_prompts=4",
    "--config.eval.num_samples=0",
    "--config.eval.batch_size=4",
    *extra,
  ]


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  return env


@pytest.mark.slow
def test_kill_9_and_resume_is_bitwise_identical(tmp_path):
  steps = 5
  config = str(tmp_path / "length_reward.py")
  with open(config, "w") as f:
    f.write(_LENGTH_REWARD_CONFIG)
  run_cmd = functools.partial(_run_cmd, config=config)
  ref, sft_only = str(tmp_path / "ref"), str(tmp_path / "sft_only")
  subprocess.run(run_cmd(ref, steps), check=True, env=_env(), timeout=600)
  subprocess.run(run_cmd(sft_only, 0), check=True, env=_env(), timeout=600)
  expected = _params_of(ref)
  # The RL steps being resumed did something: non-zero rewards and
  # gradients, no skipped step, and params that moved away from SFT's.
  rl = [r for r in metrics_lib.read_metrics(ref) if r["phase"] == "rl"][1:]
  assert len(rl) == steps
  assert all(r["update/grad_norm"] > 0 for r in rl)
  assert not any(r["update/skipped_steps"] for r in rl)
  assert any(r["train/reward"] != 0 for r in rl)
  sft = _params_of(sft_only)
  assert not any(np.array_equal(sft[k], expected[k]) for k in sft)

  for kill_at in (2, 6):  # in SFT (3 steps) and in RL
    workdir = str(tmp_path / f"kill{kill_at}")
    proc = subprocess.Popen(run_cmd(workdir, steps), env=_env())
    deadline = time.time() + 600
    while time.time() < deadline:
      records = metrics_lib.read_metrics(workdir)
      done = len([r for r in records if r["phase"] == "sft"]) + len(
        [r for r in records if r["phase"] == "rl" and r["step"] > 0]
      )
      if done >= kill_at or proc.poll() is not None:
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(run_cmd(workdir, steps), check=True, env=_env(), timeout=600)
    got = _params_of(workdir)
    assert got.keys() == expected.keys()
    for name in expected:
      np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_nan_step_is_skipped_and_not_checkpointed(tmp_path, monkeypatch):
  config = tiny(load_config("grpo_arithmetic.py"))
  config.sft.steps = 0
  config.control.enabled = False
  config.train.steps = 3
  original = rollout_lib.rl_batch
  calls = []

  def poisoned(*args):
    batch = original(*args)
    calls.append(1)
    if len(calls) == 2:
      # inf, not NaN: a NaN reward means unscorable (advantage 0).
      batch["rewards"] = np.full_like(batch["rewards"], np.inf)
    return batch

  monkeypatch.setattr(rollout_lib, "rl_batch", poisoned)
  workdir = str(tmp_path / "run")
  train.run(config, workdir)
  records = [r for r in metrics_lib.read_metrics(workdir) if r["phase"] == "rl"]
  skipped = {r["step"]: r["update/skipped_steps"] for r in records[1:]}
  assert skipped == {1: 0, 2: 1, 3: 0}
  steps = sorted(
    int(s)
    for s in os.listdir(os.path.join(workdir, "checkpoints", "rl"))
    if s.isdigit()
  )
  assert 2 not in steps and 3 in steps


def test_eval_metrics_aggregate_per_prompt(tmp_path, monkeypatch):
  """Only the first row of each decoded chunk correct. 12 prompts in chunks
  of 8 (the last padded by 4): greedy 2/12; with 2 samples per prompt the
  first prompt of each chunk has 1 of 2 right: pass@2 2/12, mean@2 1/12.
  Counting the padding would give 2/16 and 1/16."""
  from rlx.train import loop

  config = tiny(load_config("grpo_arithmetic.py"))
  config.eval.num_prompts = 12
  config.eval.batch_size = 8
  config.eval.num_samples = 2
  trainer = loop.Trainer(config, str(tmp_path))
  assert trainer.num_shards in (1, 2, 4, 8)  # so chunks are of 8 prompts
  monkeypatch.setattr(
    evaluation,
    "is_correct",
    lambda texts, fields: np.arange(len(texts)) == 0,
  )
  m = evaluation.evaluate(trainer, trainer.initial_params, 0)
  assert m["eval/accuracy"] == pytest.approx(2 / 12)
  assert m["eval/pass@2"] == pytest.approx(2 / 12)
  assert m["eval/mean@2"] == pytest.approx(1 / 12)


def test_consecutive_skipped_steps_are_reported_and_stop_the_run(
  tmp_path, monkeypatch, caplog
):
  config = tiny(load_config("grpo_arithmetic.py"))
  config.sft.steps = 0
  config.control.enabled = False
  config.train.steps = 5
  config.train.max_consecutive_skips = 2
  original = rollout_lib.rl_batch

  def poisoned(*args):
    batch = original(*args)
    # inf, not NaN: a NaN reward means unscorable (advantage 0).
    batch["rewards"] = np.full_like(batch["rewards"], np.inf)
    return batch

  monkeypatch.setattr(rollout_lib, "rl_batch", poisoned)
  workdir = str(tmp_path / "run")
  with (
    caplog.at_level("WARNING"),
    pytest.raises(
      train.TrainingDivergedError,
      match=r"rl: 2 update steps in a row \(to step 2\) were skipped, "
      r"reaching train.max_consecutive_skips=2; likely cause: the loss is "
      r"not finite",
    ),
  ):
    train.run(config, workdir)
  for step in (1, 2):
    assert f"rl step {step}: update skipped" in caplog.text
  assert not os.path.exists(os.path.join(workdir, "export"))
  assert not os.listdir(os.path.join(workdir, "checkpoints", "rl"))


def test_absurd_update_stops_before_it_is_saved(tmp_path):
  config = tiny(load_config("grpo_arithmetic.py"))
  config.sft.steps = 2
  config.sft.warmup_steps = 0
  config.sft.learning_rate = 1e10
  workdir = str(tmp_path / "run")
  with pytest.raises(
    train.TrainingDivergedError,
    match=r"sft step 1: one update grew the params' global norm .* times .*"
    r"train.max_param_norm_growth=2.0; stopped before saving it",
  ):
    train.run(config, workdir)
  assert not os.listdir(os.path.join(workdir, "checkpoints", "sft"))
  assert not os.path.exists(os.path.join(workdir, "export"))


def test_rl_resumes_from_its_own_checkpoints_when_every_sft_one_is_bad(
  tmp_path, caplog
):
  """A damaged SFT checkpoint (metadata emptied: once a bare KeyError) and
  an intact RL checkpoint of the last step: the run reports the SFT one in
  a warning and finishes from the RL checkpoint."""
  from rlx import algos
  from rlx.data import DataIterator
  from rlx.train import checkpoint as ckpt_lib
  from rlx.train import loop

  config = tiny(load_config("grpo_arithmetic.py"))
  config.sft.steps, config.train.steps = 2, 1
  config.control.enabled = False  # it would continue the SFT policy
  workdir = str(tmp_path / "run")
  trainer = loop.Trainer(config, workdir)
  for phase, algo, step in (
    ("sft", config_lib.make_sft_algo(config), 2),
    ("rl", config_lib.make_algo(config, 1), 1),
  ):
    state = algos.create_train_state(
      trainer.graphdef, trainer.initial_params, algo, trainer.mesh
    )
    data = DataIterator(trainer.task.train, 8, seed=0)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints", phase))
    ckpt.save(step, state, {"data": data.state(), "running_mean": 0.0})
    ckpt.close()
  with open(os.path.join(workdir, "checkpoints/sft/2/meta/metadata"), "w") as f:
    f.write("{}")
  with caplog.at_level("WARNING"):
    train.run(config, workdir)
  assert "checkpoints/sft could be restored" in caplog.text
  assert "RL resumes from its own checkpoints" in caplog.text
  assert os.path.exists(os.path.join(workdir, "export", "config.json"))

  config.algo.options.beta = 0.04  # a KL reference: the SFT policy
  with pytest.raises(
    ckpt_lib.CheckpointCorruptError, match="needs the SFT policy as its ref"
  ):
    train.run(config, workdir)


def test_summarise_splits_by_category_with_standard_errors():

  examples = [{"category": c} for c in "aabbb"]
  values = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
  m = evaluation.summarise({"accuracy": values}, examples, "eval")
  assert m["eval/accuracy"] == pytest.approx(0.6)
  assert m["eval/accuracy_se"] == pytest.approx(np.std(values, ddof=1) / 5**0.5)
  assert m["eval/a/accuracy"] == pytest.approx(0.5)
  assert m["eval/b/accuracy"] == pytest.approx(2 / 3)
  assert m["eval/b/accuracy_se"] == pytest.approx(
    np.std([1, 1, 0], ddof=1) / 3**0.5
  )
  assert set(m) == {
    f"eval/{g}accuracy{s}" for g in ("", "a/", "b/") for s in ("", "_se")
  }
  # Without categories: overall only.
  m = evaluation.summarise({"accuracy": values}, [{}] * 5, "eval")
  assert set(m) == {"eval/accuracy", "eval/accuracy_se"}


def test_sft_control_runs_for_the_rl_step_time(tmp_path):
  config = tiny(load_config("grpo_arithmetic.py"))
  assert config.control.enabled
  config.train.steps = 3
  config.train.save_every = 100
  config.control.eval_every = 20
  workdir = str(tmp_path / "run")
  summary = train.run(config, workdir)
  records = metrics_lib.read_metrics(workdir)
  rl = [r for r in records if r["phase"] == "rl"]
  control = [r for r in records if r["phase"] == "control"]
  assert [r["step"] for r in control] == list(range(1, len(control) + 1))
  # It ran at least as long as RL, and stopped at the first evaluation
  # after that.
  rl_seconds = rl[-1]["time/elapsed_s"]
  assert control[-1]["time/elapsed_s"] >= rl_seconds
  assert len(control) % 20 == 0
  assert len(control) == 20 or control[-21]["time/elapsed_s"] < rl_seconds
  evaluated = [r["step"] for r in control if "eval/accuracy" in r]
  assert evaluated == list(range(20, len(control) + 1, 20))
  # Per-category accuracy, the teacher's accuracy, the summary.
  assert {"eval/carry/accuracy", "eval/no_carry/accuracy"} <= set(rl[-1])
  assert 0 < rl[0]["teacher/accuracy"] < 1
  assert summary["control"]["step"] == len(control)
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["after"] == summary["after"]
  table = train.format_summary(summary)
  for row in ("teacher", "after SFT", "after RL (3 steps", "SFT control"):
    assert row in table
  # The README section is written from the workdir.
  readme = tmp_path / "README.md"
  readme.write_text(
    "x\n<!-- BEGIN default-run -->\nold\n<!-- END default-run -->\n"
  )
  subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "experiments", "report.py"),
      f"--workdir={workdir}",
      f"--readme={readme}",
    ],
    check=True,
    timeout=120,
  )
  text = readme.read_text()
  assert "old" not in text and "| after RL (3 steps" in text
  assert "![RL against the SFT control](docs/default-run.png)" in text
  assert (tmp_path / "docs" / "default-run.png").stat().st_size > 1000
  # A rerun finds every phase done and changes nothing.
  again = train.run(config, workdir)
  assert again["control"] == summary["control"]
  assert again["wall_s"] == summary["wall_s"]  # the run that trained
  assert metrics_lib.read_metrics(workdir) == records


def test_accuracy_metric_agrees_with_reward():
  """train/accuracy and eval accuracy count a completion correct exactly
  where the task's reward gives 1.0: a Countdown `\\boxed{}` without
  `<answer>` tags is no answer for either."""
  from rlx import rewards

  completions = [
    "<answer>5-3</answer>",
    "\\boxed{5-3}",
    "<think>t</think> \\boxed{5-3}",
    "<answer>\\boxed{5-3}</answer>",
    "<answer>5+3</answer>",
    "<answer>5-3</answer> \\boxed{5+3}",
    "5-3",
  ]
  n = len(completions)
  fields = {"numbers": [[3, 5]] * n, "target": [2] * n}
  reward = rewards.countdown_reward(["p"] * n, completions, **fields)
  np.testing.assert_array_equal(
    rollout_lib.is_correct(completions, fields), np.equal(reward, 1.0)
  )
  assert list(rollout_lib.is_correct(completions, fields)) == [
    True, False, False, True, False, True, False,
  ]  # fmt: skip
  answers = ["2", "\\boxed{2}", "<answer>2 = 2</answer>", "<answer>1 = 2</a"]
  fields = {"answer": ["2"] * 4}
  reward = rewards.accuracy_reward(["p"] * 4, answers, **fields)
  np.testing.assert_array_equal(
    rollout_lib.is_correct(answers, fields), np.equal(reward, 1.0)
  )


def test_reward_limits_are_checked():
  for key, value, match in [
    ("max_abs", 0.0, r"reward.max_abs=0.0.*\(0, 3.4e38\]"),
    ("max_abs", float("nan"), r"reward.max_abs=nan"),
    ("max_abs", 1e39, r"reward.max_abs=1e\+39"),
    ("memory_limit_mb", -1, r"reward.memory_limit_mb=-1.*>= 0"),
  ]:
    c = load_config("grpo_arithmetic.py")
    c.reward[key] = value
    with pytest.raises(ConfigError, match=match):
      check_config(c, 8)


def test_unimportable_user_reward_fails_before_sft(tmp_path):
  from rlx.rewards import RewardError

  config = tiny(load_config("grpo_arithmetic.py"))
  config.reward.functions = {"mine": "no_such_module_here:score"}
  config.reward.weights = {"mine": 1.0}
  workdir = str(tmp_path / "run")
  with pytest.raises(RewardError, match="no_such_module_here"):
    train.run(config, workdir)
  assert not metrics_lib.read_metrics(workdir)


def test_rl_passes_each_reward_for_normalize_then_sum(tmp_path, monkeypatch):
  """With two reward functions the GRPO batch carries each one's values
  ([N, 2]) and the algorithm the reward section's weights, so that TRL's
  `normalize_then_sum` normalises each within its group before summing."""
  from rlx.algos import advantages as adv_lib

  config = tiny(load_config("grpo_arithmetic.py"))
  config.sft.steps = 0
  config.control.enabled = False
  config.train.steps = 1
  config.reward.weights = {"accuracy": 1.0, "format": 0.25}
  config.algo.options.multi_objective_aggregation = "normalize_then_sum"
  seen = []
  original = rollout_lib.rl_batch

  def spy(trainer, rollout, per_reward):
    batch = original(trainer, rollout, per_reward)
    seen.append((batch["rewards"], rollout.rewards))
    return batch

  monkeypatch.setattr(rollout_lib, "rl_batch", spy)
  train.run(config, str(tmp_path / "run"))
  table, total = seen[0]
  assert table.shape == (len(total), 2)
  np.testing.assert_allclose(
    adv_lib.weighted_total(table, (1.0, 0.25)), total, rtol=1e-6
  )
  algo = config_lib.make_algo(config, 1)
  assert algo.config.reward_weights == (1.0, 0.25)
  G = config.rollout.num_samples
  batch, _ = algo.config.prepare_batch({"rewards": table}, G)
  want, _ = adv_lib.group_advantages(
    table, G, weights=(1.0, 0.25), aggregation="normalize_then_sum"
  )
  np.testing.assert_allclose(batch["advantages"], want, rtol=1e-6)
  config.algo.options.reward_weights = (1.0, 1.0)
  with pytest.raises(ConfigError, match="set the weights in config.reward"):
    config_lib.make_algo(config, 1)
