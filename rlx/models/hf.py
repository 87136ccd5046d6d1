"""Hugging Face checkpoint import and export (safetensors only, never pickle).

`load_pretrained(dir)` reads `config.json` (transformers 4.x `rope_theta` /
`rope_scaling` or 5.x `rope_parameters`) and `model.safetensors` or a sharded
`model.safetensors.index.json`, straight into the mesh layout: every device
reads only its own slice of each tensor. `save_pretrained(model, dir)` writes
the same format back, so HF `transformers` and vLLM can serve an rlx policy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from safetensors import safe_open

from rlx.models import sharding as sharding_lib
from rlx.models.transformer import (
  ROPE_TYPES,
  ModelConfig,
  RopeScaling,
  Transformer,
)

ARCHITECTURES = {
  "LlamaForCausalLM": "llama",
  "Qwen2ForCausalLM": "qwen2",
  "Qwen3ForCausalLM": "qwen3",
}
_FAMILY_TO_ARCH = {v: k for k, v in ARCHITECTURES.items()}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
  """A checkpoint directory rlx cannot load, with the reason."""


# Config -----------------------------------------------------------------------


def _rope_from_hf(hf: dict) -> tuple[float, RopeScaling | None]:
  params = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or {}
  theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
  merged = {**scaling, **params}
  rope_type = merged.get("rope_type", merged.get("type", "default"))
  if rope_type == "default":
    return float(theta), None
  if rope_type not in ROPE_TYPES:
    raise CheckpointError(
      f"config.json: rope_type={rope_type!r} is not supported; rlx supports "
      f"'default' and {ROPE_TYPES}"
    )
  # As transformers: the pretraining length defaults to max_position_embeddings.
  original = merged.get("original_max_position_embeddings") or hf.get(
    "max_position_embeddings"
  )
  factor = merged.get("factor")
  if (
    factor is None
    and rope_type == "yarn"
    and original
    and hf.get("max_position_embeddings")
  ):
    factor = hf["max_position_embeddings"] / original
  kwargs = {"factor": factor}
  if rope_type != "linear":
    kwargs["original_max_position_embeddings"] = original
  if rope_type == "llama3":
    kwargs["low_freq_factor"] = merged.get("low_freq_factor")
    kwargs["high_freq_factor"] = merged.get("high_freq_factor")
  if rope_type == "yarn":
    kwargs["beta_fast"] = merged.get("beta_fast") or 32
    kwargs["beta_slow"] = merged.get("beta_slow") or 1
    for key in ("attention_factor", "mscale", "mscale_all_dim"):
      if merged.get(key) is not None:
        kwargs[key] = merged[key]
  missing = [k for k, v in kwargs.items() if v is None]
  if missing:
    raise CheckpointError(
      f"config.json: {rope_type} rope scaling lacks the key {missing[0]!r}"
    )
  kwargs = {k: float(v) for k, v in kwargs.items()}
  if "original_max_position_embeddings" in kwargs:
    kwargs["original_max_position_embeddings"] = int(original)
  if rope_type == "yarn":
    kwargs["truncate"] = bool(merged.get("truncate", True))
  return float(theta), RopeScaling(rope_type=rope_type, **kwargs)


_REQUIRED_INTS = (
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
)
_OPTIONAL_INTS = ("num_key_value_heads", "head_dim", "max_position_embeddings")
_BOOLS = ("attention_bias", "mlp_bias", "tie_word_embeddings")
_ROPE_POSITIVE = ("rope_theta", "factor", "low_freq_factor", "high_freq_factor")
_ROPE_FINITE = (
  "beta_fast",
  "beta_slow",
  "attention_factor",
  "mscale",
  "mscale_all_dim",
)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
  """A finite JSON number (not a bool, string, NaN or infinity)."""
  return (
    isinstance(value, (int, float))
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def _refuse(key: str, value, allowed: str):
  raise CheckpointError(f"config.json: {key}={value!r}: {allowed}")


def check_hf_config(hf) -> None:
  """Raise `CheckpointError` naming the key, the value and what is allowed
  for a `config.json` rlx would load wrongly or fail on obscurely."""
  if not isinstance(hf, dict):
    raise CheckpointError(
      f"config.json must be a JSON object of model settings, got "
      f"{type(hf).__name__} {str(hf)[:80]}"
    )
  for key in _REQUIRED_INTS:
    if key not in hf:
      raise CheckpointError(
        f"config.json lacks the key {key!r} (a positive integer)"
      )
  for key in _REQUIRED_INTS + _OPTIONAL_INTS:
    value = hf.get(key)
    if key in _OPTIONAL_INTS and value is None:
      continue
    if not (_is_int(value) and value > 0):
      _refuse(key, value, "must be a positive integer")
  if "rope_theta" in hf and not (
    _is_real(hf["rope_theta"]) and hf["rope_theta"] > 0
  ):
    _refuse("rope_theta", hf["rope_theta"], "must be a finite number > 0")
  eps = hf.get("rms_norm_eps", 1e-6)
  if not (_is_real(eps) and eps >= 0):
    _refuse("rms_norm_eps", eps, "must be a finite number >= 0")
  for key in _BOOLS + ("use_sliding_window",):
    if hf.get(key) is not None and not isinstance(hf[key], bool):
      _refuse(key, hf[key], "must be true or false")
  for key in ("bos_token_id", "eos_token_id"):
    value = hf.get(key)
    ids = (
      value if isinstance(value, list) and key == "eos_token_id" else [value]
    )
    if value is not None and not all(_is_int(i) and i >= 0 for i in ids):
      _refuse(key, value, "must be a token id >= 0 (eos: or a list of them)")
  for section in ("rope_scaling", "rope_parameters"):
    rope = hf.get(section)
    if rope is None:
      continue
    if not isinstance(rope, dict):
      _refuse(section, rope, "must be an object or null")
    for key in _ROPE_POSITIVE + _ROPE_FINITE:
      value = rope.get(key)
      if value is None:
        continue
      positive = key in _ROPE_POSITIVE
      if not (_is_real(value) and (value > 0 or not positive)):
        _refuse(
          f"{section}.{key}",
          value,
          "must be a finite number" + (" > 0" if positive else ""),
        )
    original = rope.get("original_max_position_embeddings")
    if original is not None and not (_is_int(original) and original > 0):
      _refuse(
        f"{section}.original_max_position_embeddings",
        original,
        "must be a positive integer",
      )


def config_from_hf(hf: dict, dtype: str = "float32") -> ModelConfig:
  """A `ModelConfig` from a transformers `config.json` dict."""
  check_hf_config(hf)
  archs = hf.get("architectures") or []
  family = None
  for arch in archs:
    family = ARCHITECTURES.get(arch, family)
  if family is None:
    family = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}.get(
      hf.get("model_type")
    )
  if family is None:
    raise CheckpointError(
      f"config.json: architectures={archs} (model_type="
      f"{hf.get('model_type')!r}) is not supported; rlx supports "
      f"{sorted(ARCHITECTURES)}"
    )
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise CheckpointError(f"config.json: hidden_act={act!r}; rlx needs 'silu'")
  layer_types = hf.get("layer_types") or []
  if hf.get("use_sliding_window") or any(
    t != "full_attention" for t in layer_types
  ):
    raise CheckpointError(
      "config.json: sliding-window attention is not supported "
      f"(use_sliding_window={hf.get('use_sliding_window')}, "
      f"layer_types={sorted(set(layer_types))})"
    )
  theta, scaling = _rope_from_hf(hf)
  attention_bias = bool(hf.get("attention_bias", False))
  num_heads = hf["num_attention_heads"]
  kwargs = dict(
    family=family,
    vocab_size=hf["vocab_size"],
    hidden_size=hf["hidden_size"],
    intermediate_size=hf["intermediate_size"],
    num_layers=hf["num_hidden_layers"],
    num_heads=num_heads,
    num_kv_heads=hf.get("num_key_value_heads") or num_heads,
    head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
    rope_theta=theta,
    rope_scaling=scaling,
    rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
    qkv_bias=family == "qwen2" or attention_bias,
    o_bias=family != "qwen2" and attention_bias,
    mlp_bias=bool(hf.get("mlp_bias", False)),
    qk_norm=family == "qwen3",
    tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    max_position_embeddings=hf.get("max_position_embeddings") or 4096,
    bos_token_id=hf.get("bos_token_id"),
    eos_token_id=hf.get("eos_token_id"),
    dtype=dtype,
  )
  try:
    return ModelConfig(**kwargs)
  except ValueError as e:
    raise CheckpointError(f"config.json: {e}") from e


def config_to_hf(config: ModelConfig, dtype: str = "float32") -> dict:
  """A transformers `config.json` dict (4.x keys, which 5.x also reads)."""
  c = config
  if c.family == "qwen2" and (not c.qkv_bias or c.o_bias):
    raise ValueError("a qwen2 model has q/k/v bias and no o bias")
  if c.family != "qwen2" and c.qkv_bias != c.o_bias:
    raise ValueError(f"{c.family}: attention_bias covers q, k, v and o alike")
  if c.qk_norm != (c.family == "qwen3"):
    raise ValueError("q/k RMSNorm exists in the qwen3 family only")
  hf = {
    "architectures": [_FAMILY_TO_ARCH[c.family]],
    "model_type": c.family,
    "vocab_size": c.vocab_size,
    "hidden_size": c.hidden_size,
    "intermediate_size": c.intermediate_size,
    "num_hidden_layers": c.num_layers,
    "num_attention_heads": c.num_heads,
    "num_key_value_heads": c.num_kv_heads,
    "head_dim": c.head_dim,
    "hidden_act": "silu",
    "max_position_embeddings": c.max_position_embeddings,
    "rms_norm_eps": c.rms_norm_eps,
    "rope_theta": c.rope_theta,
    "tie_word_embeddings": c.tie_embeddings,
    "bos_token_id": c.bos_token_id,
    "eos_token_id": (
      list(c.eos_token_id)
      if isinstance(c.eos_token_id, tuple)
      else c.eos_token_id
    ),
    "torch_dtype": dtype,
    "use_cache": True,
  }
  if c.rope_scaling is not None:
    s = c.rope_scaling
    scaling = {"rope_type": s.rope_type, "factor": s.factor}
    if s.rope_type != "linear":
      scaling["original_max_position_embeddings"] = (
        s.original_max_position_embeddings
      )
    if s.rope_type == "llama3":
      scaling["low_freq_factor"] = s.low_freq_factor
      scaling["high_freq_factor"] = s.high_freq_factor
    if s.rope_type == "yarn":
      scaling.update(
        beta_fast=s.beta_fast, beta_slow=s.beta_slow, truncate=s.truncate
      )
      for key in ("attention_factor", "mscale", "mscale_all_dim"):
        if getattr(s, key) is not None:
          scaling[key] = getattr(s, key)
    hf["rope_scaling"] = scaling
  if c.family == "qwen2":
    hf["use_sliding_window"] = False
  else:
    hf["attention_bias"] = c.o_bias
  if c.family == "llama":
    hf["mlp_bias"] = c.mlp_bias
  elif c.mlp_bias:
    raise ValueError(f"{c.family} has no MLP bias")
  return hf


# Parameter names --------------------------------------------------------------


def hf_names(config: ModelConfig) -> Iterator[tuple[tuple, str, bool]]:
  """(rlx param path, HF tensor name, transposed) for every param."""
  c = config
  yield ("embed",), "model.embed_tokens.weight", False
  for i in range(c.num_layers):
    pre = f"model.layers.{i}."
    yield (
      ("layers", i, "attn_norm", "scale"),
      pre + "input_layernorm.weight",
      False,
    )
    yield (
      ("layers", i, "mlp_norm", "scale"),
      pre + "post_attention_layernorm.weight",
      False,
    )
    for ours, theirs in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "o")):
      path = ("layers", i, "attn", ours)
      yield path + ("kernel",), f"{pre}self_attn.{theirs}_proj.weight", True
      has_bias = c.o_bias if ours == "o" else c.qkv_bias
      if has_bias:
        yield path + ("bias",), f"{pre}self_attn.{theirs}_proj.bias", False
    if c.qk_norm:
      for n in ("q_norm", "k_norm"):
        yield (
          ("layers", i, "attn", n, "scale"),
          f"{pre}self_attn.{n}.weight",
          False,
        )
    for n in ("gate", "up", "down"):
      path = ("layers", i, "mlp", n)
      yield path + ("kernel",), f"{pre}mlp.{n}_proj.weight", True
      if c.mlp_bias:
        yield path + ("bias",), f"{pre}mlp.{n}_proj.bias", False
  yield ("final_norm", "scale"), "model.norm.weight", False
  if not c.tie_embeddings:
    yield ("lm_head", "kernel"), "lm_head.weight", True


# Reading ----------------------------------------------------------------------


def _inside(path: str, file, index: str, tensor: str) -> str:
  """`path/file`, refusing a file outside `path` (absolute or with `..`).

  Lexical, not `realpath`: a Hugging Face cache snapshot links its files to
  `../../blobs/`, and those links are the directory's own."""
  if not isinstance(file, str) or not file:
    raise CheckpointError(
      f"{index}: weight_map[{tensor!r}]={file!r}: must be a file name"
    )
  root = os.path.normpath(os.path.abspath(path))
  full = os.path.normpath(os.path.join(root, file))
  if os.path.isabs(file) or not full.startswith(root + os.sep):
    raise CheckpointError(
      f"{index}: weight_map[{tensor!r}]={file!r} points outside the "
      f"checkpoint directory {path}; only files inside it are read"
    )
  return full


