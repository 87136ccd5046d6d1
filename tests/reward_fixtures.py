"""Misbehaving user rewards for the reward runner tests."""

import os
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
