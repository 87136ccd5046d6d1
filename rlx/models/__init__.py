"""Models: the decoder, its KV cache, sharding and HF import/export."""

from rlx.models.hf import CheckpointError, load_pretrained, save_pretrained
from rlx.models.sharding import (
  batch_sharding,
  create_sharded,
  make_mesh,
  shard_model,
  state_shardings,
)
from rlx.models.transformer import (
  PRESETS,
  KVCache,
  ModelConfig,
  RopeScaling,
  Transformer,
  init_cache,
  init_model,
  preset,
)

__all__ = [
  "CheckpointError",
  "load_pretrained",
  "save_pretrained",
  "PRESETS",
  "KVCache",
  "ModelConfig",
  "RopeScaling",
  "Transformer",
  "batch_sharding",
  "create_sharded",
  "init_cache",
  "init_model",
  "make_mesh",
  "preset",
  "shard_model",
  "state_shardings",
]
