"""Reward worker process: runs reward functions for `runner.RewardRunner`.

Started as a fresh interpreter (never forked from the trainer). It speaks
JSON lines on its stdin/stdout; everything the reward functions print goes
to stderr. Requests:

- `{"op": "resolve", "name", "sys_path"}` imports a reward and checks that
  it is callable with `(prompts, completions)`.
- `{"op": "data", "prompts", "completions", "fields"}` stores a batch.
- `{"op": "call", "name", "kwargs", "start", "stop", "sys_path"}` runs the
  reward on samples `[start, stop)` of the stored batch. Fields that are
  lists as long as the batch are sliced; other fields pass unchanged.

Each reply is `{"ok": true, ...}` or `{"ok": false, "error": str}`, with
`"config_error": true` when the reward cannot be resolved at all. A call's
`"values"` hold, per sample, a float (NaN and inf included), None for a
None, or the type name of anything else (e.g. `"str"`).

Before reading requests the worker limits its writable memory and denies
itself signals to the trainer (`sandbox`); options come as JSON in
`sys.argv[2]`: `{"memory_limit_mb": int, "trainer_pid": int}`.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
import sys
import threading
import time
import traceback

from rlx.rewards import registry, sandbox

_MAX_ERROR_CHARS = 2_000


def _watch_parent(parent_pid: int) -> None:
  """Exits the worker once its parent is gone."""
  while True:
    time.sleep(1.0)
    if os.getppid() != parent_pid:
      os._exit(1)


def _value(v) -> float | str | None:
  if v is None:
    return None
  if not isinstance(v, numbers.Real):
    return type(v).__name__
  try:
    return float(v)
  except OverflowError:  # an int beyond the float range
    return math.inf if v > 0 else -math.inf
  except (TypeError, ValueError):
    return type(v).__name__


def _to_values(out) -> list | str:
  """A reward output as a list of `_value`s, or an error message."""
  if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
    return f"returned {type(out).__name__}, expected a list of floats"
  return [_value(v) for v in out]


def _error(limit_mb: int) -> str:
  error = traceback.format_exc(limit=-3)[-_MAX_ERROR_CHARS:]
  if limit_mb and isinstance(sys.exc_info()[1], MemoryError):
    error += (
      f"\n(the reward worker may write at most {limit_mb} MiB: raise "
      "reward.memory_limit_mb)"
    )
  return error


def _resolve(name: str, fns: dict, limit_mb: int) -> dict:
  """Imports a reward into `fns`; a config error reply when it cannot be."""
  if name in fns:
    return {"ok": True}
  error = None
  try:
    fn = registry.get_reward_fn(name)
  except BaseException as e:  # what the module raised, SystemExit included
    error = str(e)
    if not error.startswith(f"reward {name!r}"):  # not get_reward_fn's own
      error = f"reward {name!r}: importing it raised:\n{_error(limit_mb)}"
  else:
    try:
      inspect.signature(fn).bind_partial([], [])
    except TypeError as e:
      error = f"reward {name!r} must take (prompts, completions): {e}"
    except ValueError:
      pass  # no signature to check, e.g. a C function
  if error is not None:
    return {"ok": False, "error": error, "config_error": True}
  fns[name] = fn
  return {"ok": True}


def _slice(data: dict, start: int, stop: int) -> tuple[list, list, dict]:
  n = len(data["completions"])
  fields = {
    k: v[start:stop] if isinstance(v, list) and len(v) == n else v
    for k, v in data["fields"].items()
  }
  return data["prompts"][start:stop], data["completions"][start:stop], fields


def _extend_path(msg: dict) -> None:
  for p in reversed(msg.get("sys_path", [])):
    if p not in sys.path:
      sys.path.insert(0, p)


def _call(msg: dict, data: dict | None, fns: dict, limit_mb: int) -> dict:
  if data is None:
    return {"ok": False, "error": "no data was sent"}
  name = msg["name"]
  _extend_path(msg)
  resolved = _resolve(name, fns, limit_mb)
  if not resolved["ok"]:
    return resolved
  prompts, completions, fields = _slice(data, msg["start"], msg["stop"])
  try:
    out = fns[name](prompts, completions, **{**fields, **msg["kwargs"]})
    values = _to_values(out)
  except BaseException:  # a reward's sys.exit() is its failure, not ours
    return {"ok": False, "error": _error(limit_mb)}
  if isinstance(values, str):
    return {"ok": False, "error": values}
  return {"ok": True, "values": values}


def main() -> None:
  options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
  limit_mb = int(options.get("memory_limit_mb", 0))
  trainer = options.get("trainer_pid")
  sandbox_ok = {
    "memory": sandbox.limit_memory(limit_mb),
    "signals": trainer is None or sandbox.deny_signals_to(int(trainer)),
  }
  proto_out = os.fdopen(os.dup(1), "wb")
  proto_in = os.fdopen(os.dup(0), "rb")
  os.dup2(2, 1)
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  threading.Thread(
    target=_watch_parent, args=(os.getppid(),), daemon=True
  ).start()

  def send(reply: dict) -> None:
    proto_out.write(json.dumps(reply).encode() + b"\n")
    proto_out.flush()

  data = None
  fns = {}
  send({"ok": True, "pid": os.getpid(), "sandbox": sandbox_ok})
  for line in proto_in:
    msg = json.loads(line)
    op = msg.get("op")
    if op == "data":
      data = msg
      send({"ok": True})
    elif op == "resolve":
      _extend_path(msg)
      send(_resolve(msg["name"], fns, limit_mb))
    elif op == "call":
      send(_call(msg, data, fns, limit_mb))
    else:
      send({"ok": True, "pid": os.getpid()})


if __name__ == "__main__":
  main()
