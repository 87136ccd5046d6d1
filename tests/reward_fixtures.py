"""Misbehaving user rewards for the reward runner tests."""

import os
import signal
import subprocess
import time


def ones(prompts, completions, **unused):
  return [1.0] * len(completions)


def raises(prompts, completions, **unused):
  raise RuntimeError("boom")


def raises_on_bad(prompts, completions, **unused):
  if any("bad" in c for c in completions):
    raise RuntimeError("bad sample")
  return [float(len(completions))] * len(completions)


def sleeps_forever(prompts, completions, **unused):
  time.sleep(3600)


def sleeps_on_hang(prompts, completions, **unused):
  if any("hang" in c for c in completions):
    time.sleep(3600)
  return [1.0] * len(completions)


def returns_none(prompts, completions, **unused):
  return None


def returns_invalid(prompts, completions, **unused):
  table = {"none": None, "nan": float("nan"), "inf": float("inf"), "s": "1"}
  return [table.get(c, 1.0) for c in completions]


def wrong_length(prompts, completions, **unused):
  return [1.0] * (len(completions) + 1)


def exits(prompts, completions, **unused):
  os._exit(3)


def prints(prompts, completions, **unused):
  print("noise on stdout\n{not json")
  return [2.0] * len(completions)


def echo_fields(prompts, completions, *, answer, scale=1.0, **unused):
  return [scale * float(a) for a in answer]


def returns_huge(prompts, completions, **unused):
  """Finite in float64, inf in float32 or out of any sane bound."""
  table = {"1e300": 1e300, "1e39": 1e39, "2e6": 2e6, "int": 10**400}
  return [table.get(c, 1.0) for c in completions]


def can_signal(prompts, completions, **unused):
  """1.0 where signal 0 (a permission check, harmless) to the target is
  allowed: the trainer, its process group, every process, or a child."""
  trainer = os.getppid()
  scores = []
  for c in completions:
    child = subprocess.Popen(["sleep", "30"])
    try:
      if c == "trainer":
        os.kill(trainer, 0)
      elif c == "group":
        os.killpg(os.getpgid(trainer), 0)
      elif c == "all":
        os.kill(-1, 0)
      else:
        os.kill(child.pid, signal.SIGKILL)
      scores.append(1.0)
    except OSError:
      scores.append(0.0)
    child.kill()
    child.wait()
  return scores


def kills_trainer(prompts, completions, **unused):
  os.kill(os.getppid(), signal.SIGKILL)
  return [1.0] * len(completions)


def allocates(prompts, completions, **unused):
  """Writes the number of MiB in each completion."""
  for c in completions:
    block = bytearray(int(c) << 20)
    block[:: 1 << 12] = b"\1" * len(block[:: 1 << 12])
    del block
  return [1.0] * len(completions)


def takes_one_arg(completions):
  return [1.0] * len(completions)
