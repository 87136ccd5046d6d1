"""End to end: GRPO goes beyond its SFT teacher and beats the equal-compute
SFT control (slow; a shortened version of the embedded default)."""

import importlib.util
import os

import pytest

from rlx import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_config():
  path = os.path.join(ROOT, "experiments/configs/grpo_arithmetic.py")
  spec = importlib.util.spec_from_file_location("grpo_arithmetic", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.slow
def test_grpo_goes_beyond_the_teacher_and_beats_the_sft_control(tmp_path):
  """The default run, shortened: SFT on the carry-dropping teacher, then
  30 GRPO steps, then the SFT control for the same step time, evaluated
  greedily on all 256 held-out prompts. RL must lift accuracy on the carry
  problems (the teacher's error class) by at least 20 points and by 4
  standard errors, and end above the SFT control overall by 2 standard
  errors."""
  config = default_config()
  config.sft.steps = SFT_STEPS
  config.train.steps = 30
  config.train.eval_every = 0
  config.train.export = False
  config.train.progress = False
  config.eval.num_samples = 0
  config.control.eval_every = 10
  summary = train.run(config, str(tmp_path))
  before, after, control = (summary[k] for k in ("before", "after", "control"))
  print(train.format_summary(summary))
  gain = after["eval/carry/accuracy"] - before["eval/carry/accuracy"]
  se = max(after["eval/carry/accuracy_se"], before["eval/carry/accuracy_se"])
  assert gain >= max(0.2, 4 * se), train.format_summary(summary)
  margin = after["eval/accuracy"] - control["eval/accuracy"]
  assert margin >= 2 * after["eval/accuracy_se"], train.format_summary(summary)


SFT_STEPS = 300
