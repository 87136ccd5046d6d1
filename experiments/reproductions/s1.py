"""S1 (Muennighoff et al. 2025): distil ~1k curated traces, then budget forcing.

  python experiments/reproductions/s1.py --workdir=runs/s1 [--quick]

On the arithmetic task `a+b-c=` (one-digit operands), with long worked
solutions (`trace="verbose"`: each step in words, `Wait, check:` undoing
them, then the answer):

1. Student. SFT from scratch on the verbose traces of a teacher that drops
   the carry of 70% of carrying additions: fluent in the long format, wrong
   on most carry problems.
2. Teacher. The same model trained longer: SFT continues from the student
   on an exact teacher's verbose traces. It writes one sampled trace
   (temperature 1) for every problem of a pool.
3. Selection (S1's three criteria, `rlx.data.selection.s1_select`).
   Quality: the trace is exactly the correct worked solution. Difficulty:
   the student, greedy, gets the problem wrong. Diversity: a problem type
   (operator pattern x carry class) drawn uniformly, then a problem of it,
   long traces first. S1's control: as many traces drawn uniformly from
   the pool, unfiltered.
4. SFT the student on exactly each set (5 epochs, batch 16, as S1).
5. Budget forcing (`rlx.decoding`, greedy) on held-out problems: the end
   of thinking forced after B thinking tokens, for several B; and `Wait`
   appended 0/1/2/4 times when the model ends its thinking.

Thinking tokens are those between `<think>` and `</think>`.
"""

import os
import re
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

