"""The s1 reproduction's figure and README paragraph."""

import numpy as np

from experiments.reproductions import reports


def figure(results: dict, out: str) -> str:
  """S1's Figure 1 (accuracy against average thinking tokens) with the
  `Wait` points; the selection against its random control."""
  plt = reports.pyplot()
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
  p = results["points"]
  for kind, fmt, label in (
    ("budget", "o-", "end of thinking forced at B tokens"),
    ("wait", "s:", "0/1/2/4 x Wait appended"),
  ):
    x, y, e = zip(*[
      (v["thinking_tokens"], v["accuracy"], v["accuracy_se"])
      for v in p["s1k"][kind].values()
    ])  # fmt: skip
    ax.errorbar(x, y, e, fmt=fmt, capsize=2, label=label)
  ax.set(xlabel="average thinking tokens (held-out problems)")
  ax.set(ylabel="accuracy (greedy)", title="Budget forcing, s1k student")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  bars = dict(results["trained"], **p)
  names = ("student", "teacher", "s1k", "random1k")
  bx.bar(
    names, [bars[k]["accuracy"] for k in names], capsize=4,
    yerr=[bars[k]["accuracy_se"] for k in names],
    color=["0.6", "0.3", "C0", "C1"], label="held-out accuracy, +- 1 s.e.",
  )  # fmt: skip
  bx.set(ylabel="accuracy (greedy, no forcing)", ylim=(0, 1))
  bx.set_title(f"SFT on {p['s1k']['size']} curated vs random traces")
  bx.legend(fontsize=8)
  fig.suptitle("s1: Simple test-time scaling (Muennighoff et al. 2025), rlx")
  return reports.save(fig, out, dpi=120)


def paragraph(r: dict) -> str:
  """The README paragraph, from `results.json`."""
  p, pool, t, budgets = r["points"], r["pool"], r["trained"], r["budgets"]
  pct = lambda x: f"{x['accuracy']:.1%} +- {x['accuracy_se']:.1%}"
  said = lambda ok, yes, no: yes if ok else no
  s1k, rnd, before = p["s1k"], p["random1k"], t["student"]
  gap = s1k["accuracy"] - rnd["accuracy"]
  se = np.hypot(s1k["accuracy_se"], rnd["accuracy_se"])
  b = [s1k["budget"][str(x)] for x in (budgets[0], budgets[-1])]
  w = list(s1k["wait"].values())
  helps = max(x["accuracy"] for x in w[1:]) > w[0]["accuracy"]
  resumed = [k for k, v in t.items() if v["resumed"]]
  return (
    f"The student ({before['steps']} SFT steps from scratch on the verbose "
    f"traces of a teacher that drops 70% of carries) gets {pct(before)} of "
    f"{r['sizes']['eval_prompts']} held-out problems right (greedy); the "
    f"teacher (the same model, {t['teacher']['steps']} steps longer on "
    f"exact traces) {pct(t['teacher'])}. Of the {pool['size']} traces the "
    f"teacher samples, {pool['teacher_correct']:.1%} have the right answer "
    f"({pool['exact_traces']:.1%} are exactly right); the student gets "
    f"{pool['student_wrong']:.1%} of these problems wrong; {pool['kept']} "
    f"pass quality and difficulty, and S1's diversity draw keeps "
    f"{s1k['size']} ({s1k['carry_share']:.0%} with a carry; the random "
    f"control of as many: {rnd['carry_share']:.0%}). After SFT on each (5 "
    f"epochs, batch 16): s1k {pct(s1k)}, random {pct(rnd)} ("
    + said(min(r["selection"].values()) > before["accuracy"], "", "NOT ")
    + "both above the student before); curated "
    + said(gap >= 0, "is at least as good as", "is NOT as good as")
    + f" random ({gap:+.1%}, {abs(gap) / se:.1f} standard errors)"
    + said(
      s1k["carry_share"] > rnd["carry_share"],
      ". ",
      ", unlike S1: the student is wrong on so much of the pool that the "
      "difficulty filter does not single out the carries it was taught to "
      "drop, so the curated set is no harder than the random one. ",
    )
    + f"Budget forcing on the s1k student: thinking cut at {budgets[0]} "
    f"tokens gives {pct(b[0])} ({b[0]['thinking_tokens']:.1f} on average), "
    f"at {budgets[-1]} {pct(b[-1])} ({b[-1]['thinking_tokens']:.1f}): "
    + said(r["accuracy"][-1] > r["accuracy"][0], "higher", "NOT higher")
    + ", as in S1 (the answer comes at the end of a trace). `Wait` appended "
    "0/1/2/4 times: "
    + ", ".join(f"{pct(x)} ({x['thinking_tokens']:.0f} tokens)" for x in w)
    + said(
      helps,
      ": more thinking helps, as in S1. ",
      f"; unlike S1, it hurts: after `Wait` the model writes "
      f"`{w[1]['example'][-24:]}` and never answers (no trace it saw goes "
      "on after its final `So N.`). ",
    )
    + "Also unlike S1: the student had to learn the long format first "
    "(Qwen2.5-32B already writes long answers), the model has 0.8M "
    f"parameters, and {s1k['size']} of {pool['size']} problems stand for "
    "1,000 of 59K. SFT step time: "
    + ", ".join(f"{k} {v['step_time_s'] / 60:.1f} min" for k, v in t.items())
    + said(
      resumed,
      f"; this invocation continued an interrupted one ({', '.join(resumed)}"
      " checkpoints): the wall time below counts only itself.",
      ".",
    )
  )
