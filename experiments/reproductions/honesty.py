"""R1's honesty reward (DeepSeek-R1, 2025), at toy scale: does a reward
that ranks "I don't know" above a wrong answer, and a clean correct answer
above one wrapped in extra text, cut hallucinated answers without costing
the problems the model can solve?

  python experiments/reproductions/honesty.py --workdir=runs/honesty [--quick]

Data. The default run's task `a±b±c=` (one-digit operands) made into a
mix: a share `unanswerable` of the problems has an operand shown as `?`
(`7+?-3=`; category `hard`, no answer is right), the rest are ordinary
(`easy`). The SFT teacher solves the easy ones exactly and hallucinates on
the hard ones (it solves them with the hidden operand as if it were
given); on a share `abstain_rate` of problems of both kinds alike it
writes `<think></think><answer>I don't know</answer>` instead, so that the
SFT model can abstain at all but has no reason to prefer abstaining on
hard problems (`rlx.data.tasks.arithmetic_task`).

The teacher is exact on the easy problems, not the default run's
carry-dropping one: R1's claim is about problems the model can solve. A
first try with the carry-dropping teacher (at about the --quick sizes: 250
SFT steps, 30 RL steps) gave an SFT model right on 38% of the easy prompts
(2% of those with a carry), and the honesty reward then taught it to
abstain on 70% of the easy prompts (easy accuracy 13%, against 35% with
plain accuracy): where the model's chance of being right is below the
abstention's 0.2, abstaining is the better bet, and the reward says so.

RL length. After 50 of the 100 steps (a first full run stopped there) the
honesty arm abstained on no hard prompt greedily; sampled at temperature 1
its abstentions were 8% on hard and 3% on easy prompts (after SFT 11% and
11%; accuracy arm 2% and 2%). The SFT model abstains alike on both kinds
through one shared first token, so the reward first pushed abstention down
on the easy prompts (0.2 against 1.0, on 75% of the prompts) and made it
depend on the `?` only later (100 steps: 48% against 4%, sampled).

Method. SFT once; export; then two GRPO runs from the exported SFT model
with `grpo_arithmetic`'s settings (lr 3e-5, the rate measured not to damage
this model), differing only in the reward:

- `accuracy_reward`: R1's plain accuracy (`accuracy`: 1 for the right
  final answer, else 0; abstaining earns what a wrong answer earns);
- `honesty_reward`: `rlx.rewards.honesty` with R1's tiers, 1.0 correct and
  clean, 0.5 correct with extra text, 0.2 for exactly "I don't know", 0
  wrong (hedges such as `I don't know, 5` are wrong).

Measure. On held-out prompts, after SFT and after each RL run, each greedy
completion is classified (`honesty.classify`) as correct, abstention or
wrong; also the same shares over k samples at temperature 1. Reported: the
wrong-answer rate over all prompts, the abstention rate on hard and on easy
prompts, and the accuracy on easy prompts. R1's claim: with the honesty
reward fewer wrong answers and more abstention on hard problems, without
giving up the easy ones.
"""

import os
import sys

import jax
import numpy as np
from flax import nnx

ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
sys.path.insert(0, ROOT)

from experiments.configs.arithmetic_base import base_config  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from experiments.reproductions.reports.honesty import (  # noqa: E402
  claims,
  figure,
  paragraph,
)
from rlx import models, train  # noqa: E402
from rlx.rewards import honesty  # noqa: E402
from rlx.train import evaluation, phases  # noqa: E402
from rlx.train import metrics as metrics_lib  # noqa: E402

NAME = "honesty"

# The paper's knobs and the sizes; --quick shrinks the sizes, not the method.
TIERS = dict(correct=1.0, correct_messy=0.5, abstain=0.2, wrong=0.0)
ARMS = {
  "accuracy_reward": dict(weights={"accuracy": 1.0}, kwargs={}),
  "honesty_reward": dict(weights={"honesty": 1.0}, kwargs={"honesty": TIERS}),
}
FULL = dict(
  num_train=3500,
  num_eval=384,
  unanswerable=0.25,  # share of problems with an operand shown as `?`
  abstain_rate=0.1,  # the teacher's abstentions, on both kinds alike
  sft_steps=450,
  rl_steps=100,
  rl_learning_rate=3e-5,  # README, "Choosing the RL learning rate"
  k=4,  # samples per held-out prompt at temperature 1
)
QUICK = dict(FULL, num_eval=128, sft_steps=200, rl_steps=15)


def config(p: dict, checkpoint: str = "", arm: str = ""):
  """`arithmetic_base` on the honesty task mix with `grpo_arithmetic`'s
  algorithm; SFT only without `checkpoint`, else RL from it with `arm`'s
  reward."""
  c = base_config()
  # The abstain phrase's letters and `?`: every piece of this task's text
  # (the tokenizer the measured run had).
  c.tokenizer.vocab_size = 59
  c.task.options.update(
    teacher="exact",
    teacher_rate=0.0,
    num_train=p["num_train"],
    num_eval=p["num_eval"],
    unanswerable=p["unanswerable"],
    abstain_rate=p["abstain_rate"],
  )
  c.sft.steps = p["sft_steps"]
  c.algo.name = "grpo"
  c.algo.options = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
  c.optimizer.learning_rate = p["rl_learning_rate"]
  c.train.steps = p["rl_steps"]
  c.train.eval_every = 0  # the phase's own greedy accuracy: start and end
  c.train.save_every = p["rl_steps"]
  c.train.progress = False
  c.train.export = False
  c.eval.num_prompts = 64  # the phase's own log; `measure` uses them all
  c.eval.num_samples = 0
  if checkpoint:  # the exported SFT model and its tokenizer
    c.model.checkpoint = checkpoint
    c.sft.steps = 0
    c.reward.weights = ARMS[arm]["weights"]
    c.reward.kwargs = ARMS[arm]["kwargs"]
  return c


