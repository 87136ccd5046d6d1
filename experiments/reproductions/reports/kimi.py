"""The kimi reproduction's claims, figure and README paragraph."""

import numpy as np

from experiments.reproductions import reports
from experiments.reproductions.reports import pct


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


def figure(r: dict, path: str) -> str:
  plt = reports.pyplot()
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
  return reports.save(fig, path)


def paragraph(r: dict) -> str:
  s, base, pen, l2s = (
    r["sft"],
    r["no_penalty"],
    r["length_penalty"],
    r["long2short_sft"],
  )
  c, p, q = r["claims"], r["sizes"], r["pass_rates"]
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
