"""DeepSeek R1-Zero, at toy scale: RL from a base model with rule-based
rewards only, no SFT on the answer format.

  python experiments/reproductions/r1_zero.py --workdir=runs/r1_zero [--quick]

1. Pretrain a base model on plain domain text: worked arithmetic written
   as prose ("7+8-3=? 7+8=15, 15-3=12. So the answer is 12."). Like text
   crawled from the web, a minority of the documents (`TAGGED_SHARE`)
   happen to use `<think>...</think><answer>...</answer>` markup; none has
   the instruction the RL prompt carries.
2. GRPO from that base with R1's rule-based rewards (accuracy of the
   `<answer>` plus the format reward), prompts that give the instruction
   "Reply <think>...</think><answer>...</answer>" before the problem.
3. Track reward, held-out accuracy, format rate and response length per
   RL step (R1's Figures 2 and 3), and keep a few completions from before
   and after RL.
"""

import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(
  0,
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

from experiments.configs import arithmetic_base  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from experiments.reproductions.reports.r1_zero import (  # noqa: E402
  figure,
  paragraph,
)
from rlx.data import tasks as tasks_lib  # noqa: E402
from rlx.data import tokenizer as tokenizer_lib  # noqa: E402
from rlx.train import metrics as metrics_lib  # noqa: E402
from rlx.train import phases, rollout, trainer  # noqa: E402
from rlx.train.config import make_sft_algo  # noqa: E402

NAME = "r1_zero"
TAGGED_SHARE = 0.2  # of the pretraining documents
SAMPLES = 4  # completions shown from before and after RL
# R1-Zero's template: the instruction, then the problem for the model to
# continue from (the base model has seen problems, never the instruction).
TEMPLATE = "Reply <think>...</think><answer>...</answer>: {expression}=?"
STEP = re.compile(r"\d+[+-]\d+=-?\d+")  # one worked step, as `7+8=15`


def get_config(quick: bool):
  c = arithmetic_base.base_config()
  # The default run's problems, written by an exact teacher.
  c.task.options = dict(
    c.task.options, template=TEMPLATE, teacher="exact", teacher_rate=0.0
  )
  c.tokenizer.vocab_size = 160
  c.sft.steps = 300 if quick else 900  # the base model's pretraining
  c.rollout.max_new_tokens = 40
  c.rollout.max_prompt_len = 48
  c.reward.weights = dict(accuracy=1.0, format=0.5)
  c.optimizer.learning_rate = 1e-4
  c.train.steps = 20 if quick else 100
  c.train.eval_every = 5 if quick else 10
  c.train.save_every = c.train.steps
  c.eval.num_prompts = 64 if quick else 256
  c.eval.num_samples = 0
  if quick:
    c.rollout.prompts_per_step = 8
  return c


def pretraining_corpus(examples, rng: np.random.Generator) -> list[dict]:
  """Plain worked solutions, a `TAGGED_SHARE` of them with R1 markup, as
  whole documents (empty prompt: the loss covers every token)."""
  docs = []
  for ex in examples:
    steps = re.fullmatch(r"<think>(.*)</think>.*", ex["solution"]).group(1)
    if rng.random() < TAGGED_SHARE:
      body = f"<think>{steps}</think><answer>{ex['answer']}</answer>"
    else:
      body = f"{steps}. So the answer is {ex['answer']}."
    docs.append({"prompt": "", "solution": f"{ex['expression']}=?{body}"})
  return docs


def train_tokenizer(config, corpus, workdir: str) -> str:
  """A tokenizer for the corpus and the RL prompts, saved in workdir."""
  path = os.path.join(workdir, "tokenizer")
  if not os.path.exists(os.path.join(path, tokenizer_lib.SP_MODEL)):
    task = tasks_lib.make_task("arithmetic", **dict(config.task.options))
    texts = [d["solution"] for d in corpus] + [e["prompt"] for e in task.train]
    tok = tokenizer_lib.train_sentencepiece(
      texts,
      config.tokenizer.vocab_size,
      user_defined_symbols=trainer.TASK_SYMBOLS,
    )
    tok.save(path)
  return path


def samples(t, params, key) -> list[str]:
  """One sampled completion (temperature 1) of each held-out prompt."""
  examples = t.task.eval[: t.config.eval.num_prompts]
  return rollout.generate(t, params, examples, key, num_samples=1).texts


def rechecks(text: str) -> bool:
  """Whether a completion works some step twice (a self-check)."""
  steps = STEP.findall(text)
  return len(steps) != len(set(steps))


def run(workdir: str, quick: bool):
  config = get_config(quick)
  task = tasks_lib.make_task("arithmetic", **dict(config.task.options))
  corpus = pretraining_corpus(task.train, np.random.default_rng(0))
  config.tokenizer.path = train_tokenizer(config, corpus, workdir)
  t = trainer.Trainer(config, workdir)
  writer = metrics_lib.MetricsWriter(workdir)
  base, _ = phases.supervised_phase(
    t,
    writer,
    phase="pretrain",
    params=t.initial_params,
    algo=make_sft_algo(config),
    data_seed=config.seed + 1,
    steps=config.sft.steps,
    examples=corpus,
  )
  key = trainer.stream(config.seed, "samples")
  before = samples(t, base, key)
  rl_params, _ = phases.run_rl(t, jax.tree.map(jnp.copy, base), writer)
  after = samples(t, rl_params, key)
  writer.close()
  shown = lambda texts: [
    f"{e['prompt']} -> {x}" for e, x in zip(t.task.eval, texts[:SAMPLES])
  ]

  rl = metrics_lib.read_metrics(workdir, phase="rl")
  train = [r for r in rl if "train/reward" in r]
  evals = [r for r in rl if "eval/accuracy" in r]
  results = {
    "steps": [r["step"] for r in train],
    "reward": [r["train/reward"] for r in train],
    "accuracy": [r["train/accuracy"] for r in train],
    "response_length": [r["train/response_length"] for r in train],
    "format_rate": [r["train/reward/format"] for r in train],
    "eval_steps": [r["step"] for r in evals],
    "eval_accuracy": [r["eval/accuracy"] for r in evals],
    "eval_accuracy_se": [r["eval/accuracy_se"] for r in evals],
    "pretraining_tagged_share": TAGGED_SHARE,
    "samples_before": shown(before),
    "samples_after": shown(after),
    "recheck_rate_before": float(np.mean([rechecks(x) for x in before])),
    "recheck_rate_after": float(np.mean([rechecks(x) for x in after])),
  }
  fifth = max(1, len(train) // 5)
  results["reward_first_fifth"] = float(np.mean(results["reward"][:fifth]))
  results["reward_last_fifth"] = float(np.mean(results["reward"][-fifth:]))
  return results, figure(results, os.path.join(workdir, f"{NAME}.png"))


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
