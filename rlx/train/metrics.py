"""Metrics: `metrics.jsonl`, TensorBoard event files and PNG plots."""

from __future__ import annotations

import json
import math
import os

import numpy as np

METRICS_FILE = "metrics.jsonl"

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


def read_metrics(workdir: str) -> list[dict]:
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


def plot_metrics(workdir: str, phase: str = "rl") -> str | None:
  """Draw the standard curves of `phase` into `workdir/plots.png`."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = [r for r in read_metrics(workdir) if r.get("phase") == phase]
  panels = []
  for title, key in PLOTS:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    if points:
      panels.append((title, key, np.asarray(points, dtype=np.float64)))
  if not panels:
    return None
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows))
  axes = np.atleast_1d(axes).ravel()
  for ax, (title, key, pts) in zip(axes, panels):
    ax.plot(pts[:, 0], pts[:, 1], marker="o" if len(pts) < 30 else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  for ax in axes[len(panels) :]:
    ax.axis("off")
  fig.tight_layout()
  out = os.path.join(workdir, "plots.png")
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out
