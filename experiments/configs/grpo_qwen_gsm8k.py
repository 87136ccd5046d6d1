"""GRPO on GSM8K from a local Qwen2.5 checkpoint (R1-Zero style).

You supply both paths (nothing is downloaded):
  --config.model.checkpoint=/path/to/Qwen2.5-0.5B-Instruct
  --config.task.options.path=/path/to/gsm8k_train.jsonl
Each JSONL line holds `question` and `answer` (`... #### 72`).

The learning rate, 1e-6 with KL beta 0.04, is the usual one for RL on
0.5B-1.5B instruct models (TRL's and DeepSeek's examples); it is not
measured here, since no checkpoint can be downloaded on our machines.
Check it with `experiments/lr_sweep.py` on yours: a safe rate keeps
held-out accuracy where SFT left it on what the model already solves.
"""

from rlx.train.config import apply_variant, default_config

PROMPT = (
  "{prompt}\nThink step by step inside <think></think>, then give the "
  "final number inside <answer></answer>.\n"
)


def get_config(arg=None):
  c = default_config()
  c.model.checkpoint = "checkpoints/Qwen2.5-0.5B-Instruct"
  c.model.dtype = "bfloat16"
  c.task.name = "jsonl"
  c.task.options = dict(
    path="data/gsm8k_train.jsonl",
    prompt_field="question",
    answer_field="answer",
    answer_format="gsm8k",
    template=PROMPT,
    eval_fraction=0.05,
  )
  c.rollout.prompts_per_step = 16
  c.rollout.num_samples = 16  # R1: G = 16
  c.rollout.max_new_tokens = 512
  c.rollout.max_prompt_len = 256
  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.04)
  c.optimizer.learning_rate = 1e-6
  c.reward.weights = dict(accuracy_if_format=1.0, format=0.1)
  c.train.steps = 500
  c.train.eval_every = 50
  c.train.save_every = 50
  c.eval.num_prompts = 256
  c.eval.num_samples = 4
  return apply_variant(c, arg)
