"""The single-op measurements behind the update's design, on this CPU.

    python benchmarks/ops.py [--runs 7]

Each row times one jitted op alone (median of `--runs` after a compile
call), at bench50m's MLP shape over 16 x 160 tokens and its head over 16 x
128 completion positions: the dot layouts XLA:CPU runs fast or slow, rlx's
weight-gradient and transpose choices against JAX's defaults, rlx's
attention and log-prob VJPs against JAX's gradient of the same formula, and
the log-prob head's chunk size (also at Qwen2.5-0.5B's head).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from rlx.algos import losses
from rlx.models.transformer import attention, transposed

F32, BF16 = jnp.float32, jnp.bfloat16
B, T, K, N, V, H, D = 16, 160, 512, 1376, 32000, 8, 64


def seconds(fn, *args, runs: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def dot_rows():
  """(name, fn, args, flops) of the dot-layout rows."""
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (B, T, K))
  w = jax.random.normal(k[1], (K, N)) * 0.02
  g = jax.random.normal(k[2], (B, T, N))
  flat = lambda a: a.reshape(-1, a.shape[-1])
  mm = lambda a, b: jnp.dot(a, b, preferred_element_type=F32)
  xb, gb = flat(x).astype(BF16), flat(g).astype(BF16)
  flops = 2 * B * T * K * N
  return [
    ("fp32 forward x @ w", lambda x, w: x @ w, (x, w), flops),
    (
      "fp32 dw, JAX's vjp of x[B,T,K] @ w",
      lambda x, w, g: jax.vjp(lambda w: x @ w, w)[1](g)[0],
      (x, w, g),
      flops,
    ),
    (
      "fp32 dw, 2-D dot of flattened rows (rlx)",
      lambda x, g: mm(flat(x).T, flat(g)),
      (x, g),
      flops,
    ),
    ("bf16 forward, row-major operands", mm, (xb, w.astype(BF16)), flops),
    (
      "bf16 dx = g @ w.T, transpose folded by XLA",
      lambda g, w: mm(g, w.astype(BF16).T),
      (gb, w),
      flops,
    ),
    (
      "bf16 dx, `transposed` written out (rlx)",
      lambda g, w: mm(g, transposed(w.astype(BF16))),
      (gb, w),
      flops,
    ),
    (
      "bf16 dw = x.T @ g, transpose folded by XLA",
      lambda x, g: mm(x.T, g),
      (xb, gb),
      flops,
    ),
    (
      "bf16 dw, `transposed` written out (rlx)",
      lambda x, g: mm(transposed(x), g),
      (xb, gb),
      flops,
    ),
  ]


def formula_attention(q, k, v, mask):
  """The textbook formula, differentiated by JAX."""
  s = jnp.einsum("bkgtd,bksd->bkgts", q, k, preferred_element_type=F32)
  s = jnp.where(mask[:, None, None], s * D**-0.5, -1e30)
  p = jax.nn.softmax(s, axis=-1).astype(q.dtype)
  out = jnp.einsum("bkgts,bksd->bkgtd", p, v, preferred_element_type=F32)
  return out.astype(q.dtype)


def formula_logprobs(h, w, t):
  logp = jax.nn.log_softmax(jnp.einsum("bcd,dv->bcv", h, w))
  return jnp.take_along_axis(logp, t[..., None], -1)[..., 0]


def vjp_rows():
  """(name, fn, args, flops) of the forward + backward rows."""
  k = jax.random.split(jax.random.key(1), 6)
  q = jax.random.normal(k[0], (B, H, 1, T, D)).astype(BF16)
  kk, vv = (jax.random.normal(x, (B, H, T, D)).astype(BF16) for x in k[1:3])
  mask = jnp.broadcast_to(jnp.tri(T, dtype=bool), (B, T, T))
  h = jax.random.normal(k[3], (B, 128, K))
  w = jax.random.normal(k[4], (K, V)) * 0.02
  t = jax.random.randint(k[5], (B, 128), 0, V)
  grad = lambda f, n: jax.grad(lambda *a: jnp.sum(f(*a).astype(F32)), n)
  ours_lp = lambda h, w, t: losses.logprobs_from_hidden(h, w, False, t)[0]
  attn_flops = 3 * 4 * B * H * T * T * D
  head_flops = 3 * 2 * B * 128 * K * V
  return (
    [
      (
        "bf16 attention fwd+bwd, JAX's gradient",
        grad(lambda q, k, v: formula_attention(q, k, v, mask), (0, 1, 2)),
        (q, kk, vv),
        attn_flops,
      ),
      (
        "bf16 attention fwd+bwd, rlx VJP",
        grad(lambda q, k, v: attention(q, k, v, mask), (0, 1, 2)),
        (q, kk, vv),
        attn_flops,
      ),
      (
        "fp32 log-prob head fwd+bwd, JAX's gradient",
        grad(formula_logprobs, (0, 1)),
        (h, w, t),
        head_flops,
      ),
      (
        "fp32 log-prob head fwd+bwd, rlx VJP",
        grad(ours_lp, (0, 1)),
        (h, w, t),
        head_flops,
      ),
    ]
    + [
      (
        f"{name} log-prob head fwd+bwd, rlx VJP, entropy logged, "
        f"chunks of {B * chunk} rows",
        logged_entropy_head(dtype, chunk, t),
        (h, w),
        head_flops,
      )
      for name, dtype in (("fp32", F32), ("bf16", BF16))
      for chunk in (128, 32)
    ]
    + qwen_head_rows()
  )


def logged_entropy_head(dtype, chunk, targets):
  """The update's head gradient: entropy computed for the metrics, not in
  the loss; `chunk` positions per chunk."""

  def f(h, w):
    lp, ent = losses.logprobs_from_hidden(
      h.astype(dtype), w, False, targets, chunk_size=chunk, with_entropy=True
    )
    return jnp.sum(lp), ent

  return jax.grad(f, (0, 1), has_aux=True)


def qwen_head_rows():
  """bf16 head rows at Qwen2.5-0.5B's head (d 896, 151,936 tokens) over 8
  x 128 positions: where 512-row chunks do not pay."""
  b, c, d, v = 8, 128, 896, 151936
  k = jax.random.split(jax.random.key(2), 3)
  h = jax.random.normal(k[0], (b, c, d)).astype(BF16)
  w = jax.random.normal(k[1], (d, v)) * 0.02
  t = jax.random.randint(k[2], (b, c), 0, v)
  return [
    (
      f"bf16 log-prob head fwd+bwd at d 896, V 151936, chunks of {b * n} rows",
      logged_entropy_head(BF16, n, t),
      (h, w),
      3 * 2 * b * c * d * v,
    )
    for n in (128, 64)
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=7)
  args = parser.parse_args()
  print("| op | ms | GFLOP/s |\n| --- | --- | --- |")
  for name, fn, xs, flops in dot_rows() + vjp_rows():
    s = seconds(jax.jit(fn), *xs, runs=args.runs)
    print(f"| {name} | {1e3 * s:.1f} | {flops / s / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
  main()
