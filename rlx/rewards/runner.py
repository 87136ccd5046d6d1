"""Runs weighted reward functions with time limits and failure containment.

Every reward runs in one long-lived worker process (`rlx.rewards.worker`),
a fresh interpreter started with `subprocess` (fork + exec, safe from a
multithreaded JAX process; no `multiprocessing`, so the caller's
`__main__` is never re-imported). The worker is reused across calls and
only restarted after it was killed or died. It runs with
`JAX_PLATFORMS=cpu`, so a user reward importing JAX never grabs the
accelerator. Batches travel as JSON: task fields must be JSON-able (numpy
arrays and scalars are converted).

Containment, per reward and call:

1. The reward is called on the whole batch with a time limit of
   `timeout_s`. On timeout the worker is killed (and lazily restarted).
2. If the call raised, timed out, died, or returned something that is not a
   list of the batch's length, it is retried on chunks of `group_size`
   samples (the task field or reward parameter; else single samples), all
   retries together limited to another `timeout_s`. Samples whose chunk
   fails or is not reached in time are unscored by that reward.
3. A returned value that is None, not a real number, NaN or inf leaves that
   sample unscored by that reward.

Unscored samples are NaN for that reward, as in TRL: the weighted total
skips them (a NaN counts 0), and a sample no reward scored has total NaN,
which the GRPO advantages leave out of its group's mean and std
(`rlx.algos.advantages`). Every unscored sample counts in
`reward_failures/<name>`. With
`fail_on_error=True` the first failure raises `RewardError` instead. A user
reward that cannot be imported always raises `RewardError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlx.rewards import registry

_BOOT = (
  "import json, sys\n"
  "parent = json.loads(sys.argv[1])\n"
  "sys.path[:] = parent + [p for p in sys.path if p not in parent]\n"
  "from rlx.rewards.worker import main\n"
  "main()\n"
)
_MAX_LOGGED_ERROR_CHARS = 500


class RewardError(RuntimeError):
  """A reward failed and `fail_on_error` was set, or a reward is invalid."""


@dataclasses.dataclass(frozen=True)
class RewardSpec:
  """One weighted reward term.

  Attributes:
    name: a built-in (`registry.BUILTIN_REWARDS`) or `"package.module:fn"`.
    weight: finite multiplier of this reward in the total.
    kwargs: parameters passed to the function (JSON-able), overriding task
      fields of the same name.
  """

  name: str
  weight: float = 1.0
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    registry.check_reward_name(self.name)
    try:
      weight = float(self.weight)
    except (TypeError, ValueError):
      weight = math.nan
    if not math.isfinite(weight):
      raise ValueError(
        f"reward {self.name!r}: weight must be a finite number, got "
        f"{self.weight!r}"
      )
    if hasattr(self.kwargs, "to_dict"):
      object.__setattr__(self, "kwargs", self.kwargs.to_dict())
    if not isinstance(self.kwargs, Mapping):
      raise TypeError(
        f"reward {self.name!r}: kwargs must be a mapping, got "
        f"{type(self.kwargs).__name__}"
      )
    kwargs = dict(self.kwargs)
    try:
      json.dumps(kwargs, default=_json_default)
    except (TypeError, ValueError) as e:
      raise TypeError(
        f"reward {self.name!r}: kwargs must be JSON-able: {e}"
      ) from e
    registry.check_builtin_kwargs(self.name, kwargs)
    object.__setattr__(self, "weight", weight)
    object.__setattr__(self, "kwargs", kwargs)

  @classmethod
  def parse(cls, spec) -> RewardSpec:
    """Builds a spec from a RewardSpec, a name, a `(name, weight[,
    kwargs])` tuple, or a mapping (or ConfigDict) with keys `name`,
    `weight`, `kwargs`."""
    if isinstance(spec, cls):
      return spec
    if isinstance(spec, str):
      return cls(spec)
    if hasattr(spec, "to_dict"):
      spec = spec.to_dict()
    if isinstance(spec, Mapping):
      return cls(**spec)
    if isinstance(spec, Sequence) and 1 <= len(spec) <= 3:
      return cls(*spec)
    raise TypeError(f"cannot make a reward spec from {spec!r}")


def _json_default(obj):
  if hasattr(obj, "tolist"):
    return obj.tolist()
  if isinstance(obj, (tuple, set, frozenset)):
    return list(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON-able")


def _kill(proc: subprocess.Popen) -> None:
  if proc.poll() is None:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
      proc.kill()
  try:
    proc.wait(timeout=10)
  except subprocess.TimeoutExpired:
    pass
  for stream in (proc.stdin, proc.stdout):
    if stream is not None:
      stream.close()


@dataclasses.dataclass
class _Result:
  values: list | None = None
  error: str | None = None
  config_error: bool = False


class RewardRunner:
  """Owns the reward worker process; see the module docstring.

  Calls are serialised by a lock. Use as a context manager or call
  `close()`; the worker also exits when its parent process is gone.
  """

  def __init__(self, *, start_timeout_s: float = 60.0):
    self._start_timeout_s = start_timeout_s
    self._proc: subprocess.Popen | None = None
    self._buffer = b""
    self._data: bytes = b""
    self._data_sent = False
    self._lock = threading.Lock()
    self._finalizer = None

  @property
  def pid(self) -> int | None:
    """The worker's process id, or None when no worker is running."""
    return self._proc.pid if self._proc and self._proc.poll() is None else None

  def close(self) -> None:
    """Stops the worker; a later call starts a new one."""
    if self._finalizer is not None:
      self._finalizer()
      self._finalizer = None
    self._proc = None
    self._data_sent = False
    self._buffer = b""

  def __enter__(self) -> RewardRunner:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _start(self) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    self._proc = subprocess.Popen(
      [sys.executable, "-c", _BOOT, json.dumps(sys.path)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      env=env,
      start_new_session=True,
    )
    self._finalizer = weakref.finalize(self, _kill, self._proc)
    self._buffer = b""
    self._data_sent = False
    if self._recv(time.monotonic() + self._start_timeout_s) is None:
      self.close()
      raise RewardError(
        f"the reward worker failed to start within {self._start_timeout_s}s "
        "(its errors, if any, are on stderr)"
      )

  def _send(self, payload: bytes) -> bool:
    fd = self._proc.stdin.fileno()
    view = memoryview(payload)
    try:
      while view:
        view = view[os.write(fd, view) :]
    except OSError:
      return False
    return True

  def _recv(self, deadline: float) -> dict | None:
    """Reads one reply; None on timeout or when the worker died."""
    fd = self._proc.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in self._buffer:
      remaining = deadline - time.monotonic()
      if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
        return None
      chunk = os.read(fd, 1 << 20)
      if not chunk:
        return None
      self._buffer += chunk
    line, _, self._buffer = self._buffer.partition(b"\n")
    try:
      return json.loads(line)
    except ValueError:
      return None

  def _request(self, payload: bytes, timeout_s: float) -> dict | None:
    """Sends one request; on timeout or death kills the worker, None."""
    deadline = time.monotonic() + timeout_s
    reply = self._recv(deadline) if self._send(payload) else None
    if reply is None:
      self.close()
    return reply

  def _call(
    self, spec: RewardSpec, start: int, stop: int, timeout_s: float
  ) -> _Result:
    if self._proc is None or self._proc.poll() is not None:
      self.close()
      self._start()
    if not self._data_sent:
      if self._request(self._data, max(timeout_s, 60.0)) is None:
        return _Result(error="the reward worker died while loading data")
      self._data_sent = True
    msg = {
      "op": "call",
      "name": spec.name,
      "kwargs": spec.kwargs,
      "start": start,
      "stop": stop,
      "sys_path": sys.path,
    }
    payload = json.dumps(msg, default=_json_default).encode() + b"\n"
    reply = self._request(payload, timeout_s)
    if reply is None:
      return _Result(
        error=f"timed out after {timeout_s:.3g}s or the worker died"
      )
    if not reply["ok"]:
      return _Result(
        error=reply["error"], config_error=reply.get("config_error", False)
      )
    if len(reply["values"]) != stop - start:
      return _Result(
        error=f"returned {len(reply['values'])} values for {stop - start} "
        "completions"
      )
    return _Result(values=reply["values"])

  def _run_spec(
    self,
    spec: RewardSpec,
    n: int,
    chunk: int,
    timeout_s: float,
    fail_on_error: bool,
  ) -> tuple[np.ndarray, int]:
    """Returns per-sample values (NaN where failed) and the failure count."""
    values = np.full(n, np.nan)
    if not n:
      return values, 0
    result = self._call(spec, 0, n, timeout_s)
    if result.config_error:
      raise RewardError(f"reward {spec.name!r}: {result.error}")
    if result.values is not None:
      return values, self._store(spec, result.values, values, 0, fail_on_error)
    if fail_on_error:
      raise RewardError(f"reward {spec.name!r} failed: {result.error}")
    logging.warning(
      "reward %r failed on the batch, retrying in chunks of %d: %s",
      spec.name,
      chunk,
      result.error[-_MAX_LOGGED_ERROR_CHARS:],
    )
    if chunk >= n:
      return values, n
    failures = 0
    deadline = time.monotonic() + timeout_s
    for start in range(0, n, chunk):
      stop = min(start + chunk, n)
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        failures += n - start
        break
      result = self._call(spec, start, stop, remaining)
      if result.values is None:
        failures += stop - start
      else:
        failures += self._store(spec, result.values, values, start, False)
    return values, failures

  @staticmethod
  def _store(spec, raw, values, start, fail_on_error) -> int:
    failures = 0
    for i, v in enumerate(raw):
      if v is None or not math.isfinite(v):
        if fail_on_error:
          raise RewardError(
            f"reward {spec.name!r} returned {v!r} for completion "
            f"{start + i}; rewards must be finite numbers"
          )
        failures += 1
      else:
        values[start + i] = v
    return failures

  def compute(
    self,
    specs: Sequence,
    prompts: Sequence[str],
    completions: Sequence[str],
    task_fields: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
    fail_on_error: bool = False,
  ) -> tuple[np.ndarray, dict[str, float]]:
    """Computes the weighted total reward of each completion.

    Args:
      specs: RewardSpecs (or anything `RewardSpec.parse` takes), with
        distinct names.
      prompts: N prompts, one per completion.
      completions: N completions.
      task_fields: keyword arguments for the rewards: lists aligned with the
        completions (e.g. `answer`, `numbers`, `target`,
        `completion_lengths`) or scalars (e.g. `group_size`).
      timeout_s: time limit of one reward call on the batch (see the module
        docstring for retries).
      fail_on_error: raise `RewardError` on any failure instead of leaving
        the affected samples unscored (NaN).

    Returns:
      `(total, metrics)`: the float32 [N] sum of weight * reward over the
      rewards that scored the sample (NaN where none did), and
      `reward/<name>` (mean unweighted reward over the samples it scored),
      `reward_failures/<name>` (number of samples it did not score) and
      `reward/total` (mean total over the scored samples).
    """
    specs = [RewardSpec.parse(s) for s in specs]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
      raise ValueError(f"reward names must be distinct, got {names}")
    n = len(completions)
    if len(prompts) != n:
      raise ValueError(f"got {len(prompts)} prompts for {n} completions")
    fields = dict(task_fields or {})
    data = {
      "op": "data",
      "prompts": list(prompts),
      "completions": list(completions),
      "fields": fields,
    }
    try:
      payload = json.dumps(data, default=_json_default).encode() + b"\n"
    except (TypeError, ValueError) as e:
      raise TypeError(f"task fields must be JSON-able: {e}") from e
    total = np.zeros(n, np.float64)
    scored = np.zeros(n, bool)
    metrics = {}
    with self._lock:
      self._data = payload
      self._data_sent = False
      try:
        for spec in specs:
          values, failures = self._run_spec(
            spec, n, _chunk_size(spec, fields, n), timeout_s, fail_on_error
          )
          ok = np.isfinite(values)
          total += np.where(ok, spec.weight * values, 0.0)
          scored |= ok
          metrics[f"reward/{spec.name}"] = _mean(values[ok])
          metrics[f"reward_failures/{spec.name}"] = float(failures)
      finally:
        self._data = b""
    total[~scored] = np.nan
    metrics["reward/total"] = _mean(total[scored])
    return total.astype(np.float32), metrics


def _mean(x: np.ndarray) -> float:
  return float(x.mean()) if x.size else 0.0


def _chunk_size(spec: RewardSpec, fields: Mapping[str, Any], n: int) -> int:
  """Retry unit: `group_size` when it divides the batch, else 1."""
  group_size = spec.kwargs.get("group_size", fields.get("group_size"))
  if isinstance(group_size, int) and group_size > 0 and n % group_size == 0:
    return group_size
  return 1


_default_runner: RewardRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> RewardRunner:
  """The process-wide runner used by `compute_rewards`."""
  global _default_runner
  with _default_lock:
    if _default_runner is None:
      _default_runner = RewardRunner()
    return _default_runner


def compute_rewards(
  specs: Sequence,
  prompts: Sequence[str],
  completions: Sequence[str],
  task_fields: Mapping[str, Any] | None = None,
  *,
  timeout_s: float = 10.0,
  fail_on_error: bool = False,
) -> tuple[np.ndarray, dict[str, float]]:
  """`RewardRunner.compute` on the process-wide runner."""
  return default_runner().compute(
    specs,
    prompts,
    completions,
    task_fields,
    timeout_s=timeout_s,
    fail_on_error=fail_on_error,
  )
