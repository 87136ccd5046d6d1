"""Kimi k1.5 (Kimi Team, 2025): the length penalty, long2short and a
curriculum by difficulty, at toy scale.

  python experiments/reproductions/kimi.py --workdir=runs/kimi [--quick]

Data: the default run's task `a±b±c=` and its carry-dropping teacher,
made long-thinking: after its worked steps the teacher re-checks the last
one 0 to `max_rechecks` times (`7+8=5, 5-3=2, wait 5-3=2`), tokens that
add no information. SFT on these traces gives the long-thinking model
that every arm (`rlx.train.run`) starts from:

1. Length penalty: the same GRPO run with and without Kimi's length
   reward (`rlx.rewards.kimi_length` on top of accuracy: lambda = 0.5 -
   (len - min_len) / (max_len - min_len) over a prompt's k samples, given
   to correct samples, min(0, lambda) to wrong ones). Kimi's claim:
   shorter responses at equal held-out accuracy.
2. Long2short: k samples of each of `sample_prompts` training prompts,
   the shortest correct one of each kept, SFT on those; in tokens per
   correct answer against the length-penalty RL.
3. Curriculum: RL draws prompts with weight 1 - pass rate (the SFT
   model's, over the same k samples), never the always- or never-solved
   ones (`config.curriculum.sampling="pass_rate"`), against uniform
   sampling, in held-out accuracy per RL step.
"""

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
sys.path.insert(0, ROOT)

from experiments.configs.arithmetic_base import base_config  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from experiments.reproductions.reports.kimi import (  # noqa: E402
  claims,
  figure,
  paragraph,
)
from rlx import data, rewards, train  # noqa: E402
from rlx.data import tasks  # noqa: E402
from rlx.train import curriculum  # noqa: E402
from rlx.train import metrics as metrics_lib  # noqa: E402

NAME = "kimi"

# Sizes and the paper's knobs; --quick shrinks the sizes, not the method.
FULL = dict(
  num_train=3400,
  num_eval=512,
  num_operands=3,
  max_rechecks=3,  # the teacher re-checks its last step 0..3 times
  max_new_tokens=56,
  sft_steps=250,
  rl_steps=30,
  eval_every=10,
  rl_learning_rate=3e-5,  # the default run's RL rate (README, lr sweep)
  length_weight=1.0,  # Kimi's length reward, added to accuracy (0 or 1)
  k=8,  # samples per prompt: rejection sampling and pass rates
  sample_prompts=512,  # training prompts sampled k times
  l2s_steps=40,  # long2short fine-tuning on the shortest correct samples
  l2s_learning_rate=3e-4,
)
QUICK = dict(
  FULL,
  num_eval=128,
  sft_steps=150,
  rl_steps=10,
  eval_every=5,
  sample_prompts=64,
  l2s_steps=15,
)
PASS_RATE_FIELDS = (  # of the curriculum's estimate, kept in results.json
  "num_prompts num_samples always_solved never_solved drawn mean_pass_rate"
).split()


def overthink(solution: str, rng: np.random.Generator, max_rechecks: int):
  """The worked solution's think part, then its last step re-checked 0 to
  `max_rechecks` times, uniformly (`7+8=15, 15-3=12, wait 15-3=12`)."""
  think = solution[len("<think>") : solution.index("</think>")]
  last = think.split(", ")[-1]
  return ", ".join(
    [think] + [f"wait {last}"] * int(rng.integers(max_rechecks + 1))
  )


def row(example: dict, reasoning: str, **extra) -> dict:
  """A JSONL record: the example's prompt, answer and category, with
  `reasoning` as its worked solution."""
  keys = ("prompt", "answer", "category")
  return {**{k: example[k] for k in keys}, "reasoning": reasoning, **extra}


