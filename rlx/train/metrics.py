"""Metrics: `metrics.jsonl`, TensorBoard event files and PNG plots."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

# (title, metric key) of the standard plots.
PLOTS = (
  ("reward", "train/reward"),
  ("held-out accuracy", "eval/accuracy"),
  ("response length (tokens)", "train/response_length"),
  ("KL to reference", "update/kl"),
  ("entropy", "update/entropy"),
)


def _clean(value):
  value = float(value)
  return value if math.isfinite(value) else None


class MetricsWriter:
  """Appends one JSON line per record and mirrors scalars to TensorBoard.

  `enabled=False` (processes other than 0 of a multi-host run) writes
  nothing.
  """

  def __init__(
    self, workdir: str, tensorboard: bool = True, enabled: bool = True
  ):
    os.makedirs(workdir, exist_ok=True)
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = enabled
    self._tb = None
    if tensorboard and enabled:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict, phase: str = "rl") -> None:
    if not self.enabled:
      return
    record = {"phase": phase, "step": int(step)}
    record.update({k: _clean(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:  # reopened: resume may rewrite it
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for key, value in record.items():
        if key not in ("phase", "step") and value is not None:
          self._tb.add_scalar(f"{phase}/{key}", value, step)
      self._tb.flush()

  def truncate(self, keep) -> None:
    """`truncate_metrics(workdir, keep)` where enabled."""
    if self.enabled:
      truncate_metrics(self.workdir, keep)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_metrics(
  workdir: str, phase: str | None = None, having: str | None = None
) -> list[dict]:
  """The run's metric records in order; with `phase`, only that phase's
  (`sft`, `rl`, ...), with `having`, only those that hold that metric
  (`eval/accuracy`: the evaluations)."""
  records = _read_records(workdir)
  if phase is not None:
    records = [r for r in records if r.get("phase") == phase]
  if having is not None:
    records = [r for r in records if having in r]
  return records


def curve(records: list[dict], key: str) -> list[float]:
  """`key`'s value in each record (NaN where a record lacks it)."""
  return [float(r.get(key, float("nan"))) for r in records]


