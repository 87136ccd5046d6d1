"""The notebooks run top to bottom, as a user runs them.

Each is executed with nbclient in a fresh kernel whose only difference
from a user's is `RLX_NOTEBOOK_QUICK=1` (fewer steps, smaller sizes). The
kernel gets this checkout on its path and none of the test setup's
simulated devices. Outputs must be stripped before commit (checked here,
cheaply).
"""

import glob
import os
import subprocess
import sys

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_notebooks_are_committed_without_outputs():
  assert len(NOTEBOOKS) >= 2
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
      if cell.cell_type == "code":
        name = os.path.basename(path)
        assert cell.outputs == [], f"{name}: strip the outputs"
        assert cell.execution_count is None, f"{name}: strip the outputs"


def test_import_rlx_reaches_every_subpackage():
  code = (
    "import sys, rlx; assert 'jax' not in sys.modules; "
    "print(rlx.models.load_pretrained.__name__, rlx.train.run.__name__, "
    "rlx.data.make_task.__name__, rlx.decoding.make_sampler.__name__)"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env={**os.environ, "PYTHONPATH": ROOT},
    check=True,
  )
  assert out.stdout.split() == [
    "load_pretrained",
    "run",
    "make_task",
    "make_sampler",
  ]


def _execute(name: str, cwd, monkeypatch, timeout: int = 900):
  """Runs notebooks/NAME top to bottom in `cwd`; returns the executed
  notebook (an error in any cell raises `CellExecutionError`)."""
  from nbclient import NotebookClient

  monkeypatch.setenv("RLX_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("PYTHONPATH", ROOT)
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # the user's devices
  nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
  client = NotebookClient(
    nb,
    timeout=timeout,
    kernel_name="python3",
    resources={"metadata": {"path": str(cwd)}},
  )
  client.execute()
  nbformat.write(nb, os.path.join(cwd, f"executed_{name}"))  # to look at
  return nb


def _text(nb) -> str:
  """Every stream and text/plain output of the executed notebook."""
  parts = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      parts.append(out.get("text", ""))
      parts.append(out.get("data", {}).get("text/plain", ""))
  return "\n".join(parts)


@pytest.mark.slow
def test_quickstart_runs(tmp_path, monkeypatch):
  nb = _execute("quickstart.ipynb", tmp_path, monkeypatch)
  text = _text(nb)
  assert f"rlx from {ROOT}" in text  # the install cell found this checkout
  workdir = tmp_path / "runs" / "quickstart_quick"
  assert (workdir / "summary.json").exists()
  assert (workdir / "export" / "config.json").exists()
  assert "after RL" in text  # the summary table
  images = [
    out
    for cell in nb.cells
    for out in cell.get("outputs", [])
    if "image/png" in out.get("data", {})
  ]
  assert images, "the metrics plot is shown inline"
  assert "best beam" in text and "forced tokens: 1" in text


@pytest.mark.slow
def test_grpo_your_model_runs_on_a_hf_checkpoint(tmp_path, monkeypatch):
  """On a tiny checkpoint written by `transformers` with an HF tokenizer,
  and a JSONL dataset, at the notebook's two default paths."""
  transformers = pytest.importorskip("transformers")
  import json

  from hf_helpers import make_hf_checkpoint, make_hf_tokenizer

  rows = [
    {"prompt": f"{a}+{b}=", "answer": str(a + b)}
    for a in range(10)
    for b in range(10)
  ]
  with open(tmp_path / "my_data.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  ckpt = tmp_path / "my_model"
  ckpt.mkdir()
  texts = [r["prompt"] + "<think></think><answer>0</answer>" for r in rows]
  make_hf_tokenizer(ckpt, texts)
  vocab = len(transformers.AutoTokenizer.from_pretrained(str(ckpt)))
  make_hf_checkpoint(
    ckpt,
    "llama",
    vocab_size=vocab,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=3,
  )
  nb = _execute("grpo_your_model.ipynb", tmp_path, monkeypatch)
  text = _text(nb)
  assert "made a tiny random checkpoint" not in text  # ours was used
  assert (tmp_path / "my_reward.py").exists()
  assert "[0.0]" not in text and "[1.0]" in text  # the reward's own check
  workdir = tmp_path / "runs" / "grpo_your_model"
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  rl = [r for r in records if r["phase"] == "rl" and "train/reward" in r]
  assert len(rl) == 3
  # The user's reward ran in the worker on every sample (none unscored);
  # metrics name it by its module:function.
  key = "train/reward_failures/my_reward:reward"
  assert all(r[key] == 0 and "train/reward/my_reward:reward" in r for r in rl)
  assert "same tokens: True" in text  # HF reads the export as rlx does