def _weight_files(path: str) -> dict[str, str]:
  """Tensor name -> safetensors file, refusing pickle checkpoints."""
  index = os.path.join(path, SAFETENSORS_INDEX)
  single = os.path.join(path, SAFETENSORS)
  if os.path.exists(index):
    with open(index) as f:
      try:
        weight_map = json.load(f)["weight_map"]
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index ({e})") from e
    if not isinstance(weight_map, dict):
      raise CheckpointError(f"{index}: weight_map must be an object")
    return {k: _inside(path, v, index, k) for k, v in weight_map.items()}
  if os.path.exists(single):
    try:
      with safe_open(single, framework="flax") as f:
        return {k: single for k in f.keys()}
    except Exception as e:
      raise CheckpointError(f"{single}: unreadable safetensors ({e})") from e
  found = sorted(os.listdir(path))
  pickles = [f for f in found if f.endswith(_PICKLE_SUFFIXES)]
  if pickles:
    raise CheckpointError(
      f"{path} holds pickle weights {pickles}; rlx loads only safetensors "
      f"({SAFETENSORS} or {SAFETENSORS_INDEX}) because unpickling can run "
      "arbitrary code. Convert them once with transformers: "
      "`AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
      "safe_serialization=True)`."
    )
  raise CheckpointError(
    f"{path} has no {SAFETENSORS} or {SAFETENSORS_INDEX} (found {found})"
  )


