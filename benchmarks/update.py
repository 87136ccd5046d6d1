"""GRPO update throughput: rlx (JAX) vs a straightforward PyTorch step.

    python benchmarks/update.py [--runs 3] [--no-bf16] [--no-memory]
    python benchmarks/update.py --preset=llama-3.2-1b --batch=8   # on a GPU

One GRPO update (one epoch, one minibatch, beta = 0.04 with k3 KL, clipped
ratio, AdamW + global-norm clipping) on `preset('bench50m')` with a batch of
8 x 192 tokens (64 prompt + 128 completion), from the same weights in both
frameworks. Reports compile time, median step time, tokens/s, achieved
FLOP/s against this machine's measured matmul peak, and the compiled peak
temporary memory of the log-prob pass at B=8, T=1024, V=151936 with and
without chunking. When jax runs on a GPU and torch sees one, the torch step
runs on `cuda` too and the matmul peaks are measured at 8192^3. torch's bf16
autocast step runs over the whole batch on a GPU or a CPU with native bf16
(AVX512-BF16 / AMX); elsewhere one row is timed and scaled to the batch.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from machine import native_bf16

from rlx import algos
from rlx.models import init_model, make_mesh, preset
from rlx.models.hf import config_to_hf, hf_names

B, T, PROMPT = 8, 192, 64  # B: --batch
TORCH_DEVICE = "cpu"  # "cuda" when jax runs on a GPU and torch sees one
BETA, EPS = 0.04, 0.2


def make_batch(vocab: int) -> dict:
  rng = np.random.default_rng(0)
  comp = np.zeros((B, T), bool)
  comp[:, PROMPT:] = True
  return dict(
    tokens=rng.integers(0, vocab, (B, T)).astype(np.int32),
    mask=np.ones((B, T), bool),
    completion_mask=comp,
    old_logprobs=(-np.log(vocab) + 0.05 * rng.normal(size=(B, T))).astype(
      np.float32
    ),
    ref_logprobs=(-np.log(vocab) + 0.05 * rng.normal(size=(B, T))).astype(
      np.float32
    ),
    advantages=rng.normal(size=B).astype(np.float32),
  )


def train_flops(config, tokens: int, seq_len: int | None = None) -> float:
  """Matmul FLOPs of forward + backward (3x forward), attention included
  (each of `tokens` attends over `seq_len`, default T, positions)."""
  c, length = config, T if seq_len is None else seq_len
  q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
  per_layer = 2 * c.hidden_size * q + 2 * c.hidden_size * kv
  per_layer += 3 * c.hidden_size * c.intermediate_size
  dense = c.num_layers * per_layer + c.hidden_size * c.vocab_size
  attn = c.num_layers * 2 * length * q  # QK^T and PV, per token, full square
  return 3 * 2 * tokens * (dense + attn)


def median_time(fn, runs: int) -> float:
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


# Peaks ------------------------------------------------------------------------


def matmul_peak(runs: int, n: int = 2048) -> dict:
  """Square-matmul FLOP/s of each framework; jax bf16 as the model runs it
  (bf16 inputs, fp32 accumulation). Torch bf16 at n=512 on CPUs without
  native bf16, where it is ~50x slower than fp32."""
  import torch

  cuda = TORCH_DEVICE == "cuda"
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  out = {}
  for name, jdt, tdt in (
    ("fp32", jnp.float32, torch.float32),
    ("bf16", jnp.bfloat16, torch.bfloat16),
  ):
    a = jnp.ones((n, n), jdt)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    t = median_time(lambda f=f, a=a: f(a).block_until_ready(), runs + 2)
    out[f"jax_{name}"] = 2 * n**3 / t
    m = n if name == "fp32" or cuda or native_bf16() else 512
    ta = torch.ones((m, m), dtype=tdt, device=TORCH_DEVICE)
    ta @ ta
    sync()
    t = median_time(lambda ta=ta: (ta @ ta, sync()), runs + 2)
    out[f"torch_{name}"] = 2 * m**3 / t
  return out


# rlx --------------------------------------------------------------------------


def rlx_step(params_np, config, batch, chunk_size, prompt_length):
  """(compile seconds, step(), first loss) for a compiled rlx update."""
  model = init_model(config, 0)
  graphdef, params = nnx.split(model)
  params = jax.tree.map(lambda _, p: jnp.asarray(p), params, params_np)
  mesh = make_mesh(devices=jax.devices()[:1])
  algo = algos.make(
    "grpo",
    beta=BETA,
    epsilon=EPS,
    chunk_size=chunk_size,
    prompt_length=prompt_length,
    log_entropy=False,
    optimizer=algos.OptimizerConfig(learning_rate=1e-5, clip_norm=1.0),
  )
  state = algos.create_train_state(graphdef, params, algo, mesh)
  batch = algos.host_local_to_global(batch, mesh)
  step = algos.compile_update_step(algo, graphdef, state, batch, mesh)
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  holder = [state]

  def run():
    holder[0], m = compiled(holder[0], batch, key)
    jax.block_until_ready((holder[0].params, m))
    return float(m["loss"])

  return compile_s, run, run()


# torch ------------------------------------------------------------------------


def torch_model(params_np, config):
  import torch
  import transformers

  hf = config_to_hf(config)
  hf_config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
  model = transformers.AutoModelForCausalLM.from_config(hf_config)
  flat = dict(nnx.to_flat_state(params_np))
  state = {}
  for ours, name, transposed in hf_names(config):
    var = flat[ours]
    value = np.asarray(var.get_value() if hasattr(var, "get_value") else var)
    value = np.ascontiguousarray(value.T if transposed else value)
    state[name] = torch.from_numpy(value)
  model.load_state_dict(state, strict=False)
  return model.float().to(TORCH_DEVICE)


def torch_step(params_np, config, batch, bf16, completion_logits_only):
  """(step(), first loss) of a plain PyTorch GRPO step: HF Llama, full
  log-softmax + gather, the same loss, clip_grad_norm_, AdamW.

  completion_logits_only: HF's `logits_to_keep`, as TRL uses it.
  """
  import torch

  torch.manual_seed(0)
  model = torch_model(params_np, config)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
  tb = {k: torch.from_numpy(v).to(TORCH_DEVICE) for k, v in batch.items()}
  tokens, mask = tb["tokens"].long(), tb["mask"].long()
  start = PROMPT if completion_logits_only else 1
  keep = T - start + 1 if completion_logits_only else 0
  comp = tb["completion_mask"][:, start:].float()
  old, ref = tb["old_logprobs"][:, start:], tb["ref_logprobs"][:, start:]
  adv = tb["advantages"][:, None]

  def step():
    with torch.autocast(TORCH_DEVICE, dtype=torch.bfloat16, enabled=bf16):
      logits = model(
        input_ids=tokens, attention_mask=mask, logits_to_keep=keep
      ).logits
    logits = logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1)
    logp = logp.gather(-1, tokens[:, start:, None]).squeeze(-1)
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - EPS, 1 + EPS)
    per_token = -torch.min(ratio * adv, clipped * adv)
    x = ref - logp
    per_token = per_token + BETA * (torch.exp(x) - x - 1)
    loss = ((per_token * comp).sum(-1) / comp.sum(-1).clamp(min=1)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())

  return step, step()


def interleaved(steps: dict, runs: int) -> dict:
  """Median seconds of each step, run round-robin so that load from other
  processes falls on all of them alike."""
  times = {k: [] for k in steps}
  for _ in range(runs):
    for k, fn in steps.items():
      t0 = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t0)
  return {k: statistics.median(v) for k, v in times.items()}


# Memory -----------------------------------------------------------------------


def logprob_pass_memory(chunk_size, b=8, t=1024, vocab=151936) -> int:
  """Compiled peak temporary bytes of `token_logprobs` (no weights made)."""
  config = preset("bench50m", vocab_size=vocab)
  abstract = nnx.eval_shape(lambda: init_model(config, 0))
  graphdef, params = nnx.split(abstract)
  f = jax.jit(
    functools.partial(algos.token_logprobs, graphdef, chunk_size=chunk_size)
  )
  tokens = jax.ShapeDtypeStruct((b, t), jnp.int32)
  mask = jax.ShapeDtypeStruct((b, t), jnp.bool_)
  mem = f.lower(params, tokens, mask).compile().memory_analysis()
  return mem.temp_size_in_bytes


def main():
  global B, TORCH_DEVICE
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="bench50m")
  parser.add_argument("--batch", type=int, default=B)
  parser.add_argument("--runs", type=int, default=3)
  parser.add_argument("--no-bf16", action="store_true")
  parser.add_argument("--no-memory", action="store_true")
  parser.add_argument("--chunk-size", type=int, default=128)
  args = parser.parse_args()
  import torch

  B = args.batch
  gpu = jax.default_backend() == "gpu"
  if gpu and torch.cuda.is_available():
    TORCH_DEVICE = "cuda"
  where = (
    torch.cuda.get_device_name()
    if TORCH_DEVICE == "cuda"
    else f"cpu with {torch.get_num_threads()} threads"
  )
  print(
    f"jax {jax.__version__} on {jax.devices()[0].device_kind}, torch "
    f"{torch.__version__} on {where}; {args.preset}, {B}x{T} tokens"
  )
  config = preset(args.preset)
  params_np = jax.tree.map(np.asarray, nnx.split(init_model(config, 0))[1])
  batch = make_batch(config.vocab_size)
  n = 8192 if gpu else 2048
  peak = matmul_peak(args.runs, n)
  print(
    f"matmul peak GFLOP/s ({n}^3): "
    + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peak.items())
  )
  full_flops = train_flops(config, B * T)
  rows = []
  for dt in ["fp32"] + ([] if args.no_bf16 else ["bf16"]):
    cfg = config.replace(dtype="float32" if dt == "fp32" else "bfloat16")
    steps, compile_s, losses = {}, {}, {}
    for label, chunk, p in (
      ("rlx chunked, completion logits", args.chunk_size, PROMPT),
      ("rlx unchunked, all logits", None, 0),
    ):
      c_s, fn, loss = rlx_step(params_np, cfg, batch, chunk, p)
      steps[label], compile_s[label], losses[label] = fn, c_s, loss
    if dt == "fp32":
      for label, only in (
        ("torch, all logits", False),
        ("torch, completion logits", True),
      ):
        steps[label], losses[label] = torch_step(
          params_np, config, batch, False, only
        )
    times = interleaved(steps, args.runs)
    if dt == "bf16" and (TORCH_DEVICE == "cuda" or native_bf16()):
      for label, only in (
        ("torch autocast, all logits", False),
        ("torch autocast, completion logits", True),
      ):
        fn, losses[label] = torch_step(params_np, config, batch, True, only)
        times[label] = median_time(fn, args.runs)
    elif dt == "bf16":
      # CPU torch bf16 matmuls run at ~1 GFLOP/s without native bf16
      # (AVX512-BF16 / AMX): time one row and scale to the batch.
      one = {k: v[:1] for k, v in batch.items()}
      fn, loss = torch_step(params_np, config, one, True, True)
      label = "torch autocast, completion logits (B=1 x 8)"
      times[label] = B * median_time(fn, 1)
      losses[label] = loss
    for label, s in times.items():
      fw = "jax" if label.startswith("rlx") else "torch"
      gf = full_flops / s
      rows.append(
        (
          f"{dt} {label}",
          compile_s.get(label, 0.0),
          s,
          B * T / s,
          gf / 1e9,
          100 * gf / peak[f"{fw}_fp32"],
          losses[label],
          100 * gf / peak[f"{fw}_{dt}"],
        )
      )
  print(
    f"\n| GRPO step, {B}x{T} tokens | compile s | step s | tokens/s "
    f"| GFLOP/s | % fp32 peak | % own-dtype peak | loss |"
  )
  print("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for r in rows:
    print(
      f"| {r[0]} | {r[1]:.1f} | {r[2]:.3f} | {r[3]:.0f} | {r[4]:.1f} "
      f"| {r[5]:.0f}% | {r[7]:.0f}% | {r[6]:.5f} |"
    )
  best = lambda p: min(r[2] for r in rows if r[0].startswith(p))
  for dt in ["fp32"] + ([] if args.no_bf16 else ["bf16"]):
    print(
      f"rlx / torch speed-up, {dt}: "
      f"{best(f'{dt} torch') / best(f'{dt} rlx'):.2f}x"
    )
  print(
    "GFLOP/s counts the matmul FLOPs of forward + backward over all "
    f"{B * T} positions ({full_flops / 1e9:.0f} GFLOP), whatever each "
    "implementation skips."
  )
  if not args.no_memory:
    print("\nlog-prob pass, B=8 T=1024 V=151936, compiled temp memory:")
    for label, chunk in (("unchunked", None), ("chunked 128", 128)):
      mib = logprob_pass_memory(chunk) / 2**20
      print(f"  {label}: {mib:.0f} MiB")


if __name__ == "__main__":
  main()
