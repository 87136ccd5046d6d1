"""One process of the 2-process update test (run by test_update_devices.py).

usage: python multihost_worker.py PROCESS_ID PORT OUT.npz

Each process owns 2 CPU devices, feeds its half of the batch through
`host_local_to_global`, runs one update over the 4-device mesh and (process
0) saves the resulting params.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main():
  process_id, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}",
    num_processes=2,
    process_id=process_id,
    initialization_timeout=60,
  )
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import update_case
  from flax import nnx

  from rlx import algos
  from rlx.models import create_sharded, init_model, make_mesh

  mesh = make_mesh(data=4)
  model = create_sharded(lambda: init_model(update_case.MODEL, 0), mesh)
  graphdef, params = nnx.split(model)
  algo = update_case.algo()
  state = algos.create_train_state(graphdef, params, algo, mesh)
  batch = update_case.batch()
  n = len(batch["tokens"]) // 2
  local = {
    k: v[process_id * n : (process_id + 1) * n] for k, v in batch.items()
  }
  global_batch = algos.host_local_to_global(local, mesh)
  step = algos.compile_update_step(algo, graphdef, state, global_batch, mesh)
  state, metrics = step(state, global_batch, update_case.key())
  leaves = [
    np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state.params)
  ]
  loss = float(np.asarray(metrics["loss"].addressable_data(0)))
  if process_id == 0:
    np.savez(out, *leaves, loss=loss)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