def read_hf_config(path: str) -> dict:
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(path):
    raise CheckpointError(f"{path} is not a directory")
  if not os.path.exists(config_path):
    raise CheckpointError(f"{path} has no config.json")
  with open(config_path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{config_path}: invalid JSON ({e})") from e


class _ShapeOnlyRngs:
  """Stands in for `nnx.Rngs` when only shapes are wanted: one fixed key.

  Under `nnx.eval_shape` every `nnx.Rngs` draw updates a traced counter, and
  flax's update inspects the tracer in a way that walks the whole trace so
  far: building a model of L layers costs O(L^2) (128 layers took 14x the
  time of 32). A fixed key keeps the trace linear; the values are never
  computed anyway.
  """

  def params(self) -> jax.Array:
    return jax.random.key(0)


def abstract_model(config: ModelConfig) -> Transformer:
  """The model with `jax.ShapeDtypeStruct`s for params, in time linear in
  the number of layers."""
  return nnx.eval_shape(lambda: Transformer(config, rngs=_ShapeOnlyRngs()))


def load_pretrained(
  path: str,
  dtype: str = "float32",
  *,
  mesh: Mesh | None = None,
  rules=sharding_lib.RULES,
  param_dtype: str = "float32",
) -> Transformer:
  """Load an HF Llama / Qwen2 / Qwen3 checkpoint directory.

  dtype: compute dtype; params are stored in `param_dtype` (fp32 default).
  mesh: where the params go (default: a 1-device mesh); each device reads
    only its slice of each tensor from disk.
  The config is `model.config`.
  """
  hf = read_hf_config(path)
  config = config_from_hf(hf, dtype).replace(param_dtype=param_dtype)
  files = _weight_files(path)
  if mesh is None:
    mesh = sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])

  graphdef, abstract_state = nnx.split(abstract_model(config))
  shardings = sharding_lib.state_shardings(abstract_state, mesh, rules)
  flat_shardings = dict(nnx.to_flat_state(shardings))
  flat_abstract = dict(nnx.to_flat_state(abstract_state))

  names = list(hf_names(config))
  expected = {name for _, name, _ in names}
  missing = sorted(expected - set(files))
  if missing:
    raise CheckpointError(
      f"{path}: missing tensors {missing[:5]}"
      + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    )
  ignorable = ("rotary_emb.inv_freq",)
  extra = sorted(
    n
    for n in set(files) - expected
    if not n.endswith(ignorable)
    and not (config.tie_embeddings and n == "lm_head.weight")
  )
  if extra:
    raise CheckpointError(
      f"{path}: unexpected tensors {extra[:5]} for a {config.family} model "
      "with this config.json"
    )

  handles = {}

  def handle(file):
    if file not in handles:
      try:
        handles[file] = safe_open(file, framework="flax")
      except Exception as e:
        raise CheckpointError(f"{file}: unreadable safetensors ({e})") from e
    return handles[file]

  pdtype = np.dtype(jnp.dtype(param_dtype))
  values = {}
  for ours, name, transposed in names:
    var = flat_abstract[ours]
    shape = var.get_value().shape if hasattr(var, "get_value") else var.shape
    tensor = handle(files[name]).get_slice(name)
    stored = tuple(tensor.get_shape())
    want = shape[::-1] if transposed else shape
    if stored != tuple(want):
      raise CheckpointError(
        f"{name}: shape {list(stored)} in {files[name]}, config.json implies "
        f"{list(want)}"
      )

    def read(index, tensor=tensor, transposed=transposed):
      index = index[::-1] if transposed else index
      block = np.asarray(tensor[index]).astype(pdtype)
      return block.T if transposed else block

    values[ours] = jax.make_array_from_callback(
      shape, flat_shardings[ours], read
    )
  state = nnx.from_flat_state(
    {k: v.replace(values[k]) for k, v in flat_abstract.items()}
  )
  return nnx.merge(graphdef, state)


