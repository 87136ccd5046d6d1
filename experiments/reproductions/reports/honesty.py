"""The honesty reproduction's claims, figure and README paragraph."""

import os

import numpy as np

from experiments.reproductions import reports
from experiments.reproductions.reports import pct

LABELS = {
  "after_sft": "after SFT",
  "accuracy_reward": "RL, accuracy reward",
  "honesty_reward": "RL, honesty reward",
}
METRICS = {
  "wrong_rate": "wrong answers\n(all prompts)",
  "abstain_rate_hard": "abstentions\n(hard prompts)",
  "abstain_rate_easy": "abstentions\n(easy prompts)",
  "accuracy_easy": "accuracy\n(easy prompts)",
}


def claims(results: dict) -> dict:
  """R1's claim, tested on the greedy numbers, each part by more than two
  standard errors of the difference between the arms (the arms' errors
  taken as independent, which is conservative: they answer the same
  prompts): fewer wrong answers, more abstention on hard prompts, and easy
  accuracy not lower."""
  acc, hon = results["accuracy_reward"], results["honesty_reward"]
  se = results["standard_errors"]

  def margin(name):
    both = (se["accuracy_reward"][name], se["honesty_reward"][name])
    return hon[name] - acc[name], 2 * float(np.hypot(*both))

  wrong, wrong_2se = margin("wrong_rate")
  hard, hard_2se = margin("abstain_rate_hard")
  easy, easy_2se = margin("accuracy_easy")
  return {
    "fewer_wrong": bool(wrong < -wrong_2se),
    "more_abstain_hard": bool(hard > hard_2se),
    "easy_kept": bool(easy >= -easy_2se),
  }


def figure(results: dict, workdir: str) -> str:
  plt = reports.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
  panels = (
    (results, results["standard_errors"], "greedy answer"),
    (
      results["sampled"],
      results["sampled_standard_errors"],
      "samples at temperature 1",
    ),
  )
  x = np.arange(len(METRICS))
  width = 0.27
  for ax, (values, ses, title) in zip(axes, panels):
    for i, (model, label) in enumerate(LABELS.items()):
      ax.bar(
        x + (i - 1) * width,
        [100 * values[model][m] for m in METRICS],
        width,
        yerr=[100 * ses[model][m] for m in METRICS],
        capsize=3,
        label=label,
      )
    ax.set_xticks(x, list(METRICS.values()), fontsize=8)
    ax.set_title(f"held-out prompts, {title}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
  axes[0].set_ylabel("share of prompts (%), +- one standard error")
  axes[0].legend(fontsize=8)
  fig.suptitle(
    "DeepSeek-R1's honesty reward (clean 1.0 > messy 0.5 > "
    '"I don\'t know" 0.2 > wrong 0) against plain accuracy, from one SFT '
    "model"
  )
  return reports.save(fig, os.path.join(workdir, "honesty.png"), dpi=120)


def paragraph(results: dict) -> str:
  s, se = results["setup"], results["standard_errors"]
  rows = []
  for model, label in LABELS.items():
    cells = [
      f"{pct(results[model][m])} +- {pct(se[model][m])}" for m in METRICS
    ]
    rows.append(f"| {label} | " + " | ".join(cells) + " |")
  header = "|  | " + " | ".join(m.replace("\n", " ") for m in METRICS.values())
  table = "\n".join([header + " |", "| --- " * (len(METRICS) + 1) + "|", *rows])
  acc, hon = results["accuracy_reward"], results["honesty_reward"]
  sft = results["after_sft"]
  c = results["claims"]
  verdict = (
    "R1's claim reproduces"
    if all(c.values())
    else "R1's claim does not fully reproduce here"
  )
  parts = [
    f"The default run's task `a±b±c=` with {pct(s['unanswerable'])} of the "
    "problems made unanswerable (an operand shown as `?`, category `hard`; "
    "no answer is right). The SFT data: the teacher's exact worked "
    "solutions on the easy problems and, on the hard ones, solutions with "
    "the hidden operand used as if it were given (hallucinated answers); on "
    f"{pct(s['abstain_rate'])} of problems of both kinds alike the teacher "
    "writes `<think></think><answer>I don't know</answer>` instead. "
    f"SFT ({s['sft_steps']} steps), then two GRPO runs of {s['rl_steps']} "
    f"steps at lr {s['rl_learning_rate']:g} from the same exported SFT "
    "model: plain accuracy (1 right, 0 otherwise) against the honesty "
    "reward (1.0 clean correct, 0.5 correct with extra text, 0.2 exactly "
    '"I don\'t know", 0 wrong). Greedy answers on '
    f"{s['eval_easy'] + s['eval_hard']} held-out prompts "
    f"({s['eval_hard']} hard):",
    "",
    table,
    "",
    f"- {verdict}: wrong answers {pct(acc['wrong_rate'])} with the "
    f"accuracy reward against {pct(hon['wrong_rate'])} with the honesty "
    f"reward ({'fewer' if c['fewer_wrong'] else 'not fewer'} by two "
    "standard errors); abstention on hard prompts "
    f"{pct(acc['abstain_rate_hard'])} against "
    f"{pct(hon['abstain_rate_hard'])} "
    f"({'more' if c['more_abstain_hard'] else 'not more'} by two standard "
    "errors); accuracy on "
    f"easy prompts {pct(acc['accuracy_easy'])} against "
    f"{pct(hon['accuracy_easy'])} ("
    + (
      "kept, within two standard errors or better"
      if c["easy_kept"]
      else "given up: more than two standard errors lower"
    )
    + f"). After SFT: {pct(sft['wrong_rate'])} wrong, "
    f"{pct(sft['abstain_rate_hard'])} abstention on hard, "
    f"{pct(sft['abstain_rate_easy'])} on easy.",
    f"- Over {s['k']} samples per prompt at temperature 1, where the "
    "probability the policy gives to abstaining shows even when greedy "
    "decoding never abstains (after SFT, accuracy reward, honesty reward): "
    + "; ".join(
      f"{METRICS[m].replace(chr(10), ' ')} "
      + ", ".join(pct(results["sampled"][a][m]) for a in LABELS)
      for m in METRICS
    )
    + ".",
  ]
  if s["quick"]:
    parts.append("- A --quick run: smaller sizes, for the test only.")
  return "\n".join(parts)
