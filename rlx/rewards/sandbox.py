"""Limits the reward worker puts on itself before running user code.

- `limit_memory`: `RLIMIT_DATA`, the memory the process can write (heap and
  private anonymous mappings, Linux >= 4.7), not address-space reservations
  or shared libraries, so JAX and thread stacks do not trip it while a 20
  GiB allocation fails with `MemoryError`.
- `deny_signals_to`: a seccomp filter that makes every signal to the
  trainer's process or process group, `kill(-1, ...)`, `tkill`, `ptrace`,
  `process_vm_writev` and `pidfd_send_signal` fail with EPERM, for the
  worker and every process it starts (filters are inherited and cannot be
  removed). Signals to any other process, e.g. a reward's own children,
  still work. It sets no_new_privs: setuid programs a reward starts gain
  no privileges.

Not prevented: anything a process of the same user can do without signals
(writing the trainer's files or checkpoints, filling the disk, opening
`/proc/<pid>/mem` where ptrace is allowed, asking another service to kill
it). Both functions return False where they cannot apply (not Linux, an
unknown CPU, a kernel without seccomp), and the caller logs it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | errno.EPERM
# Classic BPF opcodes: load word at offset, jumps on the accumulator, return.
_LD, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
# seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8 i (low word first).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SYSCALLS = {  # name: (x86_64, aarch64)
  "kill": (62, 129),
  "tgkill": (234, 131),
  "rt_sigqueueinfo": (129, 138),
  "rt_tgsigqueueinfo": (297, 240),
  "tkill": (200, 130),
  "ptrace": (101, 117),
  "process_vm_writev": (311, 271),
  "pidfd_send_signal": (424, 424),
}
_BY_TARGET = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
_ALWAYS = ("tkill", "ptrace", "process_vm_writev", "pidfd_send_signal")


def limit_memory(limit_mb: int) -> bool:
  """Sets this process's `RLIMIT_DATA` to `limit_mb` MiB (0: no limit)."""
  if not limit_mb:
    return True
  limit = int(limit_mb) << 20
  try:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
      limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
  except (OSError, ValueError):
    return False
  return True


def _filter(machine: str, pid: int, pgid: int) -> bytes:
  """The BPF program: EPERM for signals that could reach `pid`."""
  column = 0 if machine == "x86_64" else 1
  nr = {name: numbers[column] for name, numbers in _SYSCALLS.items()}
  targets = sorted({pid, -pgid & 0xFFFFFFFF, 0xFFFFFFFF})
  # Rows are a label (str) or (opcode, k, label if true, label if false).
  rows = [(_LD, 4), (_JEQ, _AUDIT_ARCH[machine], None, "deny"), (_LD, 0)]
  if machine == "x86_64":  # x32 system calls
    rows.append((_JGE, 0x40000000, "deny", None))
  rows += [(_JEQ, nr[name], "deny", None) for name in _ALWAYS]
  rows += [(_JEQ, nr[name], "check", None) for name in _BY_TARGET]
  rows += [(_RET, _RET_ALLOW), "check", (_LD, 16)]
  rows += [(_JEQ, t, "deny", None) for t in targets]
  rows += [(_RET, _RET_ALLOW), "deny", (_RET, _RET_EPERM)]
  code = [r for r in rows if not isinstance(r, str)]
  labels, i = {}, 0
  for r in rows:
    if isinstance(r, str):
      labels[r] = i
    else:
      i += 1

  def jump(i, label):
    return 0 if label is None else labels[label] - i - 1

  out = []
  for i, (op, k, *to) in enumerate(code):
    jt, jf = (jump(i, to[0]), jump(i, to[1])) if to else (0, 0)
    out.append(struct.pack("HBBI", op, jt, jf, k))
  return b"".join(out)


class _SockFprog(ctypes.Structure):
  _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def deny_signals_to(pid: int) -> bool:
  """Installs the seccomp filter protecting process `pid` and its group.

  Call before starting threads: the filter covers the calling thread and
  the threads and processes it creates afterwards.
  """
  machine = platform.machine()
  if not platform.system() == "Linux" or machine not in _AUDIT_ARCH:
    return False
  try:
    pgid = os.getpgid(pid)
  except OSError:
    pgid = pid
  program = _filter(machine, pid, pgid)
  buffer = ctypes.create_string_buffer(program, len(program))
  fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)):
      return False
    return not libc.prctl(
      _PR_SET_SECCOMP,
      ulong(_SECCOMP_MODE_FILTER),
      ctypes.byref(fprog),
      ulong(0),
      ulong(0),
    )
  except (OSError, AttributeError):
    return False
