"""S1 (Muennighoff et al. 2025): distil ~1k curated traces, then budget forcing.

  python experiments/reproductions/s1.py --workdir=runs/s1 [--quick]

On the arithmetic task `a+b-c=` with long worked solutions (`trace=
"verbose"`: each step in words, `Wait, check:` undoing them, the answer):

1. Student: SFT from scratch on the verbose traces of a teacher that drops
   70% of carries: fluent in the long format, wrong on carries.
2. Teacher: the same model trained longer, on exact verbose traces. It
   samples one trace (temperature 1) per problem of a pool.
3. S1's selection (`rlx.data.selection.s1_select`). Quality: the R1 format
   with the right answer. Difficulty: the student, greedy, is wrong.
   Diversity: a problem type (operators x carry class) drawn uniformly,
   then a problem of it, long traces first. Control: as many traces drawn
   uniformly from the pool, unfiltered.
4. SFT of the student on exactly each set (S1: 5 epochs, batch 16).
5. Budget forcing (greedy, held-out problems): the end of thinking (the
   tokens between `<think>` and `</think>`) forced after B tokens, for
   several B; and `Wait` appended 0/1/2/4 times when the model stops.
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

from experiments.configs.arithmetic_base import base_config  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from experiments.reproductions.reports.s1 import figure, paragraph  # noqa: E402
from rlx import rewards  # noqa: E402
from rlx.data import selection, tasks  # noqa: E402
from rlx.train import evaluation, phases, rollout, trainer  # noqa: E402
from rlx.train import metrics as metrics_lib  # noqa: E402
from rlx.train.config import make_sft_algo  # noqa: E402

NAME = "s1"
# The paper's knobs, scaled to a 0.8M-parameter model on 2 CPU cores.
SIZES = {
  "full": dict(
    student_steps=300,  # batch 64, the erring teacher's verbose traces
    teacher_steps=150,  # the same model trained longer, exact traces
    pool=2000,  # problems the teacher writes traces for (S1: 59K)
    select=400,  # S1's 1,000 of 59K, scaled down for the CPU budget
    eval_prompts=256,
    budgets=(4, 8, 16, 24, 32, 48),
  ),
  "quick": dict(student_steps=150, teacher_steps=50, pool=512, select=96),
}
SIZES["quick"].update(eval_prompts=128, budgets=(8, 48))
WAITS = (0, 1, 2, 4)
EPOCHS, DISTILL_BATCH, DISTILL_LR = 5, 16, 1e-3  # S1: 5 epochs, batch 16
TRACE_TOKENS = 64  # room for a verbose trace (about 45 tokens)
WAIT_TOKENS = 160  # the thinking cap with Waits: a trace and 4 more checks
DECODE_BATCH, SEED = 256, 0


def get_config(size: dict):
  c = base_config()
  c.task.options.update(trace="verbose")  # the carry-dropping teacher
  c.tokenizer.vocab_size = 128
  c.rollout.max_new_tokens = TRACE_TOKENS
  c.eval.num_prompts = size["eval_prompts"]
  c.train.progress = False
  return c


def thinking_tokens(t, out) -> np.ndarray:
  """Per row: tokens before the first `</think>` (or the end), less one."""
  is_end = np.asarray(out.tokens) == t.tokenizer.encode("</think>")[0]
  length = np.asarray(out.mask, bool).sum(1)
  return np.where(is_end.any(1), is_end.argmax(1), length) - 1


def decode(t, params, examples, seed=0, temperature=0.0, **forcing):
  """(correct, thinking tokens, texts) of one completion per example."""
  key = jax.random.key(seed)
  r = rollout.generate_all(
    t, params, examples, key, DECODE_BATCH, temperature=temperature,
    num_samples=1, strategy="sample", **forcing,
  )  # fmt: skip
  fields = rollout.task_fields(t, examples, 1)
  correct = rollout.is_correct(r.texts, fields)
  return correct, thinking_tokens(t, r.completions), r.texts


def stats(correct, thinking) -> dict:
  s = evaluation.summarise({"a": correct}, [{}] * len(correct), "x")
  mean = float(np.mean(thinking))
  return dict(accuracy=s["x/a"], accuracy_se=s["x/a_se"], thinking_tokens=mean)


def budget_forcing(t, params, examples, budgets) -> dict:
  """S1's two knobs: the end of thinking forced after B thinking tokens;
  `Wait` in place of the first w ends of thinking."""
  tok = t.tokenizer
  end, wait = tuple(tok.encode("</think>")), tuple(tok.encode(" Wait"))
  points = {"budget": {}, "wait": {}}
  runs = [  # the sampler counts `<think>` as a thinking token
    ("budget", b, dict(max_thinking_tokens=b + 1, max_new_tokens=b + 16))
    for b in budgets
  ] + [
    ("wait", w, dict(
      wait=wait, min_thinking_tokens=WAIT_TOKENS if w else 0, max_waits=w,
      max_thinking_tokens=WAIT_TOKENS, max_new_tokens=WAIT_TOKENS + 16))
    for w in WAITS
  ]  # fmt: skip
  for kind, k, force in runs:
    c, n, texts = decode(t, params, examples, think_end=end, **force)
    points[kind][str(k)] = dict(stats(c, n), example=texts[0])
  return points


def run(workdir: str, quick: bool):
  size = SIZES["quick" if quick else "full"]
  t = trainer.Trainer(get_config(size), workdir)
  writer = metrics_lib.MetricsWriter(workdir)

  def sft(phase, params, examples, steps, batch_size=None, lr=3e-3):
    """SFT from a copy of `params` (the phase donates them)."""
    t.config.sft.steps, t.config.sft.learning_rate = steps, lr
    saved = os.path.join(workdir, "checkpoints", phase)
    resumed = os.path.isdir(saved) and any(map(str.isdigit, os.listdir(saved)))
    out, seconds = phases.supervised_phase(
      t, writer, phase=phase, params=jax.tree.map(jnp.copy, params),
      algo=make_sft_algo(t.config), data_seed=SEED + len(phase), steps=steps,
      examples=examples, batch_size=batch_size,
    )  # fmt: skip
    trained[phase] = dict(steps=steps, step_time_s=seconds, resumed=resumed)
    return out

  # 1-2. The student, and the teacher: the same model trained longer.
  trained = {}
  options = dict(t.config.task.options, teacher="exact")  # same problems
  exact_task = tasks.make_task("arithmetic", **options)
  student = sft("student", t.initial_params, None, size["student_steps"])
  teacher = sft("teacher", student, exact_task.train, size["teacher_steps"])
  held_out = t.task.eval[: size["eval_prompts"]]
  for name, params in (("student", student), ("teacher", teacher)):
    trained[name].update(stats(*decode(t, params, held_out)[:2]))

  # 3. One sampled trace per pool problem, and S1's three criteria.
  pool = exact_task.train[: size["pool"]]
  right, trace_len, traces = decode(t, teacher, pool, seed=1, temperature=1)
  quality = right & np.array([rewards.has_r1_format(x) for x in traces])
  exact = np.array([x.strip() == e["solution"] for x, e in zip(traces, pool)])
  hard = ~decode(t, student, pool)[0]
  n = min(size["select"], int((quality & hard).sum()))
  assert n, "no trace passes quality and difficulty: train longer"
  rng = np.random.default_rng(SEED)
  # S1's domains, here operator pattern x carry class (e.g. `+-carry`).
  types = [re.sub(r"[^+-]", "", e["expression"]) + e["category"] for e in pool]
  sets = {
    "s1k": selection.s1_select(quality & hard, types, trace_len, n, rng),
    "random1k": selection.random_select(len(pool), n, rng),
  }

  # 4-5. SFT of the student on exactly each set; held-out accuracy.
  points, carry = {}, np.array([e["category"] == "carry" for e in pool])
  for name, chosen in sets.items():
    of = lambda x: float(x[chosen].mean())  # noqa: B023
    rows = [dict(pool[i], solution=traces[i]) for i in chosen]
    steps = -(-EPOCHS * n // DISTILL_BATCH)
    params = sft(name, student, rows, steps, DISTILL_BATCH, DISTILL_LR)
    correct, length, _ = decode(t, params, held_out)
    points[name] = dict(
      stats(correct, length), size=len(chosen), carry_share=of(carry),
      exact_share=of(exact), right_share=of(right), hard_share=of(hard),
    )  # fmt: skip
    if name == "s1k":  # 5. Budget forcing.
      points[name].update(budget_forcing(t, params, held_out, size["budgets"]))
  writer.close()
  pool_stats = dict(
    size=len(pool), teacher_correct=float(right.mean()),
    exact_traces=float(exact.mean()), student_wrong=float(hard.mean()),
    kept=int((quality & hard).sum()), thinking_tokens=float(trace_len.mean()),
  )  # fmt: skip
  curve = [points["s1k"]["budget"][str(b)] for b in size["budgets"]]
  results = {
    "budgets": list(size["budgets"]),
    "accuracy": [x["accuracy"] for x in curve],
    "thinking_tokens": [x["thinking_tokens"] for x in curve],
    "waits": {w: x["accuracy"] for w, x in points["s1k"]["wait"].items()},
    "selection": {k: points[k]["accuracy"] for k in sets},
    "points": points, "pool": pool_stats, "trained": trained, "sizes": size,
  }  # fmt: skip
  return results, figure(results, os.path.join(workdir, f"{NAME}.png"))


if __name__ == "__main__":
  common.main(NAME, run, paragraph, figure)
