"""A Llama / Qwen2 / Qwen3 family decoder in Flax NNX with an explicit KV cache.

Conventions (all match Hugging Face `transformers`):
- kernels are stored [in, out] (HF stores [out, in]); every param carries its
  logical axis names in the `axes` metadata, which `sharding.py` maps to a mesh;
- RMSNorm computes in fp32 and multiplies the weight after casting back;
- RoPE uses the "rotate half" layout, with optional Llama-3 frequency scaling;
- query head h reads key/value head h // (num_heads // num_kv_heads).

The forward pass takes explicit `positions` and a padding `mask`, so a
left-padded batch gives every real token the logits of its unpadded prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_DTYPES = ("float32", "bfloat16", "float16")
F32 = jnp.dtype(jnp.float32)


ROPE_TYPES = ("llama3", "linear", "yarn")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """RoPE frequency scaling, HF's `rope_type` llama3, linear or yarn.

  llama3 reads low/high_freq_factor; yarn reads beta_fast / beta_slow /
  truncate and scales cos and sin by `attention_factor` (default: from
  `factor`, `mscale` and `mscale_all_dim`, as HF); both read
  original_max_position_embeddings. linear divides the frequencies by
  `factor`.
  """

  factor: float
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192
  rope_type: str = "llama3"
  beta_fast: float = 32.0
  beta_slow: float = 1.0
  truncate: bool = True
  attention_factor: float | None = None
  mscale: float | None = None
  mscale_all_dim: float | None = None

  def __post_init__(self):
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(
        f"RopeScaling.rope_type={self.rope_type!r}: allowed {ROPE_TYPES}"
      )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of a decoder. `family` picks the HF architecture."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int | None = None
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling | None = None
  rms_norm_eps: float = 1e-6
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  tie_embeddings: bool = False
  max_position_embeddings: int = 4096
  family: str = "llama"
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  dtype: str = "float32"
  param_dtype: str = "float32"
  init_std: float = 0.02

  def __post_init__(self):
    for name in (
      "vocab_size",
      "hidden_size",
      "intermediate_size",
      "num_layers",
      "num_heads",
      "num_kv_heads",
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(
          f"ModelConfig.{name}={value!r}: must be a positive integer"
        )
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
        f"ModelConfig.num_heads={self.num_heads} must be a multiple of "
        f"num_kv_heads={self.num_kv_heads}"
      )
    if self.head_dim is None:
      if self.hidden_size % self.num_heads:
        raise ValueError(
          f"ModelConfig.hidden_size={self.hidden_size} is not divisible by "
          f"num_heads={self.num_heads}; set head_dim explicitly"
        )
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
    if self.head_dim % 2:
      raise ValueError(f"ModelConfig.head_dim={self.head_dim} must be even")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in _DTYPES:
        raise ValueError(
          f"ModelConfig.{name}={getattr(self, name)!r}: allowed {_DTYPES}"
        )
    if self.family not in ("llama", "qwen2", "qwen3"):
      raise ValueError(
        f"ModelConfig.family={self.family!r}: allowed 'llama', 'qwen2', 'qwen3'"
      )
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))

  def replace(self, **changes) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  @property
  def num_params(self) -> int:
    """Parameter count (embeddings included, tied ones once)."""
    d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
    q, kv = self.num_heads * hd, self.num_kv_heads * hd
    attn = d * q + 2 * d * kv + q * d
    attn += (q + 2 * kv) * self.qkv_bias + d * self.o_bias
    attn += 2 * hd * self.qk_norm
    mlp = 3 * d * f + (2 * f + d) * self.mlp_bias
    per_layer = attn + mlp + 2 * d
    emb = self.vocab_size * d * (1 if self.tie_embeddings else 2)
    return self.num_layers * per_layer + emb + d


PRESETS = {
  # Tests: tiny enough to compile in seconds.
  "tiny": ModelConfig(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=512,
  ),
  # CPU experiments: learns the synthetic tasks in minutes on 2 cores.
  "small": ModelConfig(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=384,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=1024,
    tie_embeddings=True,
  ),
  # The benchmark model: 58M params, Llama-shaped; a decode step reads 167 MB
  # of fp32 weights (all but the embedding table).
  "bench50m": ModelConfig(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1376,
    num_layers=8,
    num_heads=8,
    num_kv_heads=8,
    max_position_embeddings=2048,
  ),
  "qwen2.5-0.5b": ModelConfig(
    family="qwen2",
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_layers=24,
    num_heads=14,
    num_kv_heads=2,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    qkv_bias=True,
    tie_embeddings=True,
    max_position_embeddings=32768,
    bos_token_id=151643,
    eos_token_id=151643,
  ),
  "qwen2.5-1.5b": ModelConfig(
    family="qwen2",
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    qkv_bias=True,
    tie_embeddings=True,
    max_position_embeddings=32768,
    bos_token_id=151643,
    eos_token_id=151643,
  ),
  "llama-3.2-1b": ModelConfig(
    family="llama",
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_layers=16,
    num_heads=32,
    num_kv_heads=8,
    head_dim=64,
    rope_theta=500000.0,
    rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192),
    rms_norm_eps=1e-5,
    tie_embeddings=True,
    max_position_embeddings=131072,
    bos_token_id=128000,
    eos_token_id=128001,
  ),
}


def preset(name: str, **overrides) -> ModelConfig:
  """A named size preset, optionally with fields replaced."""
  if name not in PRESETS:
    raise ValueError(f"model preset {name!r}: allowed {sorted(PRESETS)}")
  return PRESETS[name].replace(**overrides)


# KV cache ---------------------------------------------------------------------


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=["k", "v", "valid", "end", "next_pos"],
  meta_fields=[],
)
@dataclasses.dataclass
class KVCache:
  """Per-layer keys/values in [B, KV, S, D] slots, plus bookkeeping.

  Every leaf has the batch on axis 0, so `jax.tree.map(lambda x: x[idx],
  cache)` reorders or broadcasts a cache (beam search, GRPO groups).
  `valid[b, s]` says slot s holds a real token; `end[b]` (equal for all b)
  is the number of slots written; `next_pos[b]` is the RoPE position of the
  next real token of row b.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  valid: jax.Array
  end: jax.Array
  next_pos: jax.Array

  @property
  def max_len(self) -> int:
    return self.valid.shape[1]


