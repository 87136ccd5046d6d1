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
import shutil
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
sys.path.insert(0, ROOT)

from experiments import readme  # noqa: E402

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


def publish(name: str, text: str, figure: str, cmd: str, wall_s: float):
  """The README section `name`: the paragraph, the command, the figure."""
  target = os.path.join("docs", f"{name}.png")
  shutil.copyfile(figure, os.path.join(ROOT, target))
  section = "\n".join(
    [
      text,
      "",
      f"Produced by `{cmd}` (wall time {wall_s / 60:.1f} min; "
      "`results.json` in the workdir).",
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
    os.makedirs(workdir, exist_ok=True)
    if FROM_RESULTS.value:
      results = read_results(workdir)
      path = os.path.join(workdir, f"{name}.png")
      path = figure(results, path) if figure else path
    else:
      start = time.perf_counter()
      results, path = run(workdir, QUICK.value)
      results["wall_s"] = time.perf_counter() - start
      write_results(workdir, results)
    print(paragraph(results))
    print(f"results: {os.path.join(workdir, 'results.json')}, figure: {path}")
    if README.value:  # a --quick run says so in the command it quotes
      cmd = command(name, QUICK.value, workdir)
      publish(name, paragraph(results), path, cmd, results["wall_s"])

  flags.mark_flag_as_required("workdir")
  app.run(_main)
