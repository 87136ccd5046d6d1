"""The decoder against HF transformers, its cache, sharding and checkpoints."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from hf_helpers import make_hf_checkpoint

from rlx.models import (
  init_cache,
  init_model,
  load_pretrained,
  make_mesh,
  preset,
  save_pretrained,
)
from rlx.models.hf import CheckpointError, config_from_hf

LLAMA3_ROPE = {
  "rope_type": "llama3",
  "factor": 8.0,
  "low_freq_factor": 1.0,
  "high_freq_factor": 4.0,
  "original_max_position_embeddings": 16,
}
CASES = {
  "qwen2": ("qwen2", {}),
  "qwen2_tied": ("qwen2", {"tie_word_embeddings": True}),
  "llama": ("llama", {}),
  "llama3_rope": (
    "llama",
    {"rope_parameters": {"rope_theta": 5000.0, **LLAMA3_ROPE}},
  ),
  "llama_bias_tied": (
    "llama",
    {
      "attention_bias": True,
      "tie_word_embeddings": True,
      "num_key_value_heads": 1,
    },
  ),
  "qwen3": ("qwen3", {"head_dim": 32}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
  family, overrides = CASES[request.param]
  path = tmp_path_factory.mktemp(request.param)
  return make_hf_checkpoint(path, family, seed=len(request.param), **overrides)


def _prompts(rng, vocab, lengths):
  return [rng.randint(3, vocab, size=n) for n in lengths]


def _left_pad(prompts, pad=0):
  width = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), width), pad, np.int32)
  mask = np.zeros((len(prompts), width), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p) :] = p
    mask[i, width - len(p) :] = 1
  return tokens, mask


def _hf_logits(hf_model, tokens):
  with torch.no_grad():
    return hf_model(torch.tensor(np.asarray(tokens)[None])).logits[0].numpy()


def test_matches_hf_unpadded_and_left_padded(checkpoint):
  path, hf_model = checkpoint
  model = load_pretrained(path)
  vocab = model.config.vocab_size
  rng = np.random.RandomState(0)
  prompts = _prompts(rng, vocab, [29, 7, 18])
  refs = [_hf_logits(hf_model, p) for p in prompts]
  assert max(np.abs(r).max() for r in refs) > 3.0  # far from uniform

  tokens, mask = _left_pad(prompts)
  logits, _ = model(jnp.asarray(tokens), jnp.asarray(mask))
  logits = np.asarray(logits)
  for i, (p, ref) in enumerate(zip(prompts, refs)):
    ours = logits[i, tokens.shape[1] - len(p) :]
    assert np.abs(ours - ref).max() <= 1e-4
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))

  single, _ = model(jnp.asarray(prompts[0])[None])
  assert np.abs(np.asarray(single[0]) - refs[0]).max() <= 1e-4


def test_config_keys_are_read(checkpoint):
  path, hf_model = checkpoint
  config = load_pretrained(path).config
  hf = hf_model.config
  assert config.tie_embeddings == hf.tie_word_embeddings
  assert config.rms_norm_eps == hf.rms_norm_eps
  assert config.num_kv_heads == hf.num_key_value_heads
  assert config.qk_norm == (hf.model_type == "qwen3")


def test_transformers_4x_config_keys(tmp_path):
  """`rope_theta` / `rope_scaling` at top level, as transformers 4.x writes."""
  path, hf_model = make_hf_checkpoint(
    tmp_path, "llama", rope_parameters={"rope_theta": 5000.0, **LLAMA3_ROPE}
  )
  with open(os.path.join(path, "config.json")) as f:
    cfg = json.load(f)
  params = cfg.pop("rope_parameters")
  cfg["rope_theta"] = params.pop("rope_theta")
  cfg["rope_scaling"] = params
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f)
  model = load_pretrained(path)
  assert model.config.rope_theta == 5000.0
  assert model.config.rope_scaling.factor == 8.0
  tokens = np.arange(3, 40)
  logits, _ = model(jnp.asarray(tokens)[None])
  ref = _hf_logits(hf_model, tokens)
  assert np.abs(np.asarray(logits[0]) - ref).max() <= 1e-4


YARN_LENGTH = {"original_max_position_embeddings": 16}


@pytest.mark.parametrize(
  "family, rope",
  [
    ("llama", {"rope_type": "linear", "factor": 4.0}),
    ("qwen2", {"rope_type": "yarn", "factor": 4.0, **YARN_LENGTH}),
    (
      "qwen3",
      {
        "rope_type": "yarn",
        "factor": 8.0,
        **YARN_LENGTH,
        "beta_fast": 16.0,
        "beta_slow": 2.0,
        "mscale": 0.7,
        "mscale_all_dim": 0.5,
        "truncate": False,
      },
    ),
  ],
)
def test_rope_scaling_types_match_hf(family, rope, tmp_path):
  """linear and YaRN RoPE (cos/sin attention factor included) give HF's
  logits past the pretraining length, and survive export."""
  rope = {"rope_theta": 5000.0, **rope}
  path, hf_model = make_hf_checkpoint(
    tmp_path / "hf", family, rope_parameters=rope
  )
  model = load_pretrained(path)
  assert model.config.rope_scaling.rope_type == rope["rope_type"]
  tokens = np.arange(3, 70)  # well past original_max_position_embeddings
  logits, _ = model(jnp.asarray(tokens)[None])
  ref = _hf_logits(hf_model, tokens)
  assert np.abs(np.asarray(logits[0]) - ref).max() <= 1e-4
  save_pretrained(model, str(tmp_path / "out"))
  assert load_pretrained(str(tmp_path / "out")).config == model.config


def test_unsupported_rope_scaling_is_refused():
  base = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 32,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 64,
  }
  dynamic = {"rope_type": "dynamic", "factor": 2.0}
  with pytest.raises(CheckpointError, match="rope_type='dynamic'"):
    config_from_hf({**base, "rope_scaling": dynamic})
  with pytest.raises(CheckpointError, match="lacks the key 'factor'"):
    config_from_hf({**base, "rope_scaling": {"rope_type": "linear"}})


def test_cached_decoding_equals_full_forward():
  config = preset("tiny", qkv_bias=True, init_std=0.3)
  model = init_model(config, seed=1)
  rng = np.random.RandomState(1)
  tokens, mask = _left_pad(_prompts(rng, 256, [12, 5, 9]))
  full, _ = model(jnp.asarray(tokens), jnp.asarray(mask))

  cache = init_cache(config, tokens.shape[0], 16)
  pieces = []
  for start, stop in [(0, 4), (4, 5), (5, 6), (6, 9), (9, 12)]:
    logits, cache = model(
      jnp.asarray(tokens[:, start:stop]),
      jnp.asarray(mask[:, start:stop]),
      cache=cache,
    )
    pieces.append(logits)
  stepwise = np.concatenate([np.asarray(p) for p in pieces], axis=1)
  real = mask.astype(bool)
  np.testing.assert_allclose(stepwise[real], np.asarray(full)[real], atol=2e-5)
  assert int(cache.end[0]) == 12
  np.testing.assert_array_equal(np.asarray(cache.next_pos), mask.sum(1))


def test_future_tokens_never_change_past_logits():
  model = init_model(preset("tiny", init_std=0.3), seed=2)
  rng = np.random.RandomState(2)
  a = rng.randint(0, 256, size=(1, 20))
  b = a.copy()
  b[0, 12:] = rng.randint(0, 256, size=8)
  la, _ = model(jnp.asarray(a))
  lb, _ = model(jnp.asarray(b))
  np.testing.assert_array_equal(np.asarray(la)[0, :12], np.asarray(lb)[0, :12])
  assert np.abs(np.asarray(la)[0, 12:] - np.asarray(lb)[0, 12:]).max() > 1e-3


def test_sharded_forward_on_8_devices_equals_1_device(checkpoint):
  path, _ = checkpoint
  assert jax.device_count() == 8
  single = load_pretrained(path)
  mesh = make_mesh(data=2, fsdp=2, tensor=2)
  sharded = load_pretrained(path, mesh=mesh)
  embed = sharded.embed[...]
  assert len(embed.sharding.device_set) == 8
  assert embed.addressable_shards[0].data.size < embed.size  # not replicated
  rng = np.random.RandomState(3)
  tokens, mask = _left_pad(_prompts(rng, 128, [11, 6, 9, 3]))

  graphdef, params = nnx.split(sharded)
  forward = jax.jit(lambda p, t, m: nnx.merge(graphdef, p)(t, m)[0])
  ours = forward(params, jnp.asarray(tokens), jnp.asarray(mask))
  ref, _ = single(jnp.asarray(tokens), jnp.asarray(mask))
  np.testing.assert_allclose(
    np.asarray(ours), np.asarray(ref), atol=1e-4, rtol=1e-5
  )


def test_export_then_import_is_identical(checkpoint, tmp_path):
  path, hf_model = checkpoint
  model = load_pretrained(path)
  save_pretrained(model, str(tmp_path / "out"))
  again = load_pretrained(str(tmp_path / "out"))
  a = nnx.to_flat_state(nnx.state(model, nnx.Param))
  b = dict(nnx.to_flat_state(nnx.state(again, nnx.Param)))
  for key, var in a:
    np.testing.assert_array_equal(
      np.asarray(var.get_value()), np.asarray(b[key].get_value())
    )
  # And transformers reads the export back to the same weights.
  import transformers

  reread = transformers.AutoModelForCausalLM.from_pretrained(
    str(tmp_path / "out"), dtype=torch.float32
  )
  theirs = reread.state_dict()
  for name, tensor in hf_model.state_dict().items():
    if "rotary_emb" in name:
      continue
    torch.testing.assert_close(theirs[name], tensor, rtol=0, atol=0)


def test_sharded_index_and_bf16_export(tmp_path):
  path, _ = make_hf_checkpoint(tmp_path / "src", "qwen2")
  model = load_pretrained(path)
  out = str(tmp_path / "sharded")
  save_pretrained(model, out, dtype="bfloat16", max_shard_bytes=20_000)
  index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
  assert len(set(index["weight_map"].values())) > 2
  again = load_pretrained(out)
  a = np.asarray(model.layers[1].mlp.down.kernel[...])
  b = np.asarray(again.layers[1].mlp.down.kernel[...])
  np.testing.assert_array_equal(a.astype(jnp.bfloat16).astype(np.float32), b)


def test_pickle_checkpoint_is_refused(tmp_path):
  path, hf_model = make_hf_checkpoint(tmp_path, "llama")
  os.remove(os.path.join(path, "model.safetensors"))
  torch.save(hf_model.state_dict(), os.path.join(path, "pytorch_model.bin"))
  with pytest.raises(
    CheckpointError, match=r"pickle weights \['pytorch_model.bin'\]"
  ):
    load_pretrained(path)


def test_unknown_architecture_and_bad_shapes_are_refused(tmp_path):
  path, _ = make_hf_checkpoint(tmp_path, "llama")
  cfg_path = os.path.join(path, "config.json")
  cfg = json.load(open(cfg_path))
  json.dump(
    {**cfg, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"},
    open(cfg_path, "w"),
  )
  with pytest.raises(
    CheckpointError, match="GPT2LMHeadModel.*LlamaForCausalLM"
  ):
    load_pretrained(path)
  json.dump({**cfg, "intermediate_size": 100}, open(cfg_path, "w"))
  with pytest.raises(CheckpointError, match="gate_proj.weight: shape"):
    load_pretrained(path)
  with open(os.path.join(path, "model.safetensors"), "wb") as f:
    f.write(b"garbage")
  json.dump(cfg, open(cfg_path, "w"))
  with pytest.raises(CheckpointError, match="unreadable safetensors"):
    load_pretrained(path)


def test_presets_and_config_errors():
  assert 45e6 < preset("bench50m").num_params < 60e6
  assert 0.45e9 < preset("qwen2.5-0.5b").num_params < 0.55e9
  assert 1.1e9 < preset("llama-3.2-1b").num_params < 1.3e9
  model = init_model(preset("tiny"))
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert n == preset("tiny").num_params
  with pytest.raises(ValueError, match="num_kv_heads"):
    preset("tiny", num_kv_heads=3)
  with pytest.raises(ValueError, match="dtype='fp8'"):
    preset("tiny", dtype="fp8")
  with pytest.raises(ValueError, match="model preset 'huge'"):
    preset("huge")


def test_weight_map_outside_the_directory_is_refused(tmp_path):
  path, _ = make_hf_checkpoint(tmp_path / "src", "llama")
  out = str(tmp_path / "sharded")
  save_pretrained(load_pretrained(path), out, max_shard_bytes=20_000)
  index_path = os.path.join(out, "model.safetensors.index.json")
  index = json.load(open(index_path))
  name, shard = sorted(index["weight_map"].items())[0]
  os.makedirs(tmp_path / "other")  # a real file, so only confinement stops it
  outside = str(tmp_path / "other" / shard)
  os.replace(os.path.join(out, shard), outside)
  for bad in (f"../other/{shard}", outside):
    weight_map = {
      k: (bad if v == shard else v) for k, v in index["weight_map"].items()
    }
    json.dump({**index, "weight_map": weight_map}, open(index_path, "w"))
    with pytest.raises(
      CheckpointError, match=r"points outside the checkpoint directory"
    ):
      load_pretrained(out)


_GOOD_HF = {
  "architectures": ["LlamaForCausalLM"],
  "vocab_size": 32,
  "hidden_size": 16,
  "intermediate_size": 32,
  "num_hidden_layers": 1,
  "num_attention_heads": 2,
  "max_position_embeddings": 64,
  "rope_theta": 1000.0,
  "rms_norm_eps": 1e-5,
}


@pytest.mark.parametrize(
  "change, message",
  [
    ({"hidden_size": None}, r"lacks the key 'hidden_size'"),
    ({"num_attention_heads": None}, r"lacks the key 'num_attention_heads'"),
    ({"hidden_size": "16"}, r"hidden_size='16': must be a positive integer"),
    ({"num_hidden_layers": 0}, r"num_hidden_layers=0: must be a positive"),
    ({"vocab_size": 32.5}, r"vocab_size=32.5: must be a positive integer"),
    ({"rope_theta": 0.0}, r"rope_theta=0.0: must be a finite number > 0"),
    ({"rope_theta": -1.0}, r"rope_theta=-1.0: must be a finite number > 0"),
    ({"rope_theta": float("nan")}, r"rope_theta=nan: must be a finite"),
    ({"rope_theta": "1e4"}, r"rope_theta='1e4': must be a finite number"),
    ({"rms_norm_eps": -1e-6}, r"rms_norm_eps=-1e-06: must be a finite"),
    ({"rms_norm_eps": "x"}, r"rms_norm_eps='x': must be a finite number"),
    (
      {"rope_scaling": {"rope_type": "linear", "factor": 0}},
      r"rope_scaling.factor=0: must be a finite number > 0",
    ),
    (
      {"rope_parameters": {"rope_type": "default", "rope_theta": 0}},
      r"rope_parameters.rope_theta=0: must be a finite number > 0",
    ),
    ({"rope_scaling": [2.0]}, r"rope_scaling=\[2.0\]: must be an object"),
    (
      {"max_position_embeddings": -1},
      r"max_position_embeddings=-1: must be a positive integer",
    ),
    ({"tie_word_embeddings": "false"}, r"tie_word_embeddings='false'"),
    ({"num_key_value_heads": 3}, r"num_heads=2 must be a multiple of"),
  ],
)
def test_bad_config_json_names_key_value_and_allowed(change, message):
  hf = {k: v for k, v in {**_GOOD_HF, **change}.items() if v is not None}
  config_from_hf(_GOOD_HF)  # the base is good
  with pytest.raises(CheckpointError, match=r"config.json.*" + message):
    config_from_hf(hf)


@pytest.mark.parametrize("document", ["[1, 2]", "null", '"llama"', "3"])
def test_config_json_that_is_not_an_object_is_refused(document, tmp_path):
  path, _ = make_hf_checkpoint(tmp_path, "llama")
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(document)
  with pytest.raises(CheckpointError, match=r"config.json must be a JSON obj"):
    load_pretrained(path)


def test_load_time_is_linear_in_the_number_of_layers(tmp_path):
  """Abstract shapes for 128 layers must cost ~4x those of 32 layers, not
  16x (a single nnx.eval_shape trace with nnx.Rngs was quadratic)."""
  import time

  from safetensors.numpy import save_file

  from rlx.models import hf

  def checkpoint(layers):
    config = preset(
      "tiny",
      num_layers=layers,
      hidden_size=8,
      intermediate_size=8,
      num_heads=2,
      num_kv_heads=1,
      head_dim=4,
      vocab_size=16,
    )
    path = tmp_path / str(layers)
    os.makedirs(path)
    json.dump(hf.config_to_hf(config), open(path / "config.json", "w"))
    flat = dict(nnx.to_flat_state(nnx.state(hf.abstract_model(config))))
    tensors = {}
    for ours, name, transposed in hf.hf_names(config):
      shape = flat[ours].get_value().shape
      tensors[name] = np.zeros(shape[::-1] if transposed else shape, "f4")
    save_file(tensors, str(path / "model.safetensors"))
    return str(path)

  def seconds(path):
    best = float("inf")
    for _ in range(2):
      start = time.perf_counter()
      model = load_pretrained(path)
      best = min(best, time.perf_counter() - start)
    return best, model

  small, large = checkpoint(32), checkpoint(128)
  seconds(small)  # warm caches
  t32, _ = seconds(small)
  t128, model = seconds(large)
  assert model.config.num_layers == 128
  assert t128 < 8 * t32, f"32 layers {t32:.2f} s, 128 layers {t128:.2f} s"


def test_mixed_dot_is_a_bf16_dot_with_fp32_accumulation_and_grads():
  """Forward and both gradients match fp32 dots of the bf16-rounded
  inputs; the input gradient is rounded to bf16 (the activations' dtype),
  the weight gradient keeps the fp32 master's dtype and precision."""
  from rlx.models.transformer import mixed_dot

  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k1, (2, 5, 16))
  w = jax.random.normal(k2, (16, 8))
  g = jax.random.normal(k3, (2, 5, 8))
  bf = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  y, vjp = jax.vjp(
    lambda x, w: mixed_dot(x, w, jnp.bfloat16, jnp.float32), x, w
  )
  dx, dw = vjp(g)
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(y, bf(x) @ bf(w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, bf(bf(g) @ bf(w).T), rtol=1e-5, atol=1e-5)
  ref = jnp.einsum("btk,btn->kn", bf(x), bf(g))
  np.testing.assert_allclose(dw, ref, rtol=1e-5, atol=1e-5)
  # bf16 output (the Dense path): its cotangent is bf16 too.
  y16 = mixed_dot(x.astype(jnp.bfloat16), w, jnp.bfloat16)
  assert y16.dtype == jnp.bfloat16
  grad_w = jax.grad(lambda w: mixed_dot(x, w, "bfloat16").sum().astype(float))
  assert grad_w(w).dtype == jnp.float32


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_gradients_match_autodiff_of_the_formula(dtype):
  """`attention` (its custom VJP below fp32) against JAX's gradient of the
  textbook formula in fp32 on the same inputs: grouped queries (G = 2),
  a causal mask with a padded key, more keys than queries (a cache)."""
  from rlx.models.transformer import attention

  B, K, G, T, S, D = 2, 2, 2, 5, 7, 8
  ks = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(ks[0], (B, K, G, T, D)).astype(dtype)
  k, v = (jax.random.normal(kk, (B, K, S, D)).astype(dtype) for kk in ks[1:3])
  g = jax.random.normal(ks[3], (B, K, G, T, D))
  mask = jnp.arange(S)[None, None] <= jnp.arange(T)[None, :, None] + S - T
  mask = mask & (jnp.arange(S) != 1)[None, None]  # a padded key
  mask = jnp.broadcast_to(mask, (B, T, S))

  def reference(q, k, v):
    scores = jnp.einsum("bkgtd,bksd->bkgts", q, k) / np.sqrt(D)
    scores = jnp.where(mask[:, None, None], scores, -jnp.inf)
    return jnp.einsum("bkgts,bksd->bkgtd", jax.nn.softmax(scores), v)

  f32 = lambda a: a.astype(jnp.float32)
  loss = lambda f: lambda q, k, v: jnp.sum(f32(f(q, k, v)) * g)
  out, want = (
    reference(f32(q), f32(k), f32(v)),
    jax.grad(loss(reference), (0, 1, 2))(f32(q), f32(k), f32(v)),
  )
  got_out = attention(q, k, v, mask)
  got = jax.grad(loss(lambda q, k, v: attention(q, k, v, mask)), (0, 1, 2))(
    q, k, v
  )
  tol = 1e-5 if dtype == "float32" else 3e-2
  assert got_out.dtype == jnp.dtype(dtype)
  np.testing.assert_allclose(f32(got_out), out, atol=tol, rtol=tol)
  for a, b in zip(got, want):
    assert a.dtype == jnp.dtype(dtype)
    scale = float(jnp.max(jnp.abs(b)))
    np.testing.assert_allclose(f32(a) / scale, b / scale, atol=tol)
