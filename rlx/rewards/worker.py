"""Reward worker process: runs reward functions for `runner.RewardRunner`.

Started as a fresh interpreter (never forked from the trainer). It speaks
JSON lines on its stdin/stdout; everything the reward functions print goes
to stderr. Requests:

- `{"op": "data", "prompts", "completions", "fields"}` stores a batch.
- `{"op": "call", "name", "kwargs", "start", "stop", "sys_path"}` runs the
  reward on samples `[start, stop)` of the stored batch. Fields that are
  lists as long as the batch are sliced; other fields pass unchanged.

Each reply is `{"ok": true, ...}` or `{"ok": false, "error": str}`, with
`"config_error": true` when the reward cannot be resolved at all.
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import threading
import time
import traceback

from rlx.rewards import registry

_MAX_ERROR_CHARS = 2_000


def _watch_parent(parent_pid: int) -> None:
  """Exits the worker once its parent is gone."""
  while True:
    time.sleep(1.0)
    if os.getppid() != parent_pid:
      os._exit(1)


def _to_values(out) -> list | str:
  """Converts a reward output to floats (None where invalid), or an error."""
  if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
    return f"returned {type(out).__name__}, expected a list of floats"
  values = []
  for v in out:
    try:
      values.append(float(v) if isinstance(v, numbers.Real) else None)
    except (OverflowError, TypeError, ValueError):
      values.append(None)
  return values


def _slice(data: dict, start: int, stop: int) -> tuple[list, list, dict]:
  n = len(data["completions"])
  fields = {
    k: v[start:stop] if isinstance(v, list) and len(v) == n else v
    for k, v in data["fields"].items()
  }
  return data["prompts"][start:stop], data["completions"][start:stop], fields


def _call(msg: dict, data: dict | None, fns: dict) -> dict:
  if data is None:
    return {"ok": False, "error": "no data was sent"}
  name = msg["name"]
  for p in reversed(msg.get("sys_path", [])):
    if p not in sys.path:
      sys.path.insert(0, p)
  if name not in fns:
    try:
      fns[name] = registry.get_reward_fn(name)
    except Exception as e:
      return {"ok": False, "error": str(e), "config_error": True}
  prompts, completions, fields = _slice(data, msg["start"], msg["stop"])
  try:
    out = fns[name](prompts, completions, **{**fields, **msg["kwargs"]})
    values = _to_values(out)
  except Exception:
    error = traceback.format_exc(limit=-3)
    return {"ok": False, "error": error[-_MAX_ERROR_CHARS:]}
  if isinstance(values, str):
    return {"ok": False, "error": values}
  return {"ok": True, "values": values}


def main() -> None:
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
  send({"ok": True, "pid": os.getpid()})
  for line in proto_in:
    msg = json.loads(line)
    op = msg.get("op")
    if op == "data":
      data = msg
      send({"ok": True})
    elif op == "call":
      send(_call(msg, data, fns))
    else:
      send({"ok": True, "pid": os.getpid()})


if __name__ == "__main__":
  main()
