"""Running several local JAX processes for the multi-host tests."""

import socket
import subprocess


def free_port() -> int:
  """A free TCP port on 127.0.0.1 for the coordinator."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(cmds, env, timeout: float) -> list[str]:
  """Starts every command at once, waits for all, asserts each exited 0;
  returns their logs (stdout + stderr)."""
  procs = [
    subprocess.Popen(
      cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for cmd in cmds
  ]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return logs
