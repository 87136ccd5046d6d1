"""Reward functions by name: built-ins, or user `"module:function"`."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable

from rlx.rewards import countdown, honesty, length, r1

RewardFn = Callable[..., list]

BUILTIN_REWARDS: dict[str, RewardFn] = {
  "format": r1.format_reward,
  "accuracy": r1.accuracy_reward,
  "accuracy_if_format": r1.accuracy_if_format_reward,
  "countdown": countdown.countdown_reward,
  "honesty": honesty.honesty_reward,
  "kimi_length": length.kimi_length_reward,
  "overlong": length.overlong_reward,
}

# Task fields a trainer passes; they are not reward parameters.
TASK_FIELDS = frozenset(
  {"answer", "numbers", "target", "completion_lengths", "group_size"}
)

_USER_NAME_RE = re.compile(
  r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*",
  re.ASCII,
)


def check_reward_name(name: str) -> None:
  """Raises ValueError unless `name` is a built-in or `module:function`."""
  if name in BUILTIN_REWARDS:
    return
  if not isinstance(name, str) or not _USER_NAME_RE.fullmatch(name):
    raise ValueError(
      f"unknown reward {name!r}: use one of {sorted(BUILTIN_REWARDS)} or "
      "'package.module:function'"
    )


def get_reward_fn(name: str) -> RewardFn:
  """Returns the reward function for a name, importing user modules."""
  check_reward_name(name)
  if name in BUILTIN_REWARDS:
    return BUILTIN_REWARDS[name]
  module_name, _, attr = name.partition(":")
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(
      f"reward {name!r}: cannot import {module_name}: {e}"
    ) from e
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"reward {name!r}: {module_name} has no {attr!r}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise ValueError(f"reward {name!r} is not callable")
  return obj


def check_builtin_kwargs(name: str, kwargs: dict) -> None:
  """Validates parameters of a built-in reward; no-op for user rewards.

  Unknown parameter names raise TypeError. The reward is then called once
  on an empty batch, so missing or bad values (e.g. `cache_len > max_len`)
  raise here rather than at every training step.
  """
  fn = BUILTIN_REWARDS.get(name)
  if fn is None:
    return
  params = {
    p.name: p
    for p in inspect.signature(fn).parameters.values()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
  }
  unknown = sorted(set(kwargs) - set(params))
  if unknown:
    allowed = sorted(set(params) - TASK_FIELDS)
    raise TypeError(
      f"reward {name!r}: unknown parameters {unknown}; allowed: {allowed}"
    )
  fn([], [], **kwargs)
