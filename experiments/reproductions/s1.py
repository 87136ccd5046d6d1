"""S1 (Muennighoff et al. 2025): distil ~1k curated traces, then budget forcing.

  python experiments/reproductions/s1.py --workdir=runs/s1 [--quick]

On the arithmetic task `a+b-c=` (one-digit operands), as in the paper's
method section:

1. Teacher. A model trained longer on an exact teacher's *verbose* worked
   solutions (`trace="verbose"`: each step in words, then `Wait, check:`
   undoing the steps, then the answer) writes one sampled trace
   (temperature 1) for every problem of a pool.
2. Student. The default run's SFT model: the same model size trained on
   short solutions from a teacher that drops carries (`arithmetic_base`).
3. Selection (S1's three criteria). Quality: the teacher's trace is
   exactly the correct worked solution (every step and check right, the
   R1 format). Difficulty: the student, greedy, gets the problem wrong.
   Diversity: a problem type (operator pattern x carry class) drawn
   uniformly, then a problem of it, long traces first
   (`rlx.data.selection.s1_select`). S1's control: as many traces drawn
   uniformly from the pool, unfiltered.
4. SFT the student on exactly each set (`rlx.train.run`, a JSONL task).
5. Budget forcing (`rlx.decoding`, greedy) on the held-out problems: the
   end of thinking forced after B thinking tokens, for several B; and
   `Wait` appended 0/1/2/4 times when the model ends its thinking.

Thinking tokens are the tokens between `<think>` and `</think>`. The full
run keeps S1's 1,000 examples; `--quick` keeps fewer and trains less.
"""

import json
import os
import re
import time

import common
import jax
import matplotlib
import numpy as np
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.configs.arithmetic_base import base_config  # noqa: E402
from rlx import decoding, models, rewards, train  # noqa: E402
from rlx.data import load_tokenizer, selection, tasks  # noqa: E402
from rlx.train import metrics  # noqa: E402

NAME = "s1"

# The paper's knobs, scaled to a 0.8M-parameter model on 2 CPU cores.
SIZES = {
  "full": dict(
    pool=3000,  # problems the teacher writes traces for (S1: 59K)
    select=500,  # S1's 1,000, halved for the CPU budget
    teacher_sft_steps=700,  # the student's 450 steps of 64, trained longer
    teacher_batch=32,
    student_sft_steps=300,  # the default run's recipe, 300 steps of its 450
    distill_epochs=5,  # S1: 5 epochs over its 1k
    eval_prompts=256,
    budgets=(2, 4, 8, 16, 32, 48),
    waits=(0, 1, 2, 4),
  ),
  "quick": dict(
    pool=1000,
    select=200,
    teacher_sft_steps=400,
    teacher_batch=32,
    student_sft_steps=300,
    distill_epochs=5,
    eval_prompts=128,
    budgets=(4, 48),
    waits=(0, 1, 2, 4),
  ),
}
TEACHER_TEMPERATURE = 1.0
DISTILL_BATCH = 16  # S1: batch 16
DISTILL_LR = 1e-3
TRACE_TOKENS = 64  # room for a verbose trace (about 45 tokens)
WAIT_TOKENS = 160  # the thinking cap with Waits: a trace and 4 more checks
WAIT = "Wait"
THINK_END = "</think>"
SEED = 0


# Training: every model is a `rlx.train.run` over a config ---------------------


_START = time.perf_counter()


def log(message: str) -> None:
  print(f"[s1 {time.perf_counter() - _START:6.0f}s] {message}", flush=True)


def _train(config, workdir: str) -> tuple[str, dict]:
  """Runs `config` (SFT only) in `workdir`, resuming what is there; returns
  its export directory and its held-out greedy accuracy and SFT step time
  (from the workdir's metrics, so a resumed run reports it too)."""
  config.train.steps = 0
  config.train.progress = False
  config.eval.num_samples = 0
  config.train.save_every = 10**6  # only the last step
  summary = train.run(config, workdir)
  log(
    f"{workdir}: {config.sft.steps} SFT steps, held-out greedy accuracy "
    f"{summary['before']['eval/accuracy']:.1%}"
  )
  sft = [r for r in metrics.read_metrics(workdir) if r["phase"] == "sft"]
  stats = dict(
    accuracy=summary["before"]["eval/accuracy"],
    accuracy_se=summary["before"]["eval/accuracy_se"],
    sft_steps=config.sft.steps,
    sft_step_time_s=sft[-1]["time/elapsed_s"] if sft else 0.0,
  )
  return os.path.join(workdir, "export"), stats