def init_cache(
  config: ModelConfig, batch_size: int, max_len: int, dtype=None
) -> KVCache:
  """An empty cache with `max_len` slots (prompt + new tokens)."""
  dtype = jnp.dtype(dtype or config.dtype)
  shape = (batch_size, config.num_kv_heads, max_len, config.head_dim)
  zeros = lambda: tuple(
    jnp.zeros(shape, dtype) for _ in range(config.num_layers)
  )
  return KVCache(
    k=zeros(),
    v=zeros(),
    valid=jnp.zeros((batch_size, max_len), bool),
    end=jnp.zeros((batch_size,), jnp.int32),
    next_pos=jnp.zeros((batch_size,), jnp.int32),
  )


# Layers -----------------------------------------------------------------------


def _normal(rngs: nnx.Rngs, shape, std: float, dtype):
  return std * jax.random.normal(rngs.params(), shape, dtype)


def mixed_dot(x, w, dtype, out_dtype=None):
  """x[..., K] @ w[K, N] with inputs cast to `dtype`, fp32 accumulation
  and the result in `out_dtype` (default `dtype`).

  The dot runs over the flattened rows, so `w`'s gradient is one 2-D
  GEMM (XLA:CPU runs the weight-gradient contraction over two batch
  dimensions about 2x slower). Below fp32 a custom VJP runs the backward
  dots on `dtype` inputs with fp32 accumulation too, and `w`'s gradient
  comes back in `w`'s own dtype (fp32 master weights); on CPUs with
  AVX512-BF16 / AMX these are XLA's native bf16 dots, where a bf16 x bf16
  -> bf16 dot would be run in fp32 with conversions around it."""
  dtype, out_dtype = jnp.dtype(dtype), jnp.dtype(out_dtype or dtype)
  if dtype == F32:  # JAX's own derivatives (forward mode too), 2-D dots
    y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(F32), w.astype(F32))
    return y.reshape(*x.shape[:-1], w.shape[-1]).astype(out_dtype)
  return _mixed_dot(x.astype(dtype), w, dtype, out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mixed_dot(x, w, dtype, out_dtype):
  y = jnp.dot(x, w.astype(dtype), preferred_element_type=F32)
  return y.astype(out_dtype)


def _mixed_dot_fwd(x, w, dtype, out_dtype):
  return _mixed_dot(x, w, dtype, out_dtype), (x, w)


def transposed(a):
  """`a` with its last two axes swapped, written out in row-major layout
  when `a` is not fp32.

  XLA:CPU folds a plain transpose into the layout of the dot that reads
  it, and a bf16 dot with a transposed operand misses the native
  AVX512-BF16 / AMX kernel (about 4x slower measured here); a transpose
  through a unit axis is not a bitcast, so XLA writes it out."""
  if a.dtype == F32:
    return a.swapaxes(-1, -2)
  *batch, m, n = a.shape
  return a.reshape(*batch, m, 1, n).swapaxes(-1, -3).reshape(*batch, n, m)


def _mixed_dot_bwd(dtype, out_dtype, res, g):
  x, w = res
  g = g.astype(dtype)
  dx = jnp.dot(g, transposed(w.astype(dtype)), preferred_element_type=F32)
  flat = lambda a: a.reshape(-1, a.shape[-1])
  dw = jnp.dot(transposed(flat(x)), flat(g), preferred_element_type=F32)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_mixed_dot.defvjp(_mixed_dot_fwd, _mixed_dot_bwd)


class Dense(nnx.Module):
  """y = x @ kernel (+ bias), kernel stored [in, out] with logical axes."""

  def __init__(
    self,
    in_features: int,
    out_features: int,
    axes: tuple[str, str],
    *,
    config: ModelConfig,
    use_bias: bool,
    rngs: nnx.Rngs,
  ):
    pdtype = jnp.dtype(config.param_dtype)
    self.kernel = nnx.Param(
      _normal(rngs, (in_features, out_features), config.init_std, pdtype),
      axes=axes,
    )
    self.bias = (
      nnx.Param(jnp.zeros((out_features,), pdtype), axes=axes[1:])
      if use_bias
      else None
    )
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x):
    y = mixed_dot(x, self.kernel[...], self.dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class RMSNorm(nnx.Module):
  """HF RMSNorm: normalise in fp32, cast back, then scale."""

  def __init__(self, dim: int, eps: float, *, config: ModelConfig, axis_name):
    self.scale = nnx.Param(
      jnp.ones((dim,), jnp.dtype(config.param_dtype)), axes=(axis_name,)
    )
    self.eps = eps
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    normed = (x32 * jax.lax.rsqrt(var + self.eps)).astype(self.dtype)
    return self.scale[...].astype(self.dtype) * normed


@functools.lru_cache(maxsize=64)
def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """Inverse RoPE frequencies [head_dim // 2] (float32, like HF)."""
  dim = config.head_dim
  exponent = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim
  inv_freq = (1.0 / (config.rope_theta**exponent)).astype(np.float32)
  s = config.rope_scaling
  if s is None:
    return inv_freq
  if s.rope_type == "linear":
    return (inv_freq / np.float32(s.factor)).astype(np.float32)
  if s.rope_type == "yarn":
    return _yarn_inv_freq(config.rope_theta, dim, s)
  low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
  high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
  smooth = (
    s.original_max_position_embeddings / wavelen - s.low_freq_factor
  ) / (s.high_freq_factor - s.low_freq_factor)
  smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def _yarn_inv_freq(base: float, dim: int, s: RopeScaling) -> np.ndarray:
  """YaRN: interpolated low frequencies, extrapolated high ones, a linear
  ramp between (as HF's `_compute_yarn_parameters`)."""

  def correction_dim(rotations):
    length = s.original_max_position_embeddings / (rotations * 2 * math.pi)
    return dim * math.log(length) / (2 * math.log(base))

  low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
  if s.truncate:
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001
  ramp = (np.arange(dim // 2, dtype=np.float32) - low) / (high - low)
  extrapolate = 1 - np.clip(ramp, 0, 1).astype(np.float32)
  pos_freqs = np.float32(base) ** (
    np.arange(0, dim, 2).astype(np.float32) / dim
  )
  extrapolated = 1.0 / pos_freqs
  interpolated = 1.0 / (np.float32(s.factor) * pos_freqs)
  out = interpolated * (1 - extrapolate) + extrapolated * extrapolate
  return out.astype(np.float32)


def rope_attention_factor(config: ModelConfig) -> float:
  """The factor on cos and sin (1 except for YaRN)."""
  s = config.rope_scaling
  if s is None or s.rope_type != "yarn":
    return 1.0
  if s.attention_factor is not None:
    return s.attention_factor

  def mscale(m=1.0):
    return 1.0 if s.factor <= 1 else 0.1 * m * math.log(s.factor) + 1.0

  if s.mscale and s.mscale_all_dim:
    return mscale(s.mscale) / mscale(s.mscale_all_dim)
  return mscale()


def apply_rope(x_BxTxHxD, cos_BxTxD, sin_BxTxD):
  half = x_BxTxHxD.shape[-1] // 2
  x1, x2 = x_BxTxHxD[..., :half], x_BxTxHxD[..., half:]
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  cos = cos_BxTxD[:, :, None, :].astype(x_BxTxHxD.dtype)
  sin = sin_BxTxD[:, :, None, :].astype(x_BxTxHxD.dtype)
  return x_BxTxHxD * cos + rotated * sin


def attention(q_BxKxGxTxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS):
  """softmax(q k^T / sqrt(D)) v over the unmasked keys, per kv head K and
  its G query heads; fp32 scores and softmax, output in q's dtype.

  Batch axes first with fp32 accumulation (XLA:CPU's batched dots run the
  forward 3x faster than over [B, T, K, G, D]). Below fp32 a custom VJP
  runs the backward dots on written-out operands (`transposed`), 3x faster
  in bf16 than JAX's own; fp32 keeps JAX's derivatives."""
  if q_BxKxGxTxD.dtype == F32:
    return _attention_fwd(q_BxKxGxTxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS)[0]
  return _attention(q_BxKxGxTxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS)


@jax.custom_vjp
def _attention(q, k, v, mask):
  return _attention_fwd(q, k, v, mask)[0]


def _attention_fwd(q, k, v, mask):
  scale = q.shape[-1] ** -0.5
  scores = jnp.einsum("bkgtd,bksd->bkgts", q, k, preferred_element_type=F32)
  scores = jnp.where(mask[:, None, None], scores * scale, -1e30)
  probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
  out = jnp.einsum("bkgts,bksd->bkgtd", probs, v, preferred_element_type=F32)
  out = out.astype(q.dtype)
  return out, (q, k, v, probs, out)


def _attention_bwd(res, d_out):
  """The softmax backward with delta = rowsum(dO * O); query heads of a kv
  head fold into the rows of dK and dV's dots."""
  q, k, v, probs, out = res
  B, K, G, T, D = q.shape
  rows = lambda a: a.reshape(B, K, G * T, a.shape[-1])
  dot = functools.partial(jnp.einsum, preferred_element_type=F32)
  dv = dot("bkst,bktd->bksd", transposed(rows(probs)), rows(d_out))
  dp = dot("bkgtd,bkds->bkgts", d_out, transposed(v))
  delta = jnp.sum(d_out.astype(F32) * out.astype(F32), -1, keepdims=True)
  ds = (probs * (dp - delta) * D**-0.5).astype(q.dtype)
  dq = dot("bkgts,bksd->bkgtd", ds, k)
  dk = dot("bkst,bktd->bksd", transposed(rows(ds)), rows(q))
  cast = lambda a: a.astype(q.dtype)
  return cast(dq), cast(dk), cast(dv), None


_attention.defvjp(_attention_fwd, _attention_bwd)


class Attention(nnx.Module):
  """Grouped-query attention with optional q/k/v bias and q/k RMSNorm."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c = config
    d, hd = c.hidden_size, c.head_dim
    dense = functools.partial(Dense, config=c, rngs=rngs)
    self.q = dense(
      d, c.num_heads * hd, ("embed", "q_heads"), use_bias=c.qkv_bias
    )
    self.k = dense(
      d, c.num_kv_heads * hd, ("embed", "kv_heads"), use_bias=c.qkv_bias
    )
    self.v = dense(
      d, c.num_kv_heads * hd, ("embed", "kv_heads"), use_bias=c.qkv_bias
    )
    self.o = dense(c.num_heads * hd, d, ("q_heads", "embed"), use_bias=c.o_bias)
    if c.qk_norm:
      norm = functools.partial(
        RMSNorm, hd, c.rms_norm_eps, config=c, axis_name="head_dim"
      )
      self.q_norm, self.k_norm = norm(), norm()
    else:
      self.q_norm = self.k_norm = None
    self.num_heads, self.num_kv_heads, self.head_dim = (
      c.num_heads,
      c.num_kv_heads,
      hd,
    )

  def __call__(self, x_BxTxD, cos, sin, layer_cache, mask_BxTxS):
    """Returns the attention output and the (updated) layer (k, v).

    `layer_cache` is None (attend over this call's tokens only) or
    `(k_cache, v_cache, end)`: this call's keys/values are written at slots
    [end, end + T) and attention runs over every slot.
    """
    B, T, _ = x_BxTxD.shape
    H, KV, D = self.num_heads, self.num_kv_heads, self.head_dim
    q = self.q(x_BxTxD).reshape(B, T, H, D)
    k = self.k(x_BxTxD).reshape(B, T, KV, D)
    v = self.v(x_BxTxD).reshape(B, T, KV, D)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k_BxKxTxD = k.transpose(0, 2, 1, 3)
    v_BxKxTxD = v.transpose(0, 2, 1, 3)
    if layer_cache is not None:
      k_cache, v_cache, end = layer_cache
      start = (0, 0, end, 0)
      k_BxKxTxD = jax.lax.dynamic_update_slice(
        k_cache, k_BxKxTxD.astype(k_cache.dtype), start
      )
      v_BxKxTxD = jax.lax.dynamic_update_slice(
        v_cache, v_BxKxTxD.astype(v_cache.dtype), start
      )
    q_BxKxGxTxD = q.reshape(B, T, KV, H // KV, D).transpose(0, 2, 3, 1, 4)
    # Over a cache, in the cache's dtype (fp32 on XLA:CPU: `cache_dtype`).
    adt = k_BxKxTxD.dtype if layer_cache is not None else q.dtype
    out = attention(
      q_BxKxGxTxD.astype(adt),
      k_BxKxTxD.astype(adt),
      v_BxKxTxD.astype(adt),
      mask_BxTxS,
    ).astype(q.dtype)
    out = self.o(out.transpose(0, 3, 1, 2, 4).reshape(B, T, H * D))
    return out, (k_BxKxTxD, v_BxKxTxD)


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c = config
    dense = functools.partial(Dense, config=c, use_bias=c.mlp_bias, rngs=rngs)
    self.gate = dense(c.hidden_size, c.intermediate_size, ("embed", "mlp"))
    self.up = dense(c.hidden_size, c.intermediate_size, ("embed", "mlp"))
    self.down = dense(c.intermediate_size, c.hidden_size, ("mlp", "embed"))

  def __call__(self, x):
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c = config
    norm = functools.partial(
      RMSNorm, c.hidden_size, c.rms_norm_eps, config=c, axis_name="norm"
    )
    self.attn_norm = norm()
    self.attn = Attention(c, rngs=rngs)
    self.mlp_norm = norm()
    self.mlp = MLP(c, rngs=rngs)

  def __call__(self, x, cos, sin, layer_cache, mask):
    h, kv = self.attn(self.attn_norm(x), cos, sin, layer_cache, mask)
    x = x + h
    return x + self.mlp(self.mlp_norm(x)), kv


class Transformer(nnx.Module):
  """Decoder-only LM. `model(tokens, ...) -> (logits fp32, cache)`."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    c = config
    self.config = c
    pdtype = jnp.dtype(c.param_dtype)
    self.embed = nnx.Param(
      _normal(rngs, (c.vocab_size, c.hidden_size), c.init_std, pdtype),
      axes=("vocab", "embed"),
    )
    self.layers = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
    self.final_norm = RMSNorm(
      c.hidden_size, c.rms_norm_eps, config=c, axis_name="norm"
    )
    self.lm_head = (
      None
      if c.tie_embeddings
      else Dense(
        c.hidden_size,
        c.vocab_size,
        ("embed", "vocab"),
        config=c,
        use_bias=False,
        rngs=rngs,
      )
    )

  def __call__(self, tokens_BxT, mask_BxT=None, positions_BxT=None, cache=None):
    hidden, cache = self.trunk(tokens_BxT, mask_BxT, positions_BxT, cache)
    return self.unembed(hidden), cache

  def unembed(self, hidden_BxTxD):
    """Final hidden states -> fp32 logits: inputs in the compute dtype,
    fp32 accumulation and output (as the update's log-probs), never
    rounded to bf16."""
    dtype = jnp.dtype(self.config.dtype)
    h = hidden_BxTxD.astype(dtype)
    if self.lm_head is None:
      w = self.embed[...].astype(dtype)
      return jnp.einsum("btd,vd->btv", h, w, preferred_element_type=F32)
    return mixed_dot(h, self.lm_head.kernel[...], dtype, F32)

  def trunk(self, tokens_BxT, mask_BxT=None, positions_BxT=None, cache=None):
    """Final-normed hidden states [B, T, D] and the updated cache.

    mask_BxT: 1 for real tokens, 0 for padding (default all 1).
    positions_BxT: RoPE positions; by default counted over real tokens,
      continuing from `cache.next_pos` when a cache is given.
    cache: a `KVCache`; this call's tokens fill its next T slots.
    """
    c = self.config
    B, T = tokens_BxT.shape
    if mask_BxT is None:
      mask_BxT = jnp.ones((B, T), bool)
    mask_BxT = mask_BxT.astype(bool)
    if positions_BxT is None:
      positions_BxT = jnp.cumsum(mask_BxT, axis=1, dtype=jnp.int32) - 1
      if cache is not None:
        positions_BxT = positions_BxT + cache.next_pos[:, None]
      positions_BxT = jnp.maximum(positions_BxT, 0)

    freqs = positions_BxT.astype(jnp.float32)[..., None] * rope_inv_freq(c)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos, sin = jnp.cos(emb), jnp.sin(emb)
    if (attention_factor := rope_attention_factor(c)) != 1.0:
      cos, sin = cos * attention_factor, sin * attention_factor

    causal_TxT = jnp.tril(jnp.ones((T, T), bool))
    if cache is None:
      attn_mask = causal_TxT[None] & mask_BxT[:, None, :]
      end = None
    else:
      end = cache.end[0]
      valid = jax.lax.dynamic_update_slice(cache.valid, mask_BxT, (0, end))
      slot_S = jnp.arange(cache.max_len)
      query_slot_T = end + jnp.arange(T)
      attn_mask = valid[:, None, :] & (slot_S[None, :] <= query_slot_T[:, None])

    x = jnp.take(self.embed[...], tokens_BxT, axis=0).astype(c.dtype)
    new_k, new_v = [], []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else (cache.k[i], cache.v[i], end)
      x, (k, v) = layer(x, cos, sin, layer_cache, attn_mask)
      new_k.append(k)
      new_v.append(v)
    hidden = self.final_norm(x)

    if cache is not None:
      cache = KVCache(
        k=tuple(new_k),
        v=tuple(new_v),
        valid=valid,
        end=cache.end + T,
        next_pos=cache.next_pos + jnp.sum(mask_BxT, axis=1, dtype=jnp.int32),
      )
    return hidden, cache


def init_model(config: ModelConfig, seed: int = 0) -> Transformer:
  return Transformer(config, rngs=nnx.Rngs(seed))
