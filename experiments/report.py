"""Write a run's measured results into the README, from its workdir.

  python experiments/report.py --workdir=runs/arithmetic

replaces the README section between `<!-- BEGIN NAME -->` and
`<!-- END NAME -->` (NAME from --section, default `default-run`) with the
run's summary table, the gains it measured and its figure (copied to
docs/NAME.png), so that no number there is typed by hand.
"""

import os
import shutil
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import readme  # noqa: E402
from rlx.train import metrics  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir.")
_SECTION = flags.DEFINE_string("section", "default-run", "README section.")
_COMMAND = flags.DEFINE_string(
  "command",
  "python experiments/run.py "
  "--config=experiments/configs/grpo_arithmetic.py --workdir=runs/arithmetic",
  "The command that produced the run, quoted in the README.",
)
_README = flags.DEFINE_string("readme", readme.README, "README to write.")


def points(after: dict, before: dict, key: str) -> str:
  return f"{100 * (after[key] - before[key]):+.1f} points"


def section_text(summary: dict, command: str, figure: str) -> str:
  before, after = summary["before"], summary["after"]
  lines = [
    f"Produced by `{command}` (wall time {summary['wall_s'] / 60:.1f} min, "
    f"`summary.json` and `metrics.jsonl` in the workdir); held-out "
    f"accuracy on {metrics.num_eval_prompts(before)} prompts, +- one "
    "standard error (the teacher's row: its most likely answer under "
    "greedy, its expected accuracy under mean@k):",
    "",
    metrics.format_summary(summary, markdown=True),
    "",
    f"- RL against SFT: {points(after, before, 'eval/accuracy')} greedy",
  ]
  for c in metrics.categories(before):
    key = f"eval/{c}/accuracy"
    lines[-1] += f", {points(after, before, key)} on `{c}`"
  lines[-1] += "."
  if "control" in summary:
    control = summary["control"]
    lines.append(
      f"- RL against the equal-compute SFT control: "
      f"{points(after, control, 'eval/accuracy')} greedy; the control "
      f"against SFT: {points(control, before, 'eval/accuracy')}."
    )
  lines += ["", f"![RL against the SFT control]({figure})"]
  return "\n".join(lines)


def main(argv):
  del argv
  workdir = _WORKDIR.value
  summary = metrics.summarise_run(metrics.read_metrics(workdir))
  saved = metrics.read_summary(workdir)
  if not summary or saved is None:
    raise SystemExit(f"{workdir}: no finished run (metrics.jsonl, summary)")
  summary["wall_s"] = saved["wall_s"]
  name = _SECTION.value
  figure = os.path.join("docs", f"{name}.png")  # beside the README
  target = os.path.join(os.path.dirname(_README.value), figure)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.copyfile(os.path.join(workdir, "plots.png"), target)
  text = section_text(summary, _COMMAND.value, figure)
  readme.replace_section(_README.value, name, text)
  print(text)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