def teacher_config(size: dict):
  c = base_config()
  c.task.options.update(teacher="exact", teacher_rate=0.0, trace="verbose")
  c.tokenizer.vocab_size = 128
  c.sft.steps = size["teacher_sft_steps"]
  c.sft.batch_size = size["teacher_batch"]
  c.rollout.max_new_tokens = TRACE_TOKENS
  c.eval.num_prompts = size["eval_prompts"]
  return c


def student_config(size: dict, tokenizer_dir: str):
  """The default run's SFT model (short traces, carry-dropping teacher),
  with the teacher's tokenizer so that it can read verbose traces."""
  c = base_config()
  c.tokenizer.path = tokenizer_dir
  c.sft.steps = size["student_sft_steps"]
  c.eval.num_prompts = size["eval_prompts"]
  return c


def distill_config(size: dict, student: str, train_file: str, eval_file: str):
  """SFT of the student on exactly the examples in `train_file`."""
  n = sum(1 for _ in open(train_file))
  c = base_config()
  c.model.checkpoint = student
  c.task.name = "jsonl"
  c.task.options = dict(
    path=train_file,
    eval_path=eval_file,
    solution_field="reasoning",
    extra_fields=["category"],
  )
  c.sft.batch_size = DISTILL_BATCH
  c.sft.steps = -(-size["distill_epochs"] * n // DISTILL_BATCH)
  c.sft.learning_rate = DISTILL_LR
  c.rollout.max_new_tokens = TRACE_TOKENS
  c.eval.num_prompts = size["eval_prompts"]
  return c


# Decoding ---------------------------------------------------------------------


class Model:
  """An exported checkpoint with its tokenizer, decoded in fixed batches."""

  def __init__(self, directory: str, batch: int = 128):
    self.tok = load_tokenizer(directory)
    self.graphdef, self.params = nnx.split(models.load_pretrained(directory))
    self.batch = batch
    self.think_end = self.tok.encode(THINK_END)
    self.think_start = self.tok.encode("<think>")
    if len(self.think_end) != 1 or len(self.think_start) != 1:
      raise ValueError(f"{directory}: <think> tags are not single tokens")

  def sampling(self, **kwargs) -> decoding.SamplingConfig:
    return decoding.SamplingConfig(
      eos_ids=(self.tok.eos_id,),
      stop_sequences=(tuple(self.tok.encode("</answer>")),),
      pad_id=self.tok.pad_id,
      **kwargs,
    )

  def generate(self, prompts, cfg, fn=None, seed: int = 0):
    """(texts, thinking tokens) of `prompts` under `cfg`; `fn` a sampler of
    an earlier call with the same `cfg` (not compiled again)."""
    fn = fn or decoding.make_sampler(self.graphdef, self.params, cfg)
    ids = [self.tok.encode(p, add_bos=self.tok.adds_bos) for p in prompts]
    length = decoding.bucket_length(max(map(len, ids)))
    texts, thinking = [], []
    for start in range(0, len(ids), self.batch):
      chunk = ids[start : start + self.batch]
      chunk = chunk + [chunk[-1]] * (self.batch - len(chunk))
      tokens, mask = decoding.pad_prompts(chunk, self.tok.pad_id, length=length)
      key = jax.random.fold_in(jax.random.key(seed), start)
      out = jax.tree.map(np.asarray, fn(self.params, tokens, mask, key))
      for row, m in zip(out.tokens, out.mask):
        row = row[m.astype(bool)].tolist()
        texts.append(self.tok.decode(row))
        thinking.append(self.thinking_tokens(row))
    return texts[: len(ids)], np.array(thinking[: len(ids)]), fn

  def thinking_tokens(self, row: list[int]) -> int:
    """Tokens between `<think>` (if the row starts with it) and the first
    `</think>` (or the end)."""
    end = row.index(self.think_end[0]) if self.think_end[0] in row else len(row)
    return end - (1 if row[:1] == self.think_start else 0)


def accuracy(texts, examples) -> np.ndarray:
  answers = [e["answer"] for e in examples]
  return np.array(rewards.is_correct(texts, {"answer": answers}), float)


def mean_se(x) -> tuple[float, float]:
  x = np.asarray(x, float)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def budget_forcing(model: Model, examples, budgets, waits, samplers: dict):
  """Accuracy and mean thinking tokens: the end of thinking forced after
  each budget B, and `Wait` inserted up to w times when the model ends its
  thinking (S1's two knobs). `samplers` caches the compiled decoders."""
  prompts = [e["prompt"] for e in examples]
  wait_ids = tuple(model.tok.encode(WAIT))
  points = {"budget": {}, "wait": {}}
  configs = [
    # The sampler counts `<think>` as a thinking token: budget B + 1.
    ("budget", b, dict(max_thinking_tokens=b + 1, max_new_tokens=b + 16))
    for b in budgets
  ] + [
    (
      "wait",
      w,
      dict(
        wait=wait_ids,
        min_thinking_tokens=WAIT_TOKENS if w else 0,
        max_thinking_tokens=WAIT_TOKENS,
        max_waits=w,
        max_new_tokens=WAIT_TOKENS + 16,
      ),
    )
    for w in waits
  ]
  for kind, value, kwargs in configs:
    cfg = model.sampling(temperature=0.0, think_end=model.think_end, **kwargs)
    texts, thinking, samplers[cfg] = model.generate(
      prompts, cfg, samplers.get(cfg)
    )
    acc, se = mean_se(accuracy(texts, examples))
    points[kind][value] = dict(
      accuracy=acc,
      accuracy_se=se,
      thinking_tokens=float(thinking.mean()),
      example=prompts[0] + texts[0],
    )
  return points


# Data -------------------------------------------------------------------------


def problem_type(example: dict) -> str:
  """S1's domain, here: operator pattern x carry class (e.g. `+-/carry`)."""
  pattern = re.sub(r"[^+\-*]", "", example["expression"])
  return f"{pattern}/{example['category']}"


_TRACE_RE = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>", re.S)


def write_jsonl(path: str, rows) -> str:
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return path


def trace_rows(pool, traces, indices=None):
  """JSONL rows of the teacher's traces as written: its reasoning and its
  own answer (which may be wrong: S1's random control is unfiltered)."""
  rows = []
  for i in range(len(pool)) if indices is None else indices:
    reasoning, answer = _TRACE_RE.fullmatch(traces[i]).groups()
    rows.append(
      dict(
        prompt=pool[i]["prompt"],
        answer=answer.strip(),
        reasoning=reasoning,
        category=pool[i]["category"],
      )
    )
  return rows


# The reproduction -------------------------------------------------------------


def run(workdir: str, quick: bool):
  size = SIZES["quick" if quick else "full"]
  rng = np.random.default_rng(SEED)
  path = lambda *p: os.path.join(workdir, *p)

  # 1. The teacher, and the student before distillation.
  trained = {}
  teacher_dir, trained["teacher"] = _train(
    teacher_config(size), path("teacher")
  )
  student_dir, trained["student"] = _train(
    student_config(size, path("teacher", "tokenizer")), path("student")
  )
  task = tasks.make_task("arithmetic", **teacher_config(size).task.options)
  pool = task.train[: size["pool"]]
  held_out = task.eval[: size["eval_prompts"]]
  prompts = [e["prompt"] for e in pool]

  # 2. The teacher writes one trace per pool problem.
  teacher = Model(teacher_dir)
  cfg = teacher.sampling(
    temperature=TEACHER_TEMPERATURE, max_new_tokens=TRACE_TOKENS
  )
  traces, trace_len, _ = teacher.generate(prompts, cfg, seed=1)
  correct = accuracy(traces, pool).astype(bool)
  exact = np.array([t.strip() == e["solution"] for t, e in zip(traces, pool)])
  parses = np.array([_TRACE_RE.fullmatch(t) is not None for t in traces])

  # 3. Difficulty: the student's greedy answers.
  student = Model(student_dir)
  greedy = student.sampling(temperature=0.0, max_new_tokens=32)
  answers, _, greedy_fn = student.generate(prompts, greedy)
  hard = ~accuracy(answers, pool).astype(bool)

  # 4. The two training sets of equal size.
  types = [problem_type(e) for e in pool]
  n = min(size["select"], int((exact & hard).sum()))
  if n < size["select"]:
    log(f"only {n} traces pass quality and difficulty; choosing {n}")
  s1k = selection.s1_select(exact & hard, types, trace_len, n, rng)
  parseable = np.flatnonzero(parses)
  random1k = parseable[selection.random_select(len(parseable), n, rng)]
  eval_file = write_jsonl(  # (the loader wants a reasoning: the exact one)
    path("eval.jsonl"), trace_rows(held_out, [e["solution"] for e in held_out])
  )
  sets = {"s1k": s1k, "random1k": random1k}
  students, samplers, points = {}, {}, {}
  for name, indices in sets.items():
    train_file = write_jsonl(
      path(f"{name}.jsonl"), trace_rows(pool, traces, indices)
    )
    config = distill_config(size, student_dir, train_file, eval_file)
    export, trained[name] = _train(config, path(name))
    students[name] = Model(export)
    # 5. Budget forcing on the held-out problems.
    points[name] = budget_forcing(
      students[name], held_out, size["budgets"], size["waits"], samplers
    )

  def set_stats(indices):
    indices = np.asarray(indices)
    return dict(
      size=len(indices),
      teacher_correct=float(correct[indices].mean()),
      exact_traces=float(exact[indices].mean()),
      student_wrong=float(hard[indices].mean()),
      carry=float(np.mean([pool[i]["category"] == "carry" for i in indices])),
      types=len({types[i] for i in indices}),
    )

  before, _, _ = student.generate(
    [e["prompt"] for e in held_out], greedy, greedy_fn
  )
  curve = points["s1k"]["budget"]
  results = {
    "budgets": list(size["budgets"]),
    "accuracy": [curve[b]["accuracy"] for b in size["budgets"]],
    "thinking_tokens": [curve[b]["thinking_tokens"] for b in size["budgets"]],
    "waits": {
      str(w): points["s1k"]["wait"][w]["accuracy"] for w in size["waits"]
    },
    "selection": {name: points[name]["wait"][0]["accuracy"] for name in sets},
    # Details: standard errors, the random set's curves, the pool.
    "points": {
      name: {kind: {str(k): v for k, v in p[kind].items()} for kind in p}
      for name, p in points.items()
    },
    "student_before": mean_se(accuracy(before, held_out)),
    "pool": dict(
      size=len(pool),
      teacher_correct=float(correct.mean()),
      exact_traces=float(exact.mean()),
      parseable=float(parses.mean()),
      student_wrong=float(hard.mean()),
      kept_by_quality_and_difficulty=int((exact & hard).sum()),
      mean_trace_tokens=float(trace_len.mean()),
    ),
    "sets": {name: set_stats(idx) for name, idx in sets.items()},
    "trained": trained,
    "sizes": size,
    "quick": quick,
  }
  return results, figure(results, path(f"{NAME}.png"))


def figure(results: dict, out: str) -> str:
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
  styles = {"s1k": ("C0", "-"), "random1k": ("C1", "--")}
  for name, (color, ls) in styles.items():
    p = results["points"][name]
    b = p["budget"]
    ax.errorbar(
      [v["thinking_tokens"] for v in b.values()],
      [v["accuracy"] for v in b.values()],
      [v["accuracy_se"] for v in b.values()],
      color=color,
      ls=ls,
      marker="o",
      capsize=2,
      label=f"{name}: forced end of thinking",
    )
    w = p["wait"]
    ax.plot(
      [v["thinking_tokens"] for v in w.values()],
      [v["accuracy"] for v in w.values()],
      color=color,
      ls=":",
      marker="s",
      label=f"{name}: 0/1/2/4 x Wait",
    )
    if name == "s1k":
      for k, v in w.items():
        ax.annotate(f"{k}W", (v["thinking_tokens"], v["accuracy"]), fontsize=7)
  ax.set_xlabel("average thinking tokens (held-out problems)")
  ax.set_ylabel("accuracy (greedy)")
  ax.set_title("Budget forcing: test-time scaling")
  ax.legend(fontsize=7, loc="best")
  ax.grid(alpha=0.3)
  names = ["student before", "s1k", "random1k"]
  vals = [results["student_before"]] + [
    (
      results["points"][n]["wait"]["0"]["accuracy"],
      results["points"][n]["wait"]["0"]["accuracy_se"],
    )
    for n in ("s1k", "random1k")
  ]
  bx.bar(
    names,
    [v[0] for v in vals],
    yerr=[v[1] for v in vals],
    color=["0.6", "C0", "C1"],
    capsize=4,
  )
  bx.set_ylabel("held-out accuracy (greedy, no forcing)")
  n = results["sets"]["s1k"]["size"]
  bx.set_title(f"SFT on {n} curated vs {n} random traces")
  bx.set_ylim(0, 1)
  fig.suptitle("S1: simple test-time scaling (Muennighoff et al. 2025), rlx")
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def paragraph(results: dict) -> str:
  acc, tok, budgets = (
    results["accuracy"],
    results["thinking_tokens"],
    results["budgets"],
  )
  sel, pool, sets = results["selection"], results["pool"], results["sets"]
  p = results["points"]["s1k"]
  se = lambda kind, k: p[kind][str(k)]["accuracy_se"]
  waits = ", ".join(
    f"{w}: {a:.1%} ({p['wait'][w]['thinking_tokens']:.0f} tokens)"
    for w, a in results["waits"].items()
  )
  scaled = acc[-1] > acc[0]
  curated = sel["s1k"] >= sel["random1k"]
  n = sets["s1k"]["size"]
  t = results["trained"]
  times = ", ".join(
    f"{k} {v['sft_steps']} steps {v['sft_step_time_s'] / 60:.1f} min"
    for k, v in t.items()
  )
  return (
    f"A teacher trained on exact verbose traces ({t['teacher']['accuracy']:.1%}"
    f" held-out greedy accuracy after {t['teacher']['sft_steps']} SFT steps; "
    f"the student: {t['student']['accuracy']:.1%} with short traces) "
    f"wrote one sampled trace for "
    f"each of {pool['size']} problems ({pool['teacher_correct']:.1%} with "
    f"the right answer, {pool['exact_traces']:.1%} exactly right step by "
    f"step); the student (the default SFT model, taught by a carry-dropping "
    f"teacher) got {pool['student_wrong']:.1%} of them wrong. "
    f"{pool['kept_by_quality_and_difficulty']} passed quality and "
    f"difficulty; S1's diversity draw over {sets['s1k']['types']} problem "
    f"types kept {n} ({sets['s1k']['carry']:.0%} with a carry), the random "
    f"control {n} ({sets['random1k']['carry']:.0%} with a carry, "
    f"{sets['random1k']['teacher_correct']:.1%} of its traces right). "
    f"After SFT on each, held-out greedy accuracy on "
    f"{results['sizes']['eval_prompts']} problems: s1k "
    f"{sel['s1k']:.1%} +- {se('wait', 0):.1%}, random1k "
    f"{sel['random1k']:.1%} +- "
    f"{results['points']['random1k']['wait']['0']['accuracy_se']:.1%} "
    f"(the student before: {results['student_before'][0]:.1%}); curated "
    f"{'is' if curated else 'is NOT'} at least as good as random. "
    f"Budget forcing on the s1k student: forcing the end of thinking after "
    f"{budgets[0]} tokens gives {acc[0]:.1%} +- {se('budget', budgets[0]):.1%}"
    f" ({tok[0]:.1f} thinking tokens on average), after {budgets[-1]} "
    f"{acc[-1]:.1%} +- {se('budget', budgets[-1]):.1%} ({tok[-1]:.1f}): "
    f"accuracy {'rises' if scaled else 'does NOT rise'} with the budget. "
    f"Appending `Wait` when the model ends its thinking (0/1/2/4 times): "
    f"{waits}. S1's 1,000 of 59K questions are {n} of {pool['size']} "
    f"here. SFT step time on this (shared) machine: {times} (a rerun in "
    f"the same workdir resumes the models already trained)." + _failure(results)
  )


def _failure(results: dict) -> str:
  """Says so when distillation left the students below where they began."""
  before = results["student_before"][0]
  best = max(results["selection"].values())
  if best >= before:
    return ""
  steps = results["trained"]["s1k"]["sft_steps"]
  t = results["trained"]["teacher"]
  return (
    f" Not reproduced at this scale: after {steps} SFT steps on the "
    f"selected traces both students are far below the student before "
    f"({best:.1%} at best against {before:.1%}), so neither the selection "
    f"nor the budget comparison says anything about S1. The 0.8M-parameter "
    f"student, trained on short traces, does not learn the long traces' "
    f"arithmetic from {results['sets']['s1k']['size']} examples (it "
    f"miscopies operands); the teacher needed {t['sft_steps']} steps from "
    f"scratch to reach {t['accuracy']:.1%}. A student already fluent in the "
    f"long format (trained on an erring teacher's verbose traces) is the "
    f"fix to try."
  )


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