sys.path.insert(
  0,
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.configs.arithmetic_base import base_config  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from rlx.data import selection, tasks  # noqa: E402
from rlx.train import evaluation, phases, rollout, trainer  # noqa: E402
from rlx.train import metrics as metrics_lib  # noqa: E402
from rlx.train.config import make_sft_algo  # noqa: E402

NAME = "s1"
# The paper's knobs, scaled to a 0.8M-parameter model on 2 CPU cores.
SIZES = {
  "full": dict(
    student_steps=400,  # batch 64, the erring teacher's verbose traces
    teacher_steps=200,  # the same model trained longer, exact traces
    pool=2000,  # problems the teacher writes traces for (S1: 59K)
    select=400,  # S1's 1,000 of 59K, scaled down for the CPU budget
    eval_prompts=256,
    budgets=(4, 8, 16, 24, 32, 48),
  ),
  "quick": dict(
    student_steps=150,
    teacher_steps=50,
    pool=512,
    select=96,
    eval_prompts=128,
    budgets=(8, 48),
  ),
}
WAITS = (0, 1, 2, 4)
EPOCHS, DISTILL_BATCH = 5, 16  # S1: 5 epochs, batch 16
DISTILL_LR = 1e-3
TRACE_TOKENS = 64  # room for a verbose trace (about 45 tokens)
WAIT_TOKENS = 160  # the thinking cap with Waits: a trace and 4 more checks
DECODE_BATCH = 256
SEED = 0


def get_config(size: dict):
  c = base_config()
  c.task.options.update(trace="verbose")  # the carry-dropping teacher
  c.tokenizer.vocab_size = 128
  c.rollout.max_new_tokens = TRACE_TOKENS
  c.eval.num_prompts = size["eval_prompts"]
  c.train.progress = False
  return c


def problem_type(example: dict) -> str:
  """S1's domain, here: operator pattern x carry class (e.g. `+-/carry`)."""
  pattern = re.sub(r"[^+\-*]", "", example["expression"])
  return f"{pattern}/{example['category']}"


def thinking_tokens(t, out) -> np.ndarray:
  """Per row: tokens before the first `</think>`, less the `<think>`."""
  end = t.tokenizer.encode("</think>")[0]
  tokens, mask = np.asarray(out.tokens), np.asarray(out.mask, bool)
  first = np.where((tokens == end).any(1), (tokens == end).argmax(1), 0)
  return np.where((tokens == end).any(1), first, mask.sum(1)) - 1


def decode(t, params, examples, seed=0, temperature=0.0, **forcing):
  """(correct, thinking tokens, texts) of one completion per example."""
  key = jax.random.key(seed)
  r = rollout.generate_all(
    t, params, examples, key, DECODE_BATCH, temperature=temperature,
    num_samples=1, strategy="sample", **forcing,
  )  # fmt: skip
  fields = rollout.task_fields(t, examples, 1)
  return (
    rollout.is_correct(r.texts, fields),
    thinking_tokens(t, r.completions),
    r.texts,
  )


def stats(correct, thinking=None) -> dict:
  s = evaluation.summarise({"a": correct}, [{}] * len(correct), "x")
  out = dict(accuracy=s["x/a"], accuracy_se=s["x/a_se"])
  if thinking is not None:
    out["thinking_tokens"] = float(np.mean(thinking))
  return out


def budget_forcing(t, params, examples, budgets) -> dict:
  """S1's two knobs: the end of thinking forced after B thinking tokens;
  `Wait` in place of the first w ends of thinking."""
  tok = t.tokenizer
  end, wait = tuple(tok.encode("</think>")), tuple(tok.encode("Wait"))
  points = {"budget": {}, "wait": {}}
  for b in budgets:  # the sampler counts `<think>` as a thinking token
    force = dict(max_thinking_tokens=b + 1, max_new_tokens=b + 16)
    c, n, _ = decode(t, params, examples, think_end=end, **force)
    points["budget"][str(b)] = stats(c, n)
  for w in WAITS:
    force = dict(
      wait=wait, min_thinking_tokens=WAIT_TOKENS if w else 0, max_waits=w,
      max_thinking_tokens=WAIT_TOKENS, max_new_tokens=WAIT_TOKENS + 16,
    )  # fmt: skip
    c, n, texts = decode(t, params, examples, think_end=end, **force)
    points["wait"][str(w)] = dict(stats(c, n), example=texts[0])
  return points


def run(workdir: str, quick: bool):
  size = SIZES["quick" if quick else "full"]
  t = trainer.Trainer(get_config(size), workdir)
  writer = metrics_lib.MetricsWriter(workdir)
  copy = lambda p: jax.tree.map(jnp.copy, p)

  def sft(phase, params, examples, steps, batch_size=None, lr=3e-3):
    """SFT from a copy of `params` (the phase donates them), cosine decay
    over `steps`."""
    t.config.sft.steps, t.config.sft.learning_rate = steps, lr
    out, seconds = phases.supervised_phase(
      t, writer, phase=phase, params=copy(params), algo=make_sft_algo(t.config),
      data_seed=SEED + len(phase), steps=steps, examples=examples,
      batch_size=batch_size,
    )  # fmt: skip
    trained[phase] = dict(steps=steps, step_time_s=seconds)
    return out

  # 1-2. The student, and the teacher: the same model trained longer.
  trained = {}
  exact = tasks.make_task(
    "arithmetic", **dict(t.config.task.options, teacher="exact")
  )  # the same problems (the teacher draws from its own stream)
  student = sft("student", t.initial_params, None, size["student_steps"])
  teacher = sft("teacher", student, exact.train, size["teacher_steps"])
  held_out = t.task.eval[: size["eval_prompts"]]
  for name, params in (("student", student), ("teacher", teacher)):
    trained[name].update(stats(decode(t, params, held_out)[0]))

  # 3. One sampled trace per pool problem, and S1's three criteria.
  pool = exact.train[: size["pool"]]
  right, trace_len, traces = decode(t, teacher, pool, seed=1, temperature=1)
  quality = np.array([x == e["solution"] for x, e in zip(traces, pool)])
  hard = ~decode(t, student, pool)[0]
  n = min(size["select"], int((quality & hard).sum()))
  rng = np.random.default_rng(SEED)
  types = [problem_type(e) for e in pool]
  sets = {
    "s1k": selection.s1_select(quality & hard, types, trace_len, n, rng),
    "random1k": selection.random_select(len(pool), n, rng),
  }

  # 4-5. SFT of the student on exactly each set; held-out accuracy.
  points, students = {}, {}
  for name, chosen in sets.items():
    rows = [dict(pool[i], solution=traces[i]) for i in chosen]
    for row in rows:
      row.pop("teacher_solutions", None)
    steps = -(-EPOCHS * n // DISTILL_BATCH)
    students[name] = sft(name, student, rows, steps, DISTILL_BATCH, DISTILL_LR)
    correct, length, _ = decode(t, students[name], held_out)
    carry = np.mean([pool[i]["category"] == "carry" for i in chosen])
    points[name] = dict(
      stats(correct, length), size=len(chosen), carry_share=float(carry),
      exact_share=float(quality[chosen].mean()),
    )  # fmt: skip
  points["s1k"].update(
    budget_forcing(t, students["s1k"], held_out, size["budgets"])
  )
  writer.close()
  curve = points["s1k"]["budget"]
  results = {
    "budgets": list(size["budgets"]),
    "accuracy": [curve[str(b)]["accuracy"] for b in size["budgets"]],
    "thinking_tokens": [
      curve[str(b)]["thinking_tokens"] for b in size["budgets"]
    ],
    "waits": {w: p["accuracy"] for w, p in points["s1k"]["wait"].items()},
    "selection": {k: points[k]["accuracy"] for k in sets},
    "points": points,
    "pool": dict(
      size=len(pool),
      teacher_correct=float(right.mean()),
      exact_traces=float(quality.mean()),
      student_wrong=float(hard.mean()),
      kept=int((quality & hard).sum()),
      mean_thinking_tokens=float(trace_len.mean()),
    ),
    "trained": trained,
    "sizes": size,
    "quick": quick,
  }
  return results, figure(results, os.path.join(workdir, f"{NAME}.png"))


def figure(results: dict, out: str) -> str:
  """S1's Figure 1 (accuracy against average thinking tokens), with the
  `Wait` points, and the selection against its random control."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
  p = results["points"]
  for kind, style, label in (
    ("budget", "o-", "forced end of thinking at B tokens"),
    ("wait", "s:", "0/1/2/4 x Wait appended"),
  ):
    v = list(p["s1k"][kind].values())
    ax.errorbar(
      [x["thinking_tokens"] for x in v], [x["accuracy"] for x in v],
      [x["accuracy_se"] for x in v], fmt=style, capsize=2, label=label,
    )  # fmt: skip
    for k, x in p["s1k"][kind].items():
      tag = f"B={k}" if kind == "budget" else f"{k}W"
      ax.annotate(tag, (x["thinking_tokens"], x["accuracy"]), fontsize=7)
  ax.set_xlabel("average thinking tokens (held-out problems)")
  ax.set_ylabel("accuracy (greedy)")
  ax.set_title("Budget forcing on the s1k student: test-time scaling")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  bars = {
    "student": results["trained"]["student"],
    "teacher": results["trained"]["teacher"],
    "s1k": p["s1k"],
    "random1k": p["random1k"],
  }
  bx.bar(
    list(bars), [v["accuracy"] for v in bars.values()],
    yerr=[v["accuracy_se"] for v in bars.values()],
    color=["0.6", "0.3", "C0", "C1"], capsize=4, label="held-out accuracy",
  )  # fmt: skip
  bx.set_ylabel("held-out accuracy (greedy, no forcing)")
  bx.set_title(f"SFT on {p['s1k']['size']} curated vs random traces")
  bx.set_ylim(0, 1)
  bx.legend(fontsize=8)
  fig.suptitle("s1: Simple test-time scaling (Muennighoff et al. 2025), rlx")
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def paragraph(r: dict) -> str:
  p, pool, t = r["points"], r["pool"], r["trained"]
  acc, tok, budgets = r["accuracy"], r["thinking_tokens"], r["budgets"]
  pct = lambda x: f"{x['accuracy']:.1%} +- {x['accuracy_se']:.1%}"
  s1k, rnd = p["s1k"], p["random1k"]
  b = lambda i: s1k["budget"][str(budgets[i])]
  waits = ", ".join(
    f"{w}: {pct(x)} ({x['thinking_tokens']:.0f} tokens)"
    for w, x in s1k["wait"].items()
  )
  scaled, curated = acc[-1] > acc[0], s1k["accuracy"] >= rnd["accuracy"]
  gap = s1k["accuracy"] - rnd["accuracy"]
  se = np.hypot(s1k["accuracy_se"], rnd["accuracy_se"])
  more_waits = [x["accuracy"] for x in s1k["wait"].values()]
  return (
    f"A student trained from scratch ({t['student']['steps']} SFT steps) on "
    f"the verbose traces of a teacher that drops 70% of carries reaches "
    f"{pct(t['student'])} held-out greedy accuracy ({r['sizes']['eval_prompts']} "
    f"problems); the teacher, the same model trained {t['teacher']['steps']} "
    f"steps longer on exact traces, {pct(t['teacher'])}. The teacher wrote one "
    f"sampled trace for each of {pool['size']} problems "
    f"({pool['teacher_correct']:.1%} with the right answer, "
    f"{pool['exact_traces']:.1%} exactly right step by step); the student "
    f"got {pool['student_wrong']:.1%} of them wrong, and {pool['kept']} "
    f"passed both quality and difficulty. S1's diversity draw kept "
    f"{s1k['size']} ({s1k['carry_share']:.0%} with a carry), the random "
    f"control {rnd['size']} ({rnd['carry_share']:.0%} with a carry). After "
    f"SFT of the student on each (5 epochs, batch 16): s1k {pct(s1k)}, "
    f"random {pct(rnd)}; curated "
    + (
      "is at least as good as random" if curated else "is NOT as good as random"
    )
    + f" (difference {gap:+.1%}, {abs(gap) / se:.1f} standard errors). "
    f"Budget forcing on the s1k student: the end of thinking forced after "
    f"{budgets[0]} thinking tokens gives {pct(b(0))} ({tok[0]:.1f} tokens on "
    f"average), after {budgets[-1]} {pct(b(-1))} ({tok[-1]:.1f}): accuracy "
    + ("rises" if scaled else "does NOT rise")
    + f" with the budget, as in S1. `Wait` appended 0/1/2/4 times: {waits}. "
    + (
      "Unlike S1, extra `Wait`s do not raise accuracy: the traces' only "
      "check undoes the steps and the toy model has no way to use a second "
      "look to correct an answer, so more thinking adds tokens, not accuracy."
      if max(more_waits[1:]) <= more_waits[0]
      else "Appending `Wait` raises accuracy here, as S1 reports."
    )
    + f" Where this differs from S1: {s1k['size']} of {pool['size']} problems "
    f"instead of 1,000 of 59K, a 0.8M-parameter model, and the student "
    f"learns the long format before distillation (S1's Qwen2.5-32B already "
    f"writes long answers), so what distillation adds here is the carry. "
    f"SFT step time: "
    + ", ".join(f"{k} {v['step_time_s'] / 60:.1f} min" for k, v in t.items())
    + "."
  )


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
