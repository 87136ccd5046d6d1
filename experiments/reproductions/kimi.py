"""Kimi k1.5 (Kimi Team, 2025): the length penalty, long2short and a
curriculum by difficulty, at toy scale.

  python experiments/reproductions/kimi.py --workdir=runs/kimi [--quick]

Data. The arithmetic task `a±b±c=` of the default run, with its teacher
that drops carries (a third of the problems carry, and there the teacher's
usual answer is wrong), made long-thinking: after its worked steps the
teacher re-checks the last one 0 to `max_rechecks` times, uniformly
(`7+8=5, 5-3=2, wait 5-3=2, wait 5-3=2`). The re-checks are pure
overthinking: they add tokens, never information.

SFT on these traces gives a long-thinking model; from it:

1. Length penalty. The same GRPO run (`grpo_arithmetic`'s settings) with
   and without Kimi's length reward (`rlx.rewards.kimi_length`, on top of
   the accuracy reward): over the k samples of a prompt, lambda = 0.5 -
   (len - min_len) / (max_len - min_len), given to correct samples, and
   min(0, lambda) to wrong ones. Held-out greedy accuracy and response
   length after RL. Kimi's claim: shorter responses at equal accuracy.
2. Long2short by shortest-correct rejection sampling: sample k completions
   of each of `sample_prompts` training prompts from the long-thinking
   model, keep the shortest correct one of each, fine-tune on those;
   against the length-penalty RL, in tokens per correct answer.
3. Curriculum: each training prompt's difficulty is the SFT model's pass
   rate over the same k samples; RL draws prompts with weight 1 - pass
   rate, never the always-solved or never-solved ones
   (`config.curriculum.sampling="pass_rate"`, `rlx.train.curriculum`),
   against uniform sampling (the no-penalty run), in held-out accuracy per
   RL step.

Every arm is `rlx.train.run` from the same exported SFT model.
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
from rlx import rewards, train  # noqa: E402
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


# Data -------------------------------------------------------------------------


def overthink(solution: str, rng: np.random.Generator, max_rechecks: int):
  """The worked solution's think part, then its last step re-checked 0 to
  `max_rechecks` times, uniformly (`7+8=15, 15-3=12, wait 15-3=12`)."""
  think = solution[len("<think>") : solution.index("</think>")]
  last = think.split(", ")[-1]
  return ", ".join(
    [think] + [f"wait {last}"] * int(rng.integers(max_rechecks + 1))
  )


def write_jsonl(path: str, rows) -> str:
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return path


def long_thinking_data(p: dict, workdir: str) -> dict:
  """The task as JSONL files: train with the teacher's long-thinking
  traces, and the held-out prompts; returns the task options."""
  options = dict(base_config().task.options)
  options.update(
    num_operands=p["num_operands"],
    num_train=p["num_train"],
    num_eval=p["num_eval"],
  )
  task = tasks.arithmetic_task(**options)
  rng = np.random.default_rng(0)
  rows = lambda examples, solve: [
    {
      "prompt": e["prompt"],
      "answer": e["answer"],
      "reasoning": solve(e),
      "category": e["category"],
    }
    for e in examples
  ]
  traces = lambda e: overthink(
    tasks.draw_solution(e, rng), rng, p["max_rechecks"]
  )
  data = os.path.join(workdir, "data")
  os.makedirs(data, exist_ok=True)
  train_path = write_jsonl(
    os.path.join(data, "train.jsonl"), rows(task.train, traces)
  )
  eval_path = write_jsonl(
    os.path.join(data, "eval.jsonl"), rows(task.eval, lambda e: "")
  )
  return jsonl_task(train_path, eval_path)


def jsonl_task(train_path: str, eval_path: str) -> dict:
  return dict(
    path=train_path,
    eval_path=eval_path,
    solution_field="reasoning",
    extra_fields=["category"],
  )


# Configs ----------------------------------------------------------------------


def config_for(p: dict, task_options: dict, checkpoint: str = ""):
  """`arithmetic_base` with `grpo_arithmetic`'s algorithm, on the JSONL
  task, greedy held-out evaluation only, from `checkpoint` if given."""
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
  return c


def rl_config(p: dict, task_options: dict, sft_model: str, **changes):
  c = config_for(p, task_options, sft_model)
  c.train.steps = p["rl_steps"]
  c.train.eval_every = p["eval_every"]
  c.train.save_every = p["rl_steps"]
  c.train.export = False
  for key, value in changes.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


# Measurements -----------------------------------------------------------------


def evaluations(workdir: str) -> list[dict]:
  """The RL phase's held-out evaluations (step 0: the starting model)."""
  return [
    r
    for r in metrics_lib.read_metrics(workdir)
    if r["phase"] == "rl" and "eval/accuracy" in r
  ]


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
  records = evaluations(workdir)
  steps = [
    r
    for r in metrics_lib.read_metrics(workdir)
    if r["phase"] == "rl" and "train/response_length" in r
  ]
  late = steps[len(steps) // 2 :]
  return {
    **point(records[-1]),
    # The rollouts' mean length over the second half of RL (all arms draw
    # the same random numbers: a paired comparison).
    "train_length_late": float(
      np.mean([r["train/response_length"] for r in late])
    ),
    "steps": [r["step"] for r in records],
    "accuracy_curve": [r["eval/accuracy"] for r in records],
    "length_curve": [r["eval/response_length"] for r in records],
  }


def shortest_correct(examples, groups: curriculum.Groups, k: int) -> list:
  """Long2short data: per prompt, the shortest of its k samples that is
  correct and well formed (R1 format); prompts with none are left out."""
  rows = []
  for i, e in enumerate(examples):
    texts = groups.texts[i * k : (i + 1) * k]
    good = [
      j
      for j in range(k)
      if groups.correct[i, j] and rewards.has_r1_format(texts[j])
    ]
    if not good:
      continue
    j = min(good, key=lambda j: groups.lengths[i, j])
    think = texts[j][texts[j].index("<think>") + 7 : texts[j].index("</think>")]
    rows.append(
      {
        "prompt": e["prompt"],
        "answer": e["answer"],
        "reasoning": think,
        "category": e["category"],
        "tokens": int(groups.lengths[i, j]),
      }
    )
  return rows


# The reproduction ----------------------------------------------------------


def run(workdir: str, quick: bool):
  p = QUICK if quick else FULL
  task = long_thinking_data(p, workdir)

  # SFT on the long-thinking traces; its export starts every arm.
  sft = config_for(p, task)
  sft.sft.steps = p["sft_steps"]
  sft.train.steps = 0
  train.run(sft, os.path.join(workdir, "sft"))
  sft_model = os.path.join(workdir, "sft", "export")
  sft_point = point(evaluations(os.path.join(workdir, "sft"))[0])

  # 1. The same RL run without and with Kimi's length reward.
  accuracy_only = dict(accuracy_if_format=1.0)
  with_length = dict(accuracy_if_format=1.0, kimi_length=p["length_weight"])
  length_kwargs = dict(kimi_length=dict(correct_fn="accuracy_if_format"))
  runs = {
    "no_penalty": rl_config(p, task, sft_model, reward__weights=accuracy_only),
    "length_penalty": rl_config(
      p,
      task,
      sft_model,
      reward__weights=with_length,
      reward__kwargs=length_kwargs,
    ),
    # 3. The same RL run as no_penalty, drawing prompts by difficulty.
    "by_difficulty": rl_config(
      p,
      task,
      sft_model,
      reward__weights=accuracy_only,
      curriculum__sampling="pass_rate",
      curriculum__num_samples=p["k"],
      curriculum__num_prompts=p["sample_prompts"],
    ),
  }

  # 2. Long2short: k samples of each training prompt from the SFT model
  # (the same samples as the curriculum's pass rates: same key), the
  # shortest correct one kept, SFT on those.
  sampler = train.Trainer(
    config_for(p, task, sft_model), os.path.join(workdir, "samples")
  )
  prompts = sampler.task.train[: p["sample_prompts"]]
  groups = curriculum.sample_groups(
    sampler,
    sampler.initial_params,
    prompts,
    p["k"],
    curriculum.sampling_key(sampler.config.seed),
    sampler.config.rollout.temperature,
  )
  short = shortest_correct(prompts, groups, p["k"])
  if not short:
    raise RuntimeError("no correct sample to fine-tune on: SFT failed?")
  l2s_path = write_jsonl(
    os.path.join(workdir, "data", "long2short.jsonl"), short
  )
  l2s = config_for(p, jsonl_task(l2s_path, task["eval_path"]), sft_model)
  l2s.sft.steps = p["l2s_steps"]
  l2s.sft.learning_rate = p["l2s_learning_rate"]
  l2s.sft.warmup_steps = min(5, p["l2s_steps"])
  l2s.train.steps = 0
  train.run(l2s, os.path.join(workdir, "long2short"))

  for name, config in runs.items():
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
    "pass_rates": {
      k: estimate[k]
      for k in (
        "num_prompts",
        "num_samples",
        "always_solved",
        "never_solved",
        "drawn",
        "mean_pass_rate",
      )
    },
    # The curriculum's estimate and long2short's samples are one sample.
    "pass_rates_match_samples": bool(
      np.allclose(estimate["pass_rates"], rates)
    ),
    "sizes": p,
    "quick": quick,
  }
  results["claims"] = claims(results)
  return results, figure(results, os.path.join(workdir, f"{NAME}.png"))