def long_thinking_data(p: dict, workdir: str) -> dict:
  """The task as JSONL files: train with the teacher's long-thinking
  traces, and the held-out prompts; returns the task options."""
  sizes = {k: p[k] for k in ("num_operands", "num_train", "num_eval")}
  task = tasks.arithmetic_task(**dict(base_config().task.options, **sizes))
  rng = np.random.default_rng(0)
  trace = lambda e: overthink(
    tasks.draw_solution(e, rng), rng, p["max_rechecks"]
  )
  path = lambda name: os.path.join(workdir, "data", name)
  os.makedirs(path(""), exist_ok=True)
  return jsonl_task(
    data.write_jsonl(
      path("train.jsonl"), [row(e, trace(e)) for e in task.train]
    ),
    data.write_jsonl(path("eval.jsonl"), [row(e, "") for e in task.eval]),
  )


def jsonl_task(train_path: str, eval_path: str) -> dict:
  return dict(
    path=train_path,
    eval_path=eval_path,
    solution_field="reasoning",
    extra_fields=["category"],
  )


def config_for(p: dict, task_options: dict, checkpoint="", changes=None):
  """`arithmetic_base` with `grpo_arithmetic`'s algorithm, on the JSONL
  task, greedy held-out evaluation only, from `checkpoint` if given, with
  `changes` ({"section.key": value})."""
  c = base_config()
  # Room for the re-checks' words: the size the measured run asked for (the
  # text gives fewer pieces; `train_sentencepiece` warns how many).
  c.tokenizer.vocab_size = 96
  c.task.name = "jsonl"
  c.task.options = task_options
  c.rollout.max_new_tokens = p["max_new_tokens"]
  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
  c.optimizer.learning_rate = p["rl_learning_rate"]
  c.eval.num_prompts = p["num_eval"]
  c.eval.num_samples = 0
  c.train.progress = False
  if checkpoint:  # the exported SFT model and its tokenizer
    c.model.checkpoint = checkpoint
    c.sft.steps = 0
  c.update_from_flattened_dict(changes or {})
  return c


def evaluations(workdir: str) -> list[dict]:
  """The RL phase's held-out evaluations (step 0: the starting model)."""
  return metrics_lib.read_metrics(workdir, phase="rl", having="eval/accuracy")


def point(record: dict) -> dict:
  acc, length = record["eval/accuracy"], record["eval/response_length"]
  return {
    "accuracy": acc,
    "length": length,
    "accuracy_se": record["eval/accuracy_se"],
    "carry_accuracy": record.get("eval/carry/accuracy"),
    # Greedy: one completion per prompt, so tokens spent per correct one.
    "tokens_per_correct": length / acc if acc else float("inf"),
  }