# Writing ----------------------------------------------------------------------


def _to_host(x: jax.Array) -> np.ndarray:
  if not x.is_fully_addressable:
    from jax.experimental import multihost_utils

    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def save_pretrained(
  model: Transformer,
  path: str,
  dtype: str = "float32",
  max_shard_bytes: int = 5 * 1024**3,
) -> None:
  """Write `config.json` and safetensors weights readable by transformers.

  Weights are cast to `dtype`; above `max_shard_bytes` they are split into
  `model-0000k-of-0000n.safetensors` files with an index. On many hosts every
  process must call this; process 0 writes.
  """
  from safetensors.flax import save_file

  config = model.config
  hf_config = config_to_hf(config, dtype)
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  tensors = {}
  for ours, name, transposed in hf_names(config):
    var = flat[ours]
    value = _to_host(
      var.get_value() if hasattr(var, "get_value") else var.value
    )
    value = value.T if transposed else value
    tensors[name] = np.ascontiguousarray(value)
  if jax.process_index() != 0:
    return
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)

  shards, current, size = [], {}, 0
  for name, value in tensors.items():
    nbytes = value.size * jnp.dtype(dtype).itemsize
    if current and size + nbytes > max_shard_bytes:
      shards.append(current)
      current, size = {}, 0
    current[name] = value
    size += nbytes
  shards.append(current)

  jdtype = jnp.dtype(dtype)
  metadata = {"format": "pt"}
  cpu = jax.devices("cpu")[0]
  to_arrays = lambda shard: {
    k: jax.device_put(v.astype(jdtype), cpu) for k, v in shard.items()
  }
  if len(shards) == 1:
    save_file(to_arrays(shards[0]), os.path.join(path, SAFETENSORS), metadata)
    return
  weight_map, total = {}, 0
  for i, shard in enumerate(shards):
    fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    arrays = to_arrays(shard)
    save_file(arrays, os.path.join(path, fname), metadata=metadata)
    for k, v in arrays.items():
      weight_map[k] = fname
      total += v.size * jdtype.itemsize
  with open(os.path.join(path, SAFETENSORS_INDEX), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
