"""What the benchmarks say about the machine they ran on."""

from __future__ import annotations

import platform


def cpu_flags() -> set[str]:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def native_bf16() -> list[str]:
  """The CPU's native bf16 matmul features (empty: none)."""
  return sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()
