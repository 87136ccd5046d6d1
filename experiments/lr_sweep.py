"""Which RL learning rate does not damage the SFT model? Measure it.

  python experiments/lr_sweep.py \\
    --config=experiments/configs/grpo_arithmetic.py \\
    --workdir=runs/lr_sweep --lrs=1e-5,3e-5,1e-4,3e-4 --steps=50

runs the config's SFT warm-up once, then a short RL phase from it at each
learning rate (no SFT control), and prints held-out greedy accuracy after
SFT and after RL, overall and per problem class. A rate is safe when the
classes that SFT already solves hold still. `--readme_section=NAME` also
writes the table into the README section NAME.
"""

import os
import shutil
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import readme  # noqa: E402
from rlx import train  # noqa: E402
from rlx.train import metrics  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/lr_sweep", "Output dir.")
_LRS = flags.DEFINE_list("lrs", ["1e-5", "3e-5", "1e-4", "3e-4"], "")
_STEPS = flags.DEFINE_integer("steps", 50, "RL steps at each rate.")
_SECTION = flags.DEFINE_string("readme_section", None, "README section.")


def cell(record: dict, key: str) -> str:
  return f"{record[key]:.1%} +- {record[key + '_se']:.1%}"


def main(argv):
  del argv
  base = _CONFIG.value
  base.train.progress = False
  base.control.enabled = False
  sft_dir = os.path.join(_WORKDIR.value, "sft")
  config = base.copy_and_resolve_references()
  config.train.steps = 0
  before = train.run(config, sft_dir)["before"]
  classes = metrics.categories(before)
  keys = ["eval/accuracy", *(f"eval/{c}/accuracy" for c in classes)]
  rows = [["after SFT", *(cell(before, k) for k in keys)]]
  for lr in _LRS.value:
    workdir = os.path.join(_WORKDIR.value, f"lr_{lr}")
    for part in ("tokenizer", os.path.join("checkpoints", "sft")):
      if not os.path.exists(os.path.join(workdir, part)):
        shutil.copytree(
          os.path.join(sft_dir, part), os.path.join(workdir, part)
        )
    config = base.copy_and_resolve_references()
    config.optimizer.learning_rate = float(lr)
    config.train.steps = _STEPS.value
    config.train.eval_every = 0
    config.train.export = False
    after = train.run(config, workdir)["after"]
    rows.append([f"RL at lr {lr}", *(cell(after, k) for k in keys)])
    print(rows[-1], flush=True)
  header = ["", "greedy", *(f"greedy {c}" for c in classes)]
  lines = [header, ["---"] * len(header), *rows]
  table = "\n".join("| " + " | ".join(r) + " |" for r in lines)
  text = (
    f"After {_STEPS.value} RL steps from the same SFT model, held-out "
    f"accuracy on {metrics.num_eval_prompts(before)} prompts (`python "
    f"experiments/lr_sweep.py {' '.join(sys.argv[1:])}`):\n\n{table}"
  )
  print(text)
  if _SECTION.value:
    readme.replace_section(readme.README, _SECTION.value, text)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
