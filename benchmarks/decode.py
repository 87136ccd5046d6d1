"""Decoding speed: rlx (jitted prefill + lax.scan) vs HF `generate` (torch).

  python benchmarks/decode.py                  # full table (a few minutes)
  python benchmarks/decode.py --repeats=1 --dtypes=float32 --skip_hf
  python benchmarks/decode.py --preset=llama-3.2-1b --batch=64 \
      --dtypes=bfloat16 --long_new_tokens=0      # GPU: a bandwidth-bound row

Model: `preset('bench50m')` by default (`--preset`; random weights, no EOS,
so every row decodes `new_tokens` tokens); HF runs the same weights exported
by `save_pretrained`, on `cuda` when jax runs on a GPU and torch sees one.
Reports medians of `--repeats` runs, compile time separately, per-token time
at `--new_tokens` vs `--long_new_tokens`, and the share of the memory
roofline: (bytes of weights + valid KV cache read per step) / bandwidth,
divided by the measured time per step.
Bandwidth (`--bandwidth` overrides it): on CPU, bytes of a large numpy array
/ time to copy it (reads and writes each count once; counting both would
double it); on GPU, a jitted device-to-device copy of a 2 GiB array counting
bytes read + written (as the 4.3 TB/s that H200 copies reach), plus the
share of `--peak_bandwidth` (default 4.3 TB/s).
`--readme=PATH` replaces the "Decoding" section of that markdown file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from machine import cpu_name, native_bf16

from rlx import decoding
from rlx.decoding.step import cache_dtype
from rlx.models import init_model, preset
from rlx.models.hf import save_pretrained


def copy_bandwidth(nbytes: int = 1 << 29, repeats: int = 5) -> float:
  """Bytes/s of np.copyto on a large float32 array (best of repeats)."""
  x = np.ones(nbytes // 4, np.float32)
  y = np.empty_like(x)
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    np.copyto(y, x)
    best = min(best, time.perf_counter() - t)
  return nbytes / best


def device_bandwidth(nbytes: int = 1 << 31, repeats: int = 10) -> float:
  """Bytes/s (read + written) of a jitted device-to-device copy (best of
  repeats, each timed to completion)."""
  x = jnp.ones(nbytes // 4, jnp.float32)
  copy = jax.jit(lambda a: a + 1.0)  # one read, one write; not elided
  jax.block_until_ready(copy(x))
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(copy(x))
    best = min(best, time.perf_counter() - t)
  del x
  return 2 * nbytes / best


def step_bytes(config, rows: int, prompt_len: int, new_tokens: int) -> float:
  """Mean bytes read per decode step: weights + valid KV slots."""
  size = jnp.dtype(config.param_dtype).itemsize
  weights = (config.num_params - config.vocab_size * config.hidden_size) * size
  if config.tie_embeddings:
    weights += config.vocab_size * config.hidden_size * size
  cache = cache_dtype(config).itemsize  # fp32 on XLA:CPU
  per_slot = 2 * config.num_layers * config.num_kv_heads * config.head_dim
  mean_len = prompt_len + (new_tokens - 1) / 2
  return weights + rows * per_slot * cache * mean_len


def median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def rlx_run(graphdef, params, name, tokens, mask, new_tokens, chunk):
  """(compile seconds, callable) for one decoder."""
  if name == "beam4":
    cfg = decoding.BeamConfig(
      max_new_tokens=new_tokens, num_beams=4, cache_chunk=chunk
    )
    fn = decoding.make_beam_search(graphdef, params, cfg)
    args = (params, tokens, mask)
  else:
    cfg = decoding.SamplingConfig(
      max_new_tokens=new_tokens,
      temperature=0.0 if name == "greedy" else 1.0,
      top_p=0.9 if name == "top_p" else 1.0,
      cache_chunk=chunk,
    )
    fn = decoding.make_sampler(graphdef, params, cfg)
    args = (params, tokens, mask, jax.random.key(0))
  t = time.perf_counter()
  compiled = fn.lower(*args).compile()
  return time.perf_counter() - t, lambda: compiled(*args)


def hf_run(hf, name, tokens, new_tokens, device="cpu"):
  import torch

  x = torch.tensor(np.asarray(tokens), dtype=torch.long, device=device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
  if name == "greedy":
    kw.update(do_sample=False)
  elif name == "top_p":
    kw.update(do_sample=True, top_p=0.9, top_k=0, temperature=1.0)
  else:
    kw.update(do_sample=False, num_beams=4, early_stopping=False)

  def run():
    with torch.no_grad():
      out = hf.generate(x, pad_token_id=0, **kw)
    sync()
    return out

  return run


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", default="bench50m")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--prompt_len", type=int, default=64)
  p.add_argument("--new_tokens", type=int, default=128)
  p.add_argument("--long_new_tokens", type=int, default=512)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--hf_repeats", type=int, default=2)
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--decoders", default="greedy,top_p,beam4")
  p.add_argument("--cache_chunk", type=int, default=64)
  p.add_argument("--skip_hf", action="store_true")
  p.add_argument(
    "--hf_dtypes",
    default=None,
    help="default: float32 on CPU (bf16 HF is slow there), --dtypes on GPU",
  )
  p.add_argument("--torch_threads", type=int, default=1)
  p.add_argument(
    "--bandwidth", type=float, default=0.0, help="bytes/s; 0 = measure"
  )
  p.add_argument(
    "--peak_bandwidth",
    type=float,
    default=4.3e12,
    help="bytes/s, a second roofline column on GPU (H200 copy: 4.3e12)",
  )
  p.add_argument("--readme", default="")
  args = p.parse_args(argv)

  gpu = jax.default_backend() == "gpu"
  if args.bandwidth:
    bw, bw_how = args.bandwidth, "given"
  elif gpu:
    bw, bw_how = device_bandwidth(), "device copy, read + write"
  else:
    bw, bw_how = copy_bandwidth(), "numpy copy"
  hf_dtypes = args.hf_dtypes or (args.dtypes if gpu else "float32")
  b, pl, n = args.batch, args.prompt_len, args.new_tokens
  model_name = args.preset
  base = preset(model_name, eos_token_id=None)
  rng = np.random.default_rng(0)
  tokens_np = rng.integers(3, base.vocab_size, (b, pl)).astype(np.int32)
  tokens, mask = jnp.asarray(tokens_np), jnp.ones((b, pl), jnp.int32)
  device = jax.devices()[0].device_kind if gpu else ""
  lines = [
    f"Machine: {cpu_name()}, {os.cpu_count()} cores, native bf16: "
    f"{', '.join(native_bf16()) or 'none'}, load average "
    f"{os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, "
    f"backend {jax.default_backend()}{f' ({device})' if gpu else ''}. "
    f"Bandwidth {bw / 1e9:.1f} GB/s ({bw_how}).",
    f"Batch {b}, prompt {pl}, {n} new tokens, {model_name} "
    f"({base.num_params / 1e6:.0f}M params, random weights); median of "
    f"{args.repeats} (HF {args.hf_repeats}).",
    "tok/s = batch x new tokens / time (beam: 4x the rows). roofline = "
    "(weights + mean valid KV bytes per step) / bandwidth / step time.",
    "",
  ]
  peak_col = gpu and not args.bandwidth
  header = [
    "impl",
    "dtype",
    "decoder",
    "compile s",
    "run s",
    "tok/s",
    "ms/step",
    "roofline",
  ]
  if peak_col:
    header.append(f"of {args.peak_bandwidth / 1e12:.1f} TB/s")
  header.append("vs HF f32")
  if any(d != "float32" for d in hf_dtypes.split(",")) and not args.skip_hf:
    header.append("vs HF same dtype")
  lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  # Build every runner, then time them round-robin so that load from other
  # processes falls on all alike. torch runs single-threaded on CPU (its
  # OpenMP pool spinning against XLA's threads slows both down).
  runners, compile_s, long_lines = {}, {}, []
  for dtype in args.dtypes.split(","):
    config = base.replace(dtype=dtype, param_dtype=dtype)
    graphdef, params = nnx.split(init_model(config, 0))
    for name in args.decoders.split(","):
      c, run = rlx_run(
        graphdef, params, name, tokens, mask, n, args.cache_chunk
      )
      run()
      runners["rlx", dtype, name], compile_s["rlx", dtype, name] = run, c
      print("compiled", dtype, name, f"{c:.1f}s", flush=True)
    if args.long_new_tokens:
      per_token = {}
      for m in (n // 2, args.long_new_tokens):
        _, run = rlx_run(
          graphdef, params, "greedy", tokens, mask, m, args.cache_chunk
        )
        run()
        t = median_time(run, args.repeats)
        roof = step_bytes(config, b, pl, m) / bw / (t / m)
        per_token[m] = t / m
        ms = f"{t / m * 1e3:.2f}" if gpu else f"{t / m * 1e3:.1f}"
        long_lines.append(f"| {dtype} | {m} | {ms} | {roof:.0%} |")
      ratio = per_token[args.long_new_tokens] / per_token[n // 2]
      long_lines.append(f"| {dtype} | ratio | {ratio:.2f}x | |")
    del graphdef, params

  hf_device = "cpu"
  for dtype in [] if args.skip_hf else hf_dtypes.split(","):
    import torch
    import transformers

    hf_device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.torch_threads)
    config = base.replace(dtype=dtype, param_dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
      save_pretrained(init_model(config, 0), tmp)
      hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp, dtype=getattr(torch, dtype)
      )
    hf = hf.to(hf_device).eval()
    for name in args.decoders.split(","):
      run = hf_run(hf, name, tokens_np, n, hf_device)
      assert run().shape[1] == pl + n
      runners["hf", dtype, name] = run

  times = {k: [] for k in runners}
  for r in range(max(args.repeats, args.hf_repeats)):
    for k, run in runners.items():
      if r < (args.hf_repeats if k[0] == "hf" else args.repeats):
        times[k].append(median_time(run, 1))
        print(k, f"{times[k][-1]:.3f}s", flush=True)
  results = {
    k: (compile_s.get(k), float(np.median(v))) for k, v in times.items()
  }
  if hf_device == "cuda":
    hf_label = "HF torch cuda"
  else:
    hf_label = f"HF torch ({args.torch_threads} thr)"

  table = []
  for (impl, dtype, name), (compile_s, t) in sorted(results.items()):
    config = base.replace(dtype=dtype, param_dtype=dtype)
    rows = b * (4 if name == "beam4" else 1)
    roof = step_bytes(config, rows, pl, n) / (t / n)
    ref = results.get(("hf", "float32", name))
    same = results.get(("hf", dtype, name))
    cells = [
      hf_label if impl == "hf" else "rlx",
      dtype,
      name,
      "-" if compile_s is None else f"{compile_s:.1f}",
      f"{t:.3f}" if gpu else f"{t:.2f}",
      f"{b * n / t:.0f}",
      f"{t / n * 1e3:.2f}" if gpu else f"{t / n * 1e3:.1f}",
      f"{roof / bw:.0%}",
    ]
    if peak_col:
      cells.append(f"{roof / args.peak_bandwidth:.0%}")
    cells.append(f"{ref[1] / t:.1f}x" if ref else "-")
    if "vs HF same dtype" in header:
      cells.append(f"{same[1] / t:.1f}x" if same else "-")
    table.append("| " + " | ".join(cells) + " |")
  long_table = [
    "",
    f"Greedy time per token vs new tokens (batch {b}, prompt {pl}, "
    f"cache_chunk {args.cache_chunk}):",
    "",
    "| dtype | new tokens | ms/token | roofline |",
    "| --- | --- | --- | --- |",
    *long_lines,
  ]
  if not long_lines:
    long_table = []
  print("\n".join(lines + table + long_table), flush=True)
  if args.readme:
    write_readme(args.readme, "\n".join(lines + table + long_table))


NOTES = """\
How to read it:
- rlx: prefill once, then `lax.scan` over the KV cache, grown in segments of
  `cache_chunk` steps so a step attends over the written slots only (plus
  at most one chunk). Sampling draws one uniform per row (two-level
  inverse CDF) and finds the top-p cut-off by bisection over float bits (a
  [B, 32000] sort is slow on CPU). Beam search reorders only the cache
  slots after the prompt.
- bf16: the weights' dots run on bf16 inputs with fp32 accumulation
  (native where the machine line names AVX512-BF16 or AMX; elsewhere XLA
  converts them to fp32 and bf16 is no faster), the logits stay fp32, and
  on XLA:CPU the KV cache is kept in fp32 with attention over it in fp32
  (`decoding.step.cache_dtype`: XLA:CPU has no native bf16 batched dot and
  converted a bf16 cache whole at every step). The roofline counts the
  bytes of bf16 weights.
- HF: `transformers` `generate` on torch CPU, same weights via
  `save_pretrained`; torch single-threaded unless `--torch_threads` says
  otherwise. All runners are timed round-robin, so load from other
  processes falls on all alike; the machine line gives the load average.
"""


def write_readme(path: str, body: str):
  """Replace (or append) the '## Decoding' section of a markdown file."""
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
  cmd = " ".join(["python benchmarks/decode.py", *sys.argv[1:]])
  section = f"## Decoding\n\nMeasured by `{cmd}`.\n\n{body}\n\n{NOTES}"
  pattern = re.compile(r"^## Decoding\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  with open(path, "w") as f:
    f.write(text)


if __name__ == "__main__":
  main()
