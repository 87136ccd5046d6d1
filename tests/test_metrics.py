"""Plots: an SFT panel, a note where the KL panel has nothing to show, and
the run's name on the figure."""

import os

from rlx.train import metrics


def _write_run(workdir, kl: bool):
  writer = metrics.MetricsWriter(str(workdir), tensorboard=False)
  for step in range(1, 4):
    writer.write(step, {"update/loss": 2.0 / step}, "sft")
  for step in range(0, 3):
    record = {"train/reward": 0.1 * step, "update/loss": 0.5}
    if kl:
      record["update/kl"] = 0.01 * step
    if step in (0, 2):
      record.update({"eval/accuracy": 0.5, "eval/carry/accuracy": 0.2})
    writer.write(step, record, "rl")
  writer.close()


def test_panels_show_sft_and_say_why_kl_is_missing(tmp_path):
  _write_run(tmp_path / "no_kl", kl=False)
  panels = {
    p[0]: p
    for p in metrics.plot_panels(metrics.read_metrics(tmp_path / "no_kl"))
  }
  title, xlabel, lines = panels["SFT loss"]
  assert xlabel == "SFT step" and [p[0] for p in lines[0][1]] == [1, 2, 3]
  assert isinstance(panels["KL to reference"][2], str)  # a note: beta is 0
  assert "beta" in panels["KL to reference"][2]

  _write_run(tmp_path / "kl", kl=True)
  panels = {
    p[0]: p for p in metrics.plot_panels(metrics.read_metrics(tmp_path / "kl"))
  }
  kl = panels["KL to reference"][2]
  assert [y for _, y in kl[0][1]] == [0.0, 0.01, 0.02]


def test_plot_has_the_run_name(tmp_path, monkeypatch):
  from matplotlib.figure import Figure

  titles = []
  real = Figure.suptitle
  monkeypatch.setattr(
    Figure,
    "suptitle",
    lambda self, t, **kw: titles.append(t) or real(self, t, **kw),
  )
  workdir = tmp_path / "my_run"
  _write_run(workdir, kl=False)
  out = metrics.plot_metrics(str(workdir))
  assert os.path.getsize(out) > 1000 and titles == ["my_run"]
  metrics.plot_metrics(str(workdir), title="lr 3e-5")
  assert titles[-1] == "lr 3e-5"


def test_summary_table_says_before_rl_when_there_was_no_sft(tmp_path):
  _write_run(tmp_path / "sft", kl=False)
  summary = metrics.summarise_run(metrics.read_metrics(tmp_path / "sft"))
  assert "no_sft" not in summary
  assert "after SFT" in metrics.format_summary(summary)
  records = [
    r for r in metrics.read_metrics(tmp_path / "sft") if r["phase"] == "rl"
  ]
  summary = metrics.summarise_run(records)
  table = metrics.format_summary(summary)
  assert summary["no_sft"] and "before RL" in table and "SFT" not in table


def test_read_metrics_picks_a_phase_and_the_records_holding_a_metric(tmp_path):
  _write_run(tmp_path, kl=False)
  everything = metrics.read_metrics(tmp_path)
  assert len(everything) == 6
  rl = metrics.read_metrics(tmp_path, phase="rl")
  assert [r["step"] for r in rl] == [0, 1, 2]
  assert rl == [r for r in everything if r["phase"] == "rl"]
  evals = metrics.read_metrics(tmp_path, phase="rl", having="eval/accuracy")
  assert [r["step"] for r in evals] == [0, 2]
  assert len(metrics.read_metrics(tmp_path, having="update/loss")) == 6
  assert metrics.curve(rl, "train/reward") == [0.0, 0.1, 0.2]
  nan = metrics.curve(rl, "eval/accuracy")[1]
  assert nan != nan


def test_metrics_writer_is_a_context_manager_that_closes(tmp_path):
  closed = []
  with metrics.MetricsWriter(str(tmp_path), tensorboard=False) as writer:
    writer.close = lambda: closed.append(True)
    writer.write(0, {"train/reward": 1.0})
  assert closed == [True]
  assert metrics.read_metrics(tmp_path)[0]["train/reward"] == 1.0