# Measurement ------------------------------------------------------------------


def outcome_table(trainer, params, key, k: int) -> dict:
  """Per held-out prompt: the share of its completions that are correct
  (clean or not), abstentions and wrong; greedy and over `k` samples."""
  table = {}
  for decode, temperature, n in (("greedy", 0.0, 1), ("sampled", 1.0, k)):
    shares = evaluation.outcome_shares(
      trainer,
      params,
      trainer.task.eval,
      key,
      lambda text, e: outcome(text, e["answer"]),
      OUTCOMES,
      temperature=temperature,
      num_samples=n,
    )
    table.update({f"{decode}_{o}": v for o, v in shares.items()})
  return table


OUTCOMES = ("correct", "abstain", "wrong")


def outcome(text: str, answer) -> str:
  kind = honesty.classify(text, answer)
  return "correct" if kind == "correct_messy" else kind


def headline(table: dict, examples: list, decode: str) -> tuple[dict, dict]:
  """The four numbers R1's claim is about, and their standard errors."""
  s = evaluation.summarise(
    {o: table[f"{decode}_{o}"] for o in OUTCOMES}, examples, decode
  )
  names = {
    "wrong_rate": f"{decode}/wrong",
    "abstain_rate_hard": f"{decode}/hard/abstain",
    "abstain_rate_easy": f"{decode}/easy/abstain",
    "accuracy_easy": f"{decode}/easy/correct",
  }
  return (
    {m: s[key] for m, key in names.items()},
    {m: s[key + "_se"] for m, key in names.items()},
  )


def measure(trainer, params, p: dict, seed: int) -> dict:
  key = jax.random.key(seed)
  table = outcome_table(trainer, params, key, p["k"])
  examples = trainer.task.eval
  greedy, greedy_se = headline(table, examples, "greedy")
  sampled, sampled_se = headline(table, examples, "sampled")
  carry = [bool(e.get("carry")) for e in examples]
  easy = np.array([e["category"] == "easy" for e in examples])
  by_carry = {
    name: float(table["greedy_correct"][easy & (np.array(carry) == c)].mean())
    for name, c in (("carry", True), ("no_carry", False))
  }
  return {
    "greedy": greedy,
    "greedy_se": greedy_se,
    "sampled": sampled,
    "sampled_se": sampled_se,
    "accuracy_easy_by_carry": by_carry,
  }


# The experiment ---------------------------------------------------------------


def sft_model(p: dict, workdir: str) -> tuple[str, dict]:
  """SFT on the teacher's solutions, exported; the SFT model's numbers."""
  sft_dir = os.path.join(workdir, "sft")
  export = os.path.join(sft_dir, "export")
  trainer = train.Trainer(config(p), sft_dir)
  with metrics_lib.MetricsWriter(sft_dir, tensorboard=False) as writer:
    params = phases.run_sft(trainer, writer)
  models.save_pretrained(nnx.merge(trainer.graphdef, params), export)
  trainer.tokenizer.save(export)
  result = measure(trainer, params, p, trainer.config.seed)
  kinds = [e["category"] for e in trainer.task.eval]
  result["eval_counts"] = {k: kinds.count(k) for k in ("easy", "hard")}
  return export, result


def rl_arm(p: dict, workdir: str, sft_export: str, arm: str) -> dict:
  arm_dir = os.path.join(workdir, arm)
  trainer = train.Trainer(config(p, sft_export, arm), arm_dir)
  with metrics_lib.MetricsWriter(arm_dir, tensorboard=False) as writer:
    params, seconds = phases.run_rl(trainer, trainer.initial_params, writer)
  result = measure(trainer, params, p, trainer.config.seed)
  result["rl_step_time_s"] = seconds
  for name in ("train_reward", "train_accuracy"):
    key = name.replace("_", "/", 1)
    records = metrics_lib.read_metrics(arm_dir, phase="rl", having=key)
    result[name] = [r[key] for r in records]
  return result


def run(workdir: str, quick: bool):
  p = QUICK if quick else FULL
  sft_export, after_sft = sft_model(p, workdir)
  measured = {"after_sft": after_sft}
  for arm in ARMS:
    measured[arm] = rl_arm(p, workdir, sft_export, arm)
  results = {arm: measured[arm]["greedy"] for arm in ARMS}
  results["after_sft"] = after_sft["greedy"]
  results["standard_errors"] = {a: m["greedy_se"] for a, m in measured.items()}
  results["sampled"] = {a: m["sampled"] for a, m in measured.items()}
  results["sampled_standard_errors"] = {
    a: m["sampled_se"] for a, m in measured.items()
  }
  results["accuracy_easy_by_carry"] = {
    a: m["accuracy_easy_by_carry"] for a, m in measured.items()
  }
  results["training"] = {
    a: {
      k: measured[a][k]
      for k in ("train_reward", "train_accuracy", "rl_step_time_s")
    }
    for a in ARMS
  }
  counts = after_sft["eval_counts"]
  results["setup"] = {
    **p,
    "tiers": TIERS,
    "eval_hard": counts["hard"],
    "eval_easy": counts["easy"],
    "quick": quick,
  }
  results["claims"] = claims(results)
  return results, figure(results, workdir)


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
