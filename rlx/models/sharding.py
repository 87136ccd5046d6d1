"""Logical axis names -> a ('data', 'fsdp', 'tensor') device mesh.

Every param carries logical axis names (`axes` metadata, set in
`transformer.py`). One rules table maps each name to mesh axes: the default
shards embeddings over 'fsdp' and heads / MLP / vocab over 'tensor'. A mesh
with only 'data' > 1 replicates params: plain data parallelism. FSDP or
tensor parallelism is a change of mesh shape, not of code.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
  ("batch", BATCH_AXES),
  ("vocab", "tensor"),
  ("embed", "fsdp"),
  ("q_heads", "tensor"),
  ("kv_heads", "tensor"),
  ("mlp", "tensor"),
  ("norm", None),
  ("head_dim", None),
)


def make_mesh(
  data: int = -1,
  fsdp: int = 1,
  tensor: int = 1,
  devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """A (data, fsdp, tensor) mesh; `data=-1` takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  for name, value in (("fsdp", fsdp), ("tensor", tensor)):
    if value < 1:
      raise ValueError(f"mesh.{name}={value}: must be >= 1")
  if data == -1:
    if n % (fsdp * tensor):
      raise ValueError(
        f"mesh fsdp={fsdp} x tensor={tensor} does not divide the {n} devices"
      )
    data = n // (fsdp * tensor)
  if data * fsdp * tensor != n:
    raise ValueError(
      f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = "
      f"{data * fsdp * tensor} must equal the number of devices ({n})"
    )
  grid = np.asarray(devices).reshape(data, fsdp, tensor)
  return Mesh(grid, MESH_AXES)


def logical_to_spec(
  axes: Sequence[str | None],
  shape: Sequence[int] | None = None,
  mesh: Mesh | None = None,
  rules=RULES,
) -> PartitionSpec:
  """PartitionSpec for logical `axes`.

  With `shape` and `mesh`, a dimension that the mesh axes do not divide is
  replicated instead (for example a vocabulary of 151936 over 3 devices).
  """
  table = dict(rules)
  spec, used = [], set()
  for i, name in enumerate(axes):
    mesh_axes = table.get(name) if name is not None else None
    if isinstance(mesh_axes, str):
      mesh_axes = (mesh_axes,)
    if mesh_axes:
      mesh_axes = tuple(a for a in mesh_axes if a not in used)
    if mesh_axes and shape is not None and mesh is not None:
      size = int(np.prod([mesh.shape[a] for a in mesh_axes]))
      if shape[i] % size:
        mesh_axes = ()
    if mesh_axes:
      used.update(mesh_axes)
      spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    else:
      spec.append(None)
  return PartitionSpec(*spec)


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh, rules=RULES):
  """NamedShardings for an `nnx.State` (abstract or concrete).

  Variables without `axes` metadata (e.g. scalars) are replicated.
  """

  def one(var):
    axes = var.get_metadata().get("axes")
    value = var.get_value() if hasattr(var, "get_value") else var.value
    shape = getattr(value, "shape", ())
    if axes is None:
      axes = (None,) * len(shape)
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh, rules))

  return jax.tree.map(one, state, is_leaf=_is_var)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Shard axis 0 over ('data', 'fsdp'), replicate the rest."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def shard_model(model: nnx.Module, mesh: Mesh, rules=RULES) -> nnx.Module:
  """Place an existing model's params on `mesh` by the rules table."""
  graphdef, state = nnx.split(model)
  shardings = state_shardings(state, mesh, rules)
  state = jax.device_put(state, shardings)
  return nnx.merge(graphdef, state)


def create_sharded(make_model, mesh: Mesh, rules=RULES) -> nnx.Module:
  """Build `make_model()` directly in its sharded layout.

  The params are created by a jitted init with `out_shardings`, so the full
  params never sit on one device.
  """
  abstract = nnx.eval_shape(make_model)
  graphdef, abstract_state = nnx.split(abstract)
  shardings = state_shardings(abstract_state, mesh, rules)

  @jax.jit
  def init():
    return nnx.split(make_model())[1]

  state = jax.jit(init, out_shardings=shardings)()
  return nnx.merge(graphdef, state)
