"""Runs weighted reward functions with time limits and failure containment.

Every reward runs in one long-lived worker process (`rlx.rewards.worker`),
a fresh interpreter started with `subprocess` (fork + exec, safe from a
multithreaded JAX process; no `multiprocessing`, so the caller's
`__main__` is never re-imported). The worker is reused across calls and
only restarted after it was killed or died. It runs with
`JAX_PLATFORMS=cpu`, so a user reward importing JAX never grabs the
accelerator, in its own session and process group, with its writable
memory limited to `memory_limit_mb` and a seccomp filter that keeps it and
its children from signalling the trainer (`rlx.rewards.sandbox` says what
is and is not prevented). Batches travel as JSON: task fields must be
JSON-able (numpy arrays and scalars are converted).

Containment, per reward and call:

0. A user reward is first imported in the worker (`check`), once per
   worker. A module that is missing, raises, exits or hangs at import, or
   a function that cannot take `(prompts, completions)`, raises
   `RewardError`: it is a configuration error, never retried.
1. The reward is called on the whole batch with a time limit of
   `timeout_s`. On timeout the worker is killed (and lazily restarted).
2. If the call raised, timed out, died, or returned something that is not a
   list of the batch's length, it is retried on chunks of `group_size`
   samples (the task field or reward parameter; else single samples), all
   retries together limited to another `timeout_s`. Samples whose chunk
   fails or is not reached in time are unscored by that reward.
3. A returned value that is None (`unscorable`), NaN (`nan`), infinite
   (`inf`), larger in magnitude than `max_abs` (`out_of_bounds`: 1e300 is
   finite in float64 but inf in the float32 total) or not a real number
   (`not_a_number`) leaves that sample unscored by that reward.

Unscored samples are NaN for that reward, as in TRL: the weighted total
skips them, and a sample no reward scored has total NaN, which the GRPO
advantages leave out of its group's mean and std (`rlx.algos.advantages`).
Every unscored sample counts in `reward_failures/<name>`, and by cause in
`reward_failures/<name>/<cause>` (`error` for a failed call, or one of the
causes above); invalid values are logged. With `fail_on_error=True` the
first failure raises `RewardError` instead. A user reward that cannot be
imported always raises `RewardError`.
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

DEFAULT_MEMORY_LIMIT_MB = 4096
DEFAULT_MAX_ABS = 1e6
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CAUSES = ("error", "unscorable", "nan", "inf", "out_of_bounds", "not_a_number")

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

  def __init__(
    self,
    *,
    start_timeout_s: float = 60.0,
    import_timeout_s: float = 60.0,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
  ):
    self._start_timeout_s = start_timeout_s
    self._import_timeout_s = import_timeout_s
    self._memory_limit_mb = int(memory_limit_mb)
    self._resolved: set[str] = set()
    self._warned_sandbox = False
    self._proc: subprocess.Popen | None = None
    self._buffer = b""
    self._data: bytes = b""
    self._data_sent = False
    self._lock = threading.Lock()
    self._finalizer = None

  @property
  def memory_limit_mb(self) -> int:
    """The worker's writable-memory limit in MiB (0: none)."""
    return self._memory_limit_mb

  @memory_limit_mb.setter
  def memory_limit_mb(self, value: int) -> None:
    with self._lock:
      if int(value) != self._memory_limit_mb:
        self._memory_limit_mb = int(value)
        self.close()  # the next call starts a worker with the new limit

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
    self._resolved = set()

  def __enter__(self) -> RewardRunner:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _start(self) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    options = {
      "memory_limit_mb": self._memory_limit_mb,
      "trainer_pid": os.getpid(),
    }
    self._proc = subprocess.Popen(
      [sys.executable, "-c", _BOOT, json.dumps(sys.path), json.dumps(options)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      env=env,
      start_new_session=True,
    )
    self._finalizer = weakref.finalize(self, _kill, self._proc)
    self._buffer = b""
    self._data_sent = False
    hello = self._recv(time.monotonic() + self._start_timeout_s)
    if hello is None:
      self.close()
      raise RewardError(
        f"the reward worker failed to start within {self._start_timeout_s}s "
        "(its errors, if any, are on stderr)"
      )
    failed = [k for k, ok in hello.get("sandbox", {}).items() if not ok]
    if failed and not self._warned_sandbox:
      self._warned_sandbox = True
      logging.warning(
        "the reward worker runs without its %s limit (unsupported here)",
        " and ".join(failed),
      )

  def _ensure_started(self) -> None:
    if self._proc is None or self._proc.poll() is not None:
      self.close()
      self._start()

  def check(self, spec, timeout_s: float | None = None) -> None:
    """Imports a user reward in the worker, once per worker.

    Raises `RewardError` when the module is missing or raises, exits or
    hangs (over `timeout_s`, default `import_timeout_s`) at import, or the
    function cannot take `(prompts, completions)`. Built-ins pass.
    """
    with self._lock:
      self._check(RewardSpec.parse(spec), timeout_s)

  def _check(self, spec: RewardSpec, timeout_s: float | None = None) -> None:
    if spec.name in registry.BUILTIN_REWARDS or spec.name in self._resolved:
      return
    timeout_s = self._import_timeout_s if timeout_s is None else timeout_s
    self._ensure_started()
    msg = {"op": "resolve", "name": spec.name, "sys_path": sys.path}
    reply = self._request(json.dumps(msg).encode() + b"\n", timeout_s)
    if reply is None:
      raise RewardError(
        f"reward {spec.name!r}: importing it ended the reward worker or "
        f"took over {timeout_s:.3g}s (does the module exit or hang at "
        "import?)"
      )
    if not reply["ok"]:
      raise RewardError(reply["error"])
    self._resolved.add(spec.name)

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
    self._ensure_started()
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
    max_abs: float,
  ) -> tuple[np.ndarray, dict[str, int]]:
    """Returns per-sample values (NaN where unscored) and failures by
    cause."""
    values = np.full(n, np.nan)
    counts = dict.fromkeys(_CAUSES, 0)
    if not n:
      return values, counts
    self._check(spec)
    result = self._call(spec, 0, n, timeout_s)
    if result.config_error:
      raise RewardError(f"reward {spec.name!r}: {result.error}")
    if result.values is not None:
      self._store(
        spec, result.values, values, 0, counts, max_abs, fail_on_error
      )
      return values, counts
    if fail_on_error:
      raise RewardError(f"reward {spec.name!r} failed: {result.error}")
    logging.warning(
      "reward %r failed on the batch, retrying in chunks of %d: %s",
      spec.name,
      chunk,
      result.error[-_MAX_LOGGED_ERROR_CHARS:],
    )
    if chunk >= n:
      counts["error"] = n
      return values, counts
    deadline = time.monotonic() + timeout_s
    for start in range(0, n, chunk):
      stop = min(start + chunk, n)
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        counts["error"] += n - start
        break
      result = self._call(spec, start, stop, remaining)
      if result.values is None:
        counts["error"] += stop - start
      else:
        self._store(spec, result.values, values, start, counts, max_abs, False)
    return values, counts

  @staticmethod
  def _store(spec, raw, values, start, counts, max_abs, fail_on_error):
    """Copies valid values into `values`; counts the others by cause."""
    bound = min(max_abs, _FLOAT32_MAX)
    for i, v in enumerate(raw):
      cause = _invalid_cause(v, bound)
      if cause is None:
        values[start + i] = v
        continue
      if fail_on_error:
        shown = f"a {v}" if isinstance(v, str) else repr(v)
        raise RewardError(
          f"reward {spec.name!r} returned {shown} ({cause}) for completion "
          f"{start + i}; rewards must be finite numbers with |value| <= "
          f"{bound:.3g}"
        )
      counts[cause] += 1

  def compute(
    self,
    specs: Sequence,
    prompts: Sequence[str],
    completions: Sequence[str],
    task_fields: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
    fail_on_error: bool = False,
    max_abs: float = DEFAULT_MAX_ABS,
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
      max_abs: largest valid |reward value|; larger ones are invalid
        (`out_of_bounds`).

    Returns:
      `(total, metrics)`: the float32 [N] sum of weight * reward over the
      rewards that scored the sample (NaN where none did), and
      `reward/<name>` (mean unweighted reward over the samples it scored),
      `reward_failures/<name>` (number of samples it did not score),
      `reward_failures/<name>/<cause>` (the same by cause, see the module
      docstring) and `reward/total` (mean total over the scored samples).
    """
    total, _, metrics = self.compute_each(
      specs,
      prompts,
      completions,
      task_fields,
      timeout_s=timeout_s,
      fail_on_error=fail_on_error,
      max_abs=max_abs,
    )
    return total, metrics

  def compute_each(
    self,
    specs: Sequence,
    prompts: Sequence[str],
    completions: Sequence[str],
    task_fields: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
    fail_on_error: bool = False,
    max_abs: float = DEFAULT_MAX_ABS,
  ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """`compute`, also returning each reward function's own values:
    `(total [N], per_reward [N, K] unweighted, NaN where that function did
    not score the sample, metrics)`, K in the order of `specs`. GRPO's
    `multi_objective_aggregation='normalize_then_sum'` needs the table."""
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
    table = np.full((n, len(specs)), np.nan, np.float32)
    scored = np.zeros(n, bool)
    metrics = {}
    with self._lock:
      self._data = payload
      self._data_sent = False
      try:
        for k, spec in enumerate(specs):
          values, counts = self._run_spec(
            spec,
            n,
            _chunk_size(spec, fields, n),
            timeout_s,
            fail_on_error,
            max_abs,
          )
          _log_invalid(spec.name, counts, n)
          ok = np.isfinite(values)
          table[:, k] = np.where(ok, values, np.nan)
          total += np.where(ok, spec.weight * values, 0.0)
          scored |= ok
          metrics[f"reward/{spec.name}"] = _mean(values[ok])
          metrics[f"reward_failures/{spec.name}"] = float(sum(counts.values()))
          for cause, count in counts.items():
            metrics[f"reward_failures/{spec.name}/{cause}"] = float(count)
      finally:
        self._data = b""
    total32 = total.astype(np.float32)
    if not np.isfinite(total32[scored]).all():
      raise RewardError(
        "the weighted total reward is not finite in float32: check "
        f"the reward weights {[(s.name, s.weight) for s in specs]}"
      )
    total32[~scored] = np.nan
    metrics["reward/total"] = _mean(total[scored])
    return total32, table, metrics


def _invalid_cause(v, bound: float) -> str | None:
  """Why a worker value is not a valid reward, or None when it is."""
  if v is None:
    return "unscorable"
  if isinstance(v, str):
    return "not_a_number"
  if math.isnan(v):
    return "nan"
  if math.isinf(v):
    return "inf"
  if abs(v) > bound:
    return "out_of_bounds"
  return None


def _log_invalid(name: str, counts: Mapping[str, int], n: int) -> None:
  invalid = {k: v for k, v in counts.items() if v and k != "error"}
  if invalid:
    logging.warning(
      "reward %r returned %d invalid values for %d completions (%s); they "
      "are unscored (NaN)",
      name,
      sum(invalid.values()),
      n,
      ", ".join(f"{k}: {v}" for k, v in invalid.items()),
    )


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
  max_abs: float = DEFAULT_MAX_ABS,
  memory_limit_mb: int | None = None,
  per_reward: bool = False,
):
  """`RewardRunner.compute` on the process-wide runner, whose worker gets
  `memory_limit_mb` (None: keep the runner's); with `per_reward`,
  `RewardRunner.compute_each` (total, [N, K] table, metrics)."""
  runner = default_runner()
  if memory_limit_mb is not None:
    runner.memory_limit_mb = memory_limit_mb
  compute = runner.compute_each if per_reward else runner.compute
  return compute(
    specs,
    prompts,
    completions,
    task_fields,
    timeout_s=timeout_s,
    fail_on_error=fail_on_error,
    max_abs=max_abs,
  )


def check_reward_specs(
  specs: Sequence,
  timeout_s: float = 60.0,
  *,
  memory_limit_mb: int | None = None,
) -> list[RewardSpec]:
  """Checks rewards before any training work; returns the parsed specs.

  Parses every spec (names, weights, built-in parameters), requires
  distinct names, and imports each user reward in the process-wide
  runner's worker (`RewardRunner.check`), each import limited to
  `timeout_s`. Raises `ValueError`/`TypeError` for a bad spec and
  `RewardError` for a reward that cannot be imported.
  """
  specs = [RewardSpec.parse(s) for s in specs]
  names = [s.name for s in specs]
  if len(set(names)) != len(names):
    raise ValueError(f"reward names must be distinct, got {names}")
  runner = default_runner()
  if memory_limit_mb is not None:
    runner.memory_limit_mb = memory_limit_mb
  for spec in specs:
    runner.check(spec, timeout_s)
  return specs
