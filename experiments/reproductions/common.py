"""What every reproduction script shares: its flags, `results.json`, the
figure and the README paragraph.

A script defines `run(workdir, quick) -> (results, figure_path)` and
`paragraph(results) -> str`, then calls `main(name, run, paragraph)`:

  python experiments/reproductions/NAME.py --workdir=DIR [--quick] [--readme]
    [--from_results]

writes DIR/results.json and DIR/NAME.png; with `--readme` it also copies
the figure to docs/NAME.png and replaces the README section between
`<!-- BEGIN NAME -->` and `<!-- END NAME -->` with the paragraph, the
command (with `--quick` where that ran) and the figure, so that no number
there is typed by hand.
"""

import json
import os
import resource
import shutil
import sys
import threading
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
sys.path.insert(0, ROOT)

from experiments import readme  # noqa: E402
from rlx import train  # noqa: E402

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
QUICK = flags.DEFINE_bool(
  "quick", False, "Smaller sizes, the same code path (about 2 minutes)."
)
README = flags.DEFINE_bool(
  "readme", False, "Write the README section and docs/NAME.png."
)
FROM_RESULTS = flags.DEFINE_bool(
  "from_results",
  False,
  "Do not run: take DIR/results.json and DIR/NAME.png of an earlier run "
  "(to rewrite its paragraph after a change of wording).",
)


def mean_se(x) -> tuple[float, float]:
  """The mean of `x` and its standard error (sample std / sqrt(n))."""
  x = np.asarray(x, np.float64)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def over_replicates(runs: list[dict]) -> dict:
  """Per metric of each replicate's {metric: [value per point]}: the mean
  over replicates (`metric`) and every replicate's list
  (`metric_replicates`)."""
  out = {}
  for k in runs[0]:
    x = np.array([r[k] for r in runs])  # [replicates, points]
    out[k] = x.mean(axis=0).tolist()
    out[k + "_replicates"] = x.tolist()
  return out


def sft_only(config, workdir: str) -> str:
  """`rlx.train.run` of `config` with no RL step (SFT, its evaluation and
  the HF export); returns the export's directory."""
  config = config.copy_and_resolve_references()
  config.train.steps = 0
  train.run(config, workdir)
  return os.path.join(workdir, "export")


def write_results(workdir: str, results: dict) -> str:
  path = os.path.join(workdir, "results.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=1)
  return path


def read_results(workdir: str) -> dict:
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def command(name: str, quick: bool, workdir: str) -> str:
  flags_ = f" --workdir={workdir}" + (" --quick" if quick else "")
  return f"python experiments/reproductions/{name}.py{flags_}"


def cpu_seconds() -> float:
  """User + system CPU time of this process and its finished children."""
  return sum(
    u.ru_utime + u.ru_stime
    for u in map(
      resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
  )


class LoadMeter:
  """The machine's mean 1-minute load average while a run lasts, sampled
  every `every_s` seconds from a daemon thread."""

  def __init__(self, every_s: float = 20.0):
    self.samples = [os.getloadavg()[0]]
    self._stop = threading.Event()
    self._thread = threading.Thread(
      target=self._sample, args=(every_s,), daemon=True
    )
    self._thread.start()

  def _sample(self, every_s: float):
    while not self._stop.wait(every_s):
      self.samples.append(os.getloadavg()[0])

  def stop(self) -> float:
    self._stop.set()
    return sum(self.samples) / len(self.samples)


def cost(results: dict) -> str:
  """The run's cost as measured: wall time, the machine's load average
  (other jobs stretch the wall time) and CPU time, which they do not."""
  line = (
    f"wall time {results['wall_s'] / 60:.1f} min at load average "
    f"{results['load_average']:.1f} on {os.cpu_count()} cores; CPU time "
    f"{results['cpu_s'] / 60:.1f} min"
  )
  if results.get("continued"):
    line += (
      "; this invocation continued a workdir an earlier one had filled, "
      "whose time is not counted"
    )
  return line


def publish(name: str, text: str, figure: str, cmd: str, results: dict):
  """The README section `name`: the paragraph, the command, the figure."""
  target = os.path.join("docs", f"{name}.png")
  shutil.copyfile(figure, os.path.join(ROOT, target))
  section = "\n".join(
    [
      text,
      "",
      f"Produced by `{cmd}` ({cost(results)}; `results.json` in the workdir).",
      "",
      f"![{name}]({target})",
    ]
  )
  readme.replace_section(readme.README, name, section)


def main(name: str, run, paragraph, figure=None):
  """The script's entry point: runs, writes results.json (with the wall
  time) and, with --readme, the README section. With --from_results,
  `figure(results, path)` (if given) draws the figure again."""

  def _main(argv):
    del argv
    workdir = WORKDIR.value
    continued = os.path.isdir(workdir) and bool(os.listdir(workdir))
    os.makedirs(workdir, exist_ok=True)
    if FROM_RESULTS.value:
      results = read_results(workdir)
      path = os.path.join(workdir, f"{name}.png")
      path = figure(results, path) if figure else path
    else:
      start, cpu_start, load = time.perf_counter(), cpu_seconds(), LoadMeter()
      results, path = run(workdir, QUICK.value)
      results["wall_s"] = time.perf_counter() - start
      results["cpu_s"] = cpu_seconds() - cpu_start
      results["load_average"] = load.stop()
      results["continued"] = continued  # resumed checkpoints: cost is partial
      write_results(workdir, results)
    print(paragraph(results))
    print(f"results: {os.path.join(workdir, 'results.json')}, figure: {path}")
    if README.value:  # a --quick run says so in the command it quotes
      cmd = command(name, QUICK.value, workdir)
      publish(name, paragraph(results), path, cmd, results)

  flags.mark_flag_as_required("workdir")
  app.run(_main)