def arm(workdir: str) -> dict:
  records, curve = evaluations(workdir), metrics_lib.curve
  key = "train/response_length"
  lengths = curve(
    metrics_lib.read_metrics(workdir, phase="rl", having=key), key
  )
  return {
    **point(records[-1]),
    # The rollouts' mean length over the second half of RL (all arms draw
    # the same random numbers: a paired comparison).
    "train_length_late": float(np.mean(lengths[len(lengths) // 2 :])),
    "steps": [r["step"] for r in records],
    "accuracy_curve": curve(records, "eval/accuracy"),
    "length_curve": curve(records, "eval/response_length"),
  }


def shortest_correct(examples, groups: curriculum.Groups, k: int) -> list:
  """Long2short data: per prompt, the shortest of its k samples that is
  correct and well formed (R1 format); prompts with none are left out."""
  best = groups.shortest_correct(rewards.has_r1_format)
  rows = []
  for i, (e, j) in enumerate(zip(examples, best)):
    if j is not None:
      text = groups.texts[i * k + j]
      think = text[text.index("<think>") + 7 : text.index("</think>")]
      rows.append(row(e, think, tokens=int(groups.lengths[i, j])))
  return rows


def run(workdir: str, quick: bool):
  p = QUICK if quick else FULL
  task = long_thinking_data(p, workdir)

  # SFT on the long-thinking traces; its export starts every arm.
  sft = config_for(p, task)
  sft.sft.steps = p["sft_steps"]
  sft_model = common.sft_only(sft, os.path.join(workdir, "sft"))
  sft_point = point(evaluations(os.path.join(workdir, "sft"))[0])

  # 1. The same RL run without and with Kimi's length reward.
  accuracy_only = {"reward.weights": dict(accuracy_if_format=1.0)}
  rl = {
    "train.steps": p["rl_steps"],
    "train.save_every": p["rl_steps"],
    "train.eval_every": p["eval_every"],
    "train.export": False,
  }
  runs = {
    "no_penalty": accuracy_only,
    "length_penalty": {
      "reward.weights": dict(
        accuracy_if_format=1.0, kimi_length=p["length_weight"]
      ),
      "reward.kwargs": dict(kimi_length=dict(correct_fn="accuracy_if_format")),
    },
    # 3. The same RL run as no_penalty, drawing prompts by difficulty.
    "by_difficulty": {
      **accuracy_only,
      "curriculum.sampling": "pass_rate",
      "curriculum.num_samples": p["k"],
      "curriculum.num_prompts": p["sample_prompts"],
    },
  }

  # 2. Long2short: k samples of each training prompt from the SFT model
  # (the same samples as the curriculum's pass rates: same key), the
  # shortest correct one kept, SFT on those.
  sampler = train.Trainer(
    config_for(p, task, sft_model), os.path.join(workdir, "samples")
  )
  prompts = sampler.task.train[: p["sample_prompts"]]
  key = curriculum.sampling_key(sampler.config.seed)
  temperature = sampler.config.rollout.temperature
  groups = curriculum.sample_groups(
    sampler, sampler.initial_params, prompts, p["k"], key, temperature
  )
  short = shortest_correct(prompts, groups, p["k"])
  if not short:
    raise RuntimeError("no correct sample to fine-tune on: SFT failed?")
  l2s_path = data.write_jsonl(
    os.path.join(workdir, "data", "long2short.jsonl"), short
  )
  l2s = {
    "sft.steps": p["l2s_steps"],
    "sft.learning_rate": p["l2s_learning_rate"],
    "sft.warmup_steps": min(5, p["l2s_steps"]),
  }
  l2s_task = jsonl_task(l2s_path, task["eval_path"])
  common.sft_only(
    config_for(p, l2s_task, sft_model, l2s),
    os.path.join(workdir, "long2short"),
  )

  for name, changes in runs.items():
    config = config_for(p, task, sft_model, {**rl, **changes})
    train.run(config, os.path.join(workdir, name))
  arms = {name: arm(os.path.join(workdir, name)) for name in runs}
  with open(os.path.join(workdir, "by_difficulty", curriculum.FILE)) as f:
    estimate = json.load(f)
  rates = groups.correct.mean(axis=1)
  sampled_lengths = groups.lengths[groups.correct]

  results = {
    "sft": sft_point,
    "no_penalty": arms["no_penalty"],
    "length_penalty": arms["length_penalty"],
    "long2short_sft": {
      **point(evaluations(os.path.join(workdir, "long2short"))[0]),
      "train_examples": len(short),
      "train_mean_length": float(np.mean([r["tokens"] for r in short])),
      "sampled_correct_mean_length": float(sampled_lengths.mean()),
    },
    "curriculum": {
      "uniform": arms["no_penalty"]["accuracy_curve"],
      "by_difficulty": arms["by_difficulty"]["accuracy_curve"],
    },
    "curriculum_steps": arms["no_penalty"]["steps"],
    "by_difficulty": arms["by_difficulty"],
    "pass_rates": {k: estimate[k] for k in PASS_RATE_FIELDS},
    # The curriculum's estimate and long2short's samples are one sample.
    "pass_rates_match_samples": bool(
      np.allclose(estimate["pass_rates"], rates)
    ),
    "sizes": p,
    "quick": quick,
  }
  results["claims"] = claims(results)
  return results, figure(results, os.path.join(workdir, f"{NAME}.png"))


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
