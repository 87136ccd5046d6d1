"""The reproduction scaffold's cost line: CPU time and load are measured,
not guessed."""

import time

from experiments.reproductions import common


def test_cpu_seconds_counts_this_process_work():
  """Against Python's own clock of this process's CPU time, whatever the
  machine's load."""
  before, start = common.cpu_seconds(), time.process_time()
  while time.process_time() - start < 0.3:
    pass
  spent = time.process_time() - start
  assert abs(common.cpu_seconds() - before - spent) < 0.05


def test_load_meter_samples_while_running():
  meter = common.LoadMeter(every_s=0.05)
  time.sleep(0.3)
  assert meter.stop() >= 0 and len(meter.samples) >= 3


def test_cost_line_names_what_was_measured():
  line = common.cost(dict(wall_s=600.0, cpu_s=1080.0, load_average=3.25))
  assert "wall time 10.0 min at load average 3.2" in line
  assert "CPU time 18.0 min" in line


def test_cost_line_says_when_a_run_continued_an_earlier_one():
  """A rerun into a filled workdir resumes its checkpoints: its wall time
  is not the run's cost, and the line must say so."""
  run = dict(wall_s=60.0, cpu_s=60.0, load_average=1.0)
  assert "continued" not in common.cost(run)
  assert "continued" not in common.cost(dict(run, continued=False))
  assert "not counted" in common.cost(dict(run, continued=True))