def _read_records(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue  # a line cut short by a kill
  return records


def truncate_metrics(workdir: str, keep) -> None:
  """Rewrite metrics.jsonl with only the records `keep(record)` accepts.

  A resumed run drops what it logged after its last checkpoint, since it
  is about to log those steps again.
  """
  records = [r for r in read_metrics(workdir) if keep(r)]
  path = os.path.join(workdir, METRICS_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  os.replace(tmp, path)


def _eval_records(records: list[dict], phase: str) -> list[dict]:
  return [
    r for r in records if r.get("phase") == phase and "eval/accuracy" in r
  ]


def categories(record: dict) -> list[str]:
  """The problem categories a record's evaluation was split by."""
  return sorted(
    k.split("/")[1]
    for k in record
    if k.startswith("eval/") and k.count("/") == 2 and k.endswith("/accuracy")
  )


def plot_metrics(workdir: str, title: str | None = None) -> str | None:
  """Draw the run into `workdir/plots.png`: the SFT loss, the RL curves
  (a KL panel says so when no KL was computed, i.e. beta is 0), and RL
  against the SFT control over step time when the run has one. `title`
  (default: the workdir's name) heads the figure. Drawn without pyplot,
  so a notebook's matplotlib backend is left alone."""
  from matplotlib.figure import Figure

  panels = plot_panels(read_metrics(workdir))
  if not panels:
    return None
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig = Figure(figsize=(4.6 * cols, 3.4 * rows))
  axes = fig.subplots(rows, cols)
  axes = np.atleast_1d(axes).ravel()
  for ax, (panel_title, xlabel, lines) in zip(axes, panels):
    ax.set_title(panel_title, fontsize=9)
    if isinstance(lines, str):  # a note instead of curves
      ax.text(0.5, 0.5, lines, ha="center", va="center", fontsize=9)
      ax.set_xticks([])
      ax.set_yticks([])
      continue
    for label, pts, style in lines:
      pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
      marker = "o" if len(pts) < 30 else None
      ax.plot(pts[:, 0], pts[:, 1], style, marker=marker, label=label, ms=3)
    ax.set_xlabel(xlabel)
    if len(lines) > 1:
      ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
  for ax in axes[len(panels) :]:
    ax.axis("off")
  if title is None:
    title = os.path.basename(os.path.abspath(workdir))
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  out = os.path.join(workdir, "plots.png")
  fig.savefig(out, dpi=100)
  return out


def plot_panels(records: list[dict]) -> list[tuple]:
  """The panels `plot_metrics` draws, as `(title, xlabel, lines)` with
  `lines` a list of `(label, [(x, y)], style)`, or a note (a string) where
  a standard panel has nothing to show."""
  rl = [r for r in records if r.get("phase") == "rl"]
  sft = [r for r in records if r.get("phase") == "sft"]
  panels = []  # (title, xlabel, [(label, points, style)] or a note)
  loss = [(r["step"], r["update/loss"]) for r in sft if "update/loss" in r]
  if loss:
    panels.append(("SFT loss", "SFT step", [("update/loss", loss, "-")]))
  for panel_title, key in PLOTS:
    points = [(r["step"], r[key]) for r in rl if r.get(key) is not None]
    if not points:
      if key == "update/kl" and any("update/loss" in r for r in rl):
        note = "no KL computed:\nthe KL coefficient is 0\n(algo.options.beta)"
        panels.append((panel_title, "RL step", note))
      continue
    lines = [(key, points, "-")]
    if key == "eval/accuracy":
      for c in categories(rl[0]):
        k = f"eval/{c}/accuracy"
        lines.append((k, [(r["step"], r[k]) for r in rl if k in r], "--"))
    panels.append((panel_title, "RL step", lines))
  control = _eval_records(records, "control")
  if control:
    first = _eval_records(records, "rl")[:1]
    lines = []
    phases = (("RL", _eval_records(records, "rl")), ("SFT control", control))
    for color, (phase, evals) in zip(("C0", "C3"), phases):
      if phase == "SFT control":
        evals = first + evals  # both start from the SFT model
      groups = ["", *(f"{c}/" for c in categories(first[0]))]
      for style, group in zip(("-", "--", ":"), groups):
        k = f"eval/{group}accuracy"
        pts = [(r["time/elapsed_s"], r[k]) for r in evals if k in r]
        label = f"{phase}: {group.strip('/') or 'all'}"
        lines.append((label, pts, color + style))
    if "teacher/majority_accuracy" in first[0]:
      end = max(r["time/elapsed_s"] for r in control)
      y = first[0]["teacher/majority_accuracy"]
      lines.append(("teacher: all", [(0, y), (end, y)], "k-."))
    panels.insert(
      0, ("held-out greedy accuracy: RL vs SFT control", "step time (s)", lines)
    )
  return panels


def summarise_run(records: list[dict]) -> dict:
  """The held-out evaluations that sum a run up: `before` (after SFT, with
  the teacher's metrics), `after` (the last RL evaluation) and `control`
  (the last evaluation of the SFT control), where the run has them;
  `no_sft: True` when there was no SFT phase (`before` is then the initial
  model)."""
  rl, control = _eval_records(records, "rl"), _eval_records(records, "control")
  summary = {}
  if rl:
    summary.update(before=rl[0], after=rl[-1])
    if not any(r.get("phase") == "sft" for r in records):
      summary["no_sft"] = True
  if control:
    summary["control"] = control[-1]
  return summary


def write_summary(workdir: str, summary: dict) -> None:
  with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
    json.dump(summary, f, indent=1)


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def num_eval_prompts(record: dict) -> int:
  """How many held-out prompts an evaluation record averages."""
  return int(record.get("eval/num_prompts", 0))


def format_summary(summary: dict, markdown: bool = False) -> str:
  """A short table of held-out accuracy (+- its standard error) per phase:
  greedy, per problem category and mean@k. The teacher's row gives its
  most likely answer under greedy and its expected accuracy under mean@k.
  """
  before = summary.get("before")
  if not before:
    return "no held-out evaluation was run"
  cats = categories(before)
  k = next((m[5:] for m in before if re.fullmatch(r"eval/mean@\d+", m)), None)
  columns = ["accuracy", *(f"{c}/accuracy" for c in cats), *([k] if k else [])]
  header = ["", "greedy", *(f"greedy {c}" for c in cats), *([k] if k else [])]

  def cell(record, prefix, name):
    if f"{prefix}/{name}" not in record:
      return "-"
    v, se = record[f"{prefix}/{name}"], record.get(f"{prefix}/{name}_se", 0)
    return f"{v:.1%} +- {se:.1%}"

  rows = []
  if "teacher/accuracy" in before:
    names = ["majority_accuracy", *(f"{c}/majority_accuracy" for c in cats)]
    names += ["accuracy"] if k else []
    rows.append(["teacher", *(cell(before, "teacher", n) for n in names)])
  start = "before RL" if summary.get("no_sft") else "after SFT"
  rows.append([start, *(cell(before, "eval", n) for n in columns)])
  for label, key in (("after RL", "after"), ("SFT control", "control")):
    if key in summary:
      r = summary[key]
      label += f" ({r['step']} steps, {r.get('time/elapsed_s', 0):.0f} s)"
      rows.append([label, *(cell(r, "eval", n) for n in columns)])
  if markdown:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(r) + " |" for r in lines)
  table = [header, *rows]
  widths = [max(len(r[i]) for r in table) for i in range(len(header))]
  return "\n".join(
    "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in table
  )