def claims(r: dict) -> dict:
  """Kimi's claims, measured: length falls by at least 20% with held-out
  accuracy within 3 points; drawing prompts by difficulty learns faster
  than drawing them uniformly. `*_se_points`: one standard error of the
  difference of two arms' accuracies (independent prompts' errors)."""
  base, pen = r["no_penalty"], r["length_penalty"]
  drop = 1 - pen["length"] / base["length"]
  gap = 100 * (pen["accuracy"] - base["accuracy"])
  uni, cur = r["curriculum"]["uniform"], r["curriculum"]["by_difficulty"]
  se = lambda a, b: 100 * float(np.hypot(a["accuracy_se"], b["accuracy_se"]))
  return {
    "length_drop": drop,
    "accuracy_change_points": gap,
    "accuracy_change_se_points": se(base, pen),
    "length_penalty_holds": bool(drop >= 0.2 and abs(gap) <= 3),
    "curriculum_mean_gain_points": 100
    * float(np.mean(cur[1:]) - np.mean(uni[1:])),
    "curriculum_final_gain_points": 100 * (cur[-1] - uni[-1]),
    "curriculum_final_se_points": se(base, r["by_difficulty"]),
  }


# Figure and paragraph --------------------------------------------------------


def figure(r: dict, path: str) -> str:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
  steps = r["no_penalty"]["steps"]
  l2s = r["long2short_sft"]
  for label, key, color in (
    ("RL, accuracy reward only", "no_penalty", "C0"),
    ("RL + Kimi length penalty", "length_penalty", "C3"),
  ):
    a = r[key]
    axes[0].plot(a["steps"], a["length_curve"], "o-", color=color, label=label)
    axes[1].plot(
      a["steps"],
      100 * np.array(a["accuracy_curve"]),
      "o-",
      color=color,
      label=label,
    )
  for ax, value in ((axes[0], l2s["length"]), (axes[1], 100 * l2s["accuracy"])):
    ax.axhline(
      value, color="C2", ls="--", label="long2short: SFT on shortest correct"
    )
  axes[0].set(
    title="Response length (held-out, greedy)",
    xlabel="RL step",
    ylabel="tokens per response",
  )
  axes[1].set(
    title="Held-out greedy accuracy",
    xlabel="RL step",
    ylabel="accuracy (%)",
  )
  curves = r["curriculum"]
  axes[2].plot(
    steps, 100 * np.array(curves["uniform"]), "o-", color="C0", label="uniform"
  )
  axes[2].plot(
    steps,
    100 * np.array(curves["by_difficulty"]),
    "s-",
    color="C1",
    label="by difficulty (1 - SFT pass rate)",
  )
  axes[2].set(
    title="Curriculum: prompts drawn by difficulty",
    xlabel="RL step",
    ylabel="held-out accuracy (%)",
  )
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(
    "Kimi k1.5 (Kimi Team, 2025) at toy scale: length penalty, long2short, "
    "curriculum (0.8M-param model, arithmetic with over-long traces)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def paragraph(r: dict) -> str:
  s, base, pen, l2s = (
    r["sft"],
    r["no_penalty"],
    r["length_penalty"],
    r["long2short_sft"],
  )
  c, p, q = r["claims"], r["sizes"], r["pass_rates"]
  pct = lambda x: f"{100 * x:.1f}%"
  acc = lambda a: f"{pct(a['accuracy'])} +- {pct(a['accuracy_se'])}"
  verdict = (
    "reproduces"
    if c["length_penalty_holds"]
    else "does not reproduce at this scale"
  )
  damage = ""
  drop_points = 100 * (s["accuracy"] - base["accuracy"])
  if drop_points > 2 * 100 * np.hypot(s["accuracy_se"], base["accuracy_se"]):
    damage = (
      f" Both RL arms end below the SFT model, though ({pct(s['accuracy'])}"
      f" -> {pct(base['accuracy'])} without the penalty, "
      f"{pct(pen['accuracy'])} with it): RL at learning rate "
      f"{p['rl_learning_rate']:g} lowered this SFT model's held-out "
      "accuracy, so the claim holds here only against an RL run that lost "
      "accuracy too."
    )
  uni, cur = r["curriculum"]["uniform"], r["curriculum"]["by_difficulty"]
  gain, se = c["curriculum_final_gain_points"], c["curriculum_final_se_points"]
  if gain > 2 * se and c["curriculum_mean_gain_points"] > 0:
    faster = "learns faster here"
  elif abs(gain) <= 2 * se:
    faster = (
      "is not told apart from uniform sampling here (within two standard "
      "errors at the end)"
    )
  else:
    faster = "learns more slowly here"
  lines = [
    "A 0.8M-parameter model is fine-tuned on "
    f"`{'a±b±c=' if p['num_operands'] == 3 else 'a±b='}` traces from a "
    "teacher that drops carries and re-checks its last step 0 to "
    f"{p['max_rechecks']} times (`7+8=5, 5-3=2, wait 5-3=2`), then each arm "
    f"starts from that long-thinking model; held-out greedy accuracy on "
    f"{p['num_eval']} prompts (+- one standard error) and mean response "
    "length in tokens:",
    "",
    "| model | accuracy | length | tokens per correct answer |",
    "| --- | --- | --- | --- |",
  ]
  for label, a in (
    ("SFT (long-thinking)", s),
    (f"RL {p['rl_steps']} steps, accuracy reward only", base),
    (f"RL {p['rl_steps']} steps, + Kimi length penalty", pen),
    (f"long2short: SFT {p['l2s_steps']} steps on the shortest correct", l2s),
  ):
    lines.append(
      f"| {label} | {acc(a)} | {a['length']:.1f} | "
      f"{a['tokens_per_correct']:.1f} |"
    )
  lines += [
    "",
    f"- Length penalty: the response length falls by "
    f"{pct(c['length_drop'])} against the same RL run without it, with "
    f"accuracy {c['accuracy_change_points']:+.1f} points (+- "
    f"{c['accuracy_change_se_points']:.1f}); Kimi's claim "
    f"(at least 20% shorter, accuracy within 3 points) {verdict}." + damage,
    f"- Long2short: fine-tuning on the shortest correct of {p['k']} samples "
    f"of {q['num_prompts']} training prompts ({l2s['train_examples']} had "
    f"a correct one) gives {l2s['tokens_per_correct']:.1f} tokens per "
    f"correct answer, against {pen['tokens_per_correct']:.1f} for the "
    f"length-penalty RL and {s['tokens_per_correct']:.1f} for the SFT "
    "model.",
    f"- Curriculum: of the {q['num_prompts']} prompts estimated, "
    f"{q['always_solved']} were always solved and {q['never_solved']} never "
    f"(pass rate over {q['num_samples']} samples), leaving {q['drawn']} to "
    "draw with weight 1 - pass rate. Held-out accuracy at steps "
    f"{r['curriculum_steps']}: uniform "
    f"{', '.join(pct(x) for x in uni)}; by difficulty "
    f"{', '.join(pct(x) for x in cur)} ("
    f"{c['curriculum_mean_gain_points']:+.1f} points on average after step "
    f"0, {gain:+.1f} +- {se:.1f} at the end): drawing by difficulty "
    f"{faster}.",
  ]
  return "\n".join(lines)


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
