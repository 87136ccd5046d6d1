"""The embedded default: a tiny model learns integer arithmetic on CPU.

A short SFT warm-up on worked solutions, then GRPO with the R1 rewards
(accuracy counted only when the format holds, plus a small format bonus).
No downloads: the tokenizer is trained on the task's text.
"""

from rlx.train.config import apply_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.seed = 0
  c.model.preset = "small"
  c.tokenizer.vocab_size = 96
  c.task.name = "arithmetic"
  c.task.options = dict(digits=2, num_operands=2, num_train=20000, num_eval=256)

  c.sft.steps = 60
  c.sft.batch_size = 64
  c.sft.learning_rate = 3e-3
  c.sft.warmup_steps = 10

  c.rollout.prompts_per_step = 16
  c.rollout.num_samples = 8
  c.rollout.max_new_tokens = 40
  c.rollout.temperature = 1.0
  c.rollout.max_prompt_len = 32

  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 5

  c.reward.weights = dict(accuracy_if_format=1.0, format=0.1)

  c.train.steps = 120
  c.train.eval_every = 20
  c.train.save_every = 20
  c.eval.num_prompts = 256
  c.eval.num_samples = 4
  return apply_variant(c, arg)
