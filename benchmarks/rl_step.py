"""One full GRPO step of the training loop: rlx against TRL's GRPOTrainer.

    python benchmarks/rl_step.py [--settings default,bench50m,bench50m_micro]
        [--sides rlx,trl] [--dtypes fp32,bf16] [--runs 3] [--quick]

A step is what `run_rl` does each step (`phases.RLStep`: rollout, rewards,
the update's batch, one GRPO update) and, on the TRL side, one
`GRPOTrainer` training step (HF `generate` on CPU, the reward, one
update) from the same weights, prompts and settings. The two sides run
alternately (a TRL step, then an rlx step, from a TRL callback, with a
pause of SETTLE_S before and after each rlx step) so load from other
processes falls on both alike; each time is the median of the
steps after the first, whose extra time is reported as compile time.

Settings: `default`, the embedded default (experiments/configs/
grpo_arithmetic.py: the tiny model, 16 prompts x 8 samples, 32 new tokens)
and `bench50m` (preset('bench50m') with a 32000-token vocabulary, 8
prompts x 8 samples, 32-token prompts, 128 new tokens, GRPO, beta 0, one
update per batch, the update scoring only the completions as TRL does:
`prompt_length` 32, and in bf16 log-prob chunks of 512 rows x
positions); `bench50m_micro` is bench50m with the update's
gradient taken over 4 micro-batches of 16 rows (rlx
`optimizer.grad_accum_steps`, TRL `gradient_accumulation_steps` and
`steps_per_generation`): still one generation of 64 completions and one
optimizer update per step, with a working set that fits the CPU's
caches. Both sides use one character-level tokenizer (a HF
`tokenizer.json`, so TRL can load it); the weights are random (the model's
initial ones), so bench50m's completions run to 128 tokens.

The update's GFLOP/s counts the matmul FLOPs of forward + backward over
all rows x positions, the lm_head's over the completion positions only
(both sides score only the completions: the bench50m settings set rlx's
`prompt_length` to the padded prompt width, TRL passes `logits_to_keep`);
the peak beside it is this machine's measured
matmul rate at the update's own dot shapes (the forward, input-gradient
and weight-gradient dot of every projection and the lm_head; attention
left out), in fp32 and in bf16 (bf16 inputs, fp32 accumulation). Without
`--quick` or with `--readme`, the table replaces the section between
the markers in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import cpu_name, native_bf16  # noqa: E402
from update import median_time, train_flops  # noqa: E402

from experiments.configs.grpo_arithmetic import get_config  # noqa: E402
from rlx import algos, models, rewards  # noqa: E402
from rlx.data import tasks as tasks_lib  # noqa: E402
from rlx.train.config import make_algo  # noqa: E402
from rlx.train.phases import RLStep  # noqa: E402
from rlx.train.trainer import Trainer  # noqa: E402

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
BEGIN = "<!-- rl_step.py {}: begin (generated; do not edit) -->"
END = "<!-- rl_step.py {}: end -->"
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
# Seconds between the two sides' steps, so that neither starts while the
# other's thread pool still spins (torch's OpenMP threads spin ~200 ms after
# work; rlx's default-setting update measured 0.28 s alone and 0.40-0.48 s
# right after a TRL step).
SETTLE_S = 1.0


# Machine ----------------------------------------------------------------------


def load() -> str:
  return "/".join(f"{x:.1f}" for x in os.getloadavg())


# Configs ----------------------------------------------------------------------


def make_config(setting: str, dtype: str, quick: bool, tokenizer_dir: str):
  c = get_config()
  c.tokenizer.path = tokenizer_dir
  c.sft.steps = 0
  c.control.enabled = False
  c.train.progress = False
  c.model.dtype = "bfloat16" if dtype == "bf16" else "float32"
  r = c.rollout
  if setting in ("bench50m", "bench50m_micro"):
    c.model.preset = "bench50m"
    c.model.overrides = dict(vocab_size=32000)
    # 16 one-digit operands: "d+d-...=" is 32 characters, 32 tokens.
    c.task.options = dict(c.task.options, num_operands=16)
    r.prompts_per_step, r.num_samples, r.max_new_tokens = 8, 8, 128
    r.max_prompt_len, r.prompt_buckets = 32, (32,)
  if setting == "bench50m_micro":
    c.optimizer.grad_accum_steps = 4
  if setting in ("bench50m", "bench50m_micro"):
    # The prompts are padded to 32 tokens: the update scores only the
    # completions, as TRL does (`logits_to_keep`).
    options = dict(prompt_length=r.max_prompt_len)
    if dtype == "bf16":
      # In bf16 the head is bound by its passes over each chunk's fp32
      # logits: chunks of 512 rows x positions run bench50m's head 1.19x
      # faster than the default's 2048 rows; in fp32 1.16x slower, and at
      # Qwen2.5-0.5B's head 1.27x slower (benchmarks/ops.py).
      micro_rows = 64 // c.optimizer.grad_accum_steps
      options["chunk_size"] = 512 // micro_rows
    c.algo.options = dict(c.algo.options, **options)
  if quick:
    r.prompts_per_step, r.num_samples, r.max_new_tokens = 2, 4, 8
  return c


def write_tokenizer(directory: str, texts) -> None:
  """A character-level HF tokenizer of `texts`' characters (ids: <pad> 0,
  <unk> 1, <s> 2, </s> 3), loadable by rlx and by transformers alike."""
  from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
  from tokenizers import models as tok_models

  chars = sorted(set("".join(texts)) | set("<>/abcdefghijklmnopqrstuvwxyz"))
  vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
  tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
  tok.decoder = decoders.Fuse()
  tok.add_special_tokens(SPECIALS)
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, "tokenizer.json"))
  config = dict(
    bos_token="<s>",
    eos_token="</s>",
    pad_token="<pad>",
    unk_token="<unk>",
    tokenizer_class="PreTrainedTokenizerFast",
  )
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f)


# Peak at the update's shapes --------------------------------------------------


def dot_shapes(c, rows: int, head_rows: int) -> list[tuple[int, int, int, int]]:
  """(count, M, K, N) of each projection's dot in one forward pass; the
  lm_head's over the `head_rows` completion positions."""
  q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
  d, i, L = c.hidden_size, c.intermediate_size, c.num_layers
  return [
    (L, rows, d, q),
    (2 * L, rows, d, kv),
    (L, rows, q, d),
    (2 * L, rows, d, i),
    (L, rows, i, d),
    (1, head_rows, d, c.vocab_size),
  ]


def median_seconds(fn, runs: int) -> float:
  """`update.median_time` after one untimed call (compilation)."""
  fn()
  return median_time(fn, runs)


def matmul_peak(
  c, rows: int, head_rows: int, dtype: str, runs: int = 3, max_m: int = 2048
):
  """FLOP/s of the update's dots alone: for each shape the forward
  [M, K] x [K, N], input-gradient [M, N] x [N, K] and weight-gradient
  [K, M] x [M, N] dot timed by itself on row-major operands (the fastest
  layout: the machine's peak at these sizes), M capped at `max_m` and the
  time scaled up in proportion; fp32 or bf16 inputs, fp32 accumulation."""
  dt = jnp.bfloat16 if dtype == "bf16" else jnp.float32
  dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  flops = seconds = 0.0
  for count, m, k, n in dot_shapes(c, rows, head_rows):
    mm = min(m, max_m)
    for shape in ((mm, k, n), (mm, n, k), (k, mm, n)):
      a, b = jnp.ones(shape[:2], dt), jnp.ones(shape[1:], dt)
      t = median_seconds(lambda a=a, b=b: dot(a, b).block_until_ready(), runs)
      seconds += count * t * m / mm
      flops += count * 2 * m * k * n
  return flops / seconds


# rlx --------------------------------------------------------------------------


class RlxSide:
  """rlx's training loop step (`RLStep`) from the config's initial params."""

  def __init__(self, config, workdir: str):
    self.trainer = t = Trainer(config, workdir)
    self.algo = make_algo(config, 1)
    assert not self.algo.needs_reference
    self.state = algos.create_train_state(
      t.graphdef, t.initial_params, self.algo, t.mesh
    )
    self.step = RLStep(t, self.algo, 1)
    self.n = config.rollout.prompts_per_step
    self.records = []

  def __call__(self) -> None:
    i = len(self.records)
    t = self.trainer
    examples = [
      t.task.train[(i * self.n + j) % len(t.task.train)] for j in range(self.n)
    ]
    t0 = time.perf_counter()
    self.state, rollout, _, _ = self.step(
      self.state, None, examples, None, i + 1, 0.0
    )
    step_s = time.perf_counter() - t0
    s = self.step.times
    self.records.append(
      dict(
        step=step_s,
        rollout=s["rollout_s"],
        reward=s["reward_s"],
        update=s["update_s"],
        new_tokens=float(np.mean(rollout.lengths)),
      )
    )


# TRL --------------------------------------------------------------------------


def trl_side(rlx: RlxSide, config, dtype, workdir, steps: int, between):
  """Runs `steps` GRPOTrainer steps on rlx's initial weights, calling
  `between()` after each; returns one record per step."""
  import datasets
  import torch
  import transformers
  from trl import GRPOConfig, GRPOTrainer

  t, r = rlx.trainer, config.rollout
  model_dir = os.path.join(workdir, "hf")
  models.save_pretrained(nnx.merge(t.graphdef, t.initial_params), model_dir)
  model = transformers.AutoModelForCausalLM.from_pretrained(
    model_dir, dtype=torch.float32
  )
  tokenizer = transformers.AutoTokenizer.from_pretrained(config.tokenizer.path)
  tokenizer.padding_side = "left"
  n, G = r.prompts_per_step, r.num_samples
  examples = [t.task.train[i % len(t.task.train)] for i in range(n * steps)]
  by_prompt = {e["prompt"]: e for e in examples}

  def reward(prompts, completions, completion_ids, **_):
    fields = tasks_lib.collate_fields(
      [by_prompt[p] for p in prompts], t.task.reward_fields, 1
    )
    fields["completion_lengths"] = [len(ids) for ids in completion_ids]
    fields["group_size"] = G
    total, _ = rewards.compute_rewards(
      t.reward_specs, prompts, completions, fields
    )
    return [float(x) for x in total]

  reward.__name__ = "rlx_reward"
  opt, options = config.optimizer, dict(config.algo.options)
  accum = opt.grad_accum_steps  # micro-batches of one generation's rows
  args = GRPOConfig(
    output_dir=os.path.join(workdir, "trl"),
    per_device_train_batch_size=n * G // accum,
    gradient_accumulation_steps=accum,
    num_generations=G,
    max_completion_length=r.max_new_tokens,
    steps_per_generation=accum,
    num_iterations=1,
    temperature=r.temperature,
    top_p=r.top_p,
    top_k=r.top_k,
    beta=options.get("beta", 0.0),
    epsilon=options.get("epsilon_low", 0.2),
    epsilon_high=options.get("epsilon_high"),
    learning_rate=opt.learning_rate,
    max_grad_norm=opt.clip_norm,
    max_steps=steps,
    shuffle_dataset=False,
    bf16=dtype == "bf16",
    use_cpu=True,
    report_to="none",
    save_strategy="no",
    logging_steps=10**6,
    disable_tqdm=True,
    seed=config.seed,
  )
  records, clock = [], {}

  def timed(name, fn):
    def wrapper(*a, **k):
      t0 = time.perf_counter()
      out = fn(*a, **k)
      clock[name] = clock.get(name, 0.0) + time.perf_counter() - t0
      if name == "rollout":
        clock["new_tokens"] = float(np.mean([len(c) for c in out[1]]))
      return out

    return wrapper

  class Alternate(transformers.TrainerCallback):
    def on_train_begin(self, *a, **k):
      self.last = time.perf_counter()

    def on_step_end(self, *a, **k):
      step = time.perf_counter() - self.last
      gen = clock.pop("generate_and_score", 0.0)
      records.append(
        dict(
          step=step,
          rollout=clock.pop("rollout", 0.0),
          reward=clock.pop("reward", 0.0),
          update=step - gen,
          new_tokens=clock.pop("new_tokens", float("nan")),
        )
      )
      time.sleep(SETTLE_S)
      between()
      time.sleep(SETTLE_S)
      self.last = time.perf_counter()

  trainer = GRPOTrainer(
    model=model,
    reward_funcs=reward,
    args=args,
    train_dataset=datasets.Dataset.from_list(
      [{"prompt": e["prompt"]} for e in examples]
    ),
    processing_class=tokenizer,
    callbacks=[Alternate()],
  )
  for name, attr in (
    ("rollout", "_generate"),
    ("reward", "_calculate_rewards"),
    ("generate_and_score", "_generate_and_score_completions"),
  ):
    setattr(trainer, attr, timed(name, getattr(trainer, attr)))
  trainer.train()
  return records


# Table ------------------------------------------------------------------------


def summarise(records: list[dict]) -> dict:
  """Medians of the steps after the first; compile: the first's extra."""
  for r in records:
    r["host"] = r["step"] - r["rollout"] - r["reward"] - r["update"]
  rest = records[1:] or records
  med = {k: statistics.median(r[k] for r in rest) for k in rest[0]}
  med["compile"] = records[0]["step"] - med["step"]
  return med


def run_setting(setting, dtype, args, workdir) -> list[dict]:
  tok_dir = os.path.join(workdir, "tokenizer")
  config = make_config(setting, dtype, args.quick, tok_dir)
  task = tasks_lib.make_task(config.task.name, **dict(config.task.options))
  write_tokenizer(
    tok_dir, [e["prompt"] + e.get("solution", "") for e in task.train]
  )
  rlx = RlxSide(config, os.path.join(workdir, "rlx"))
  steps = args.runs + 1
  sides = {}
  if "trl" in args.sides:
    between = rlx if "rlx" in args.sides else (lambda: None)
    sides["trl"] = trl_side(rlx, config, dtype, workdir, steps, between)
  else:
    for _ in range(steps):
      rlx()
  if "rlx" in args.sides:
    sides["rlx"] = rlx.records
  r = config.rollout
  rows = r.prompts_per_step * r.num_samples
  length = rlx.trainer.prompt_len + r.max_new_tokens
  mc = rlx.trainer.model.config
  # Both sides score only the completions (rlx's `prompt_length`, TRL's
  # `logits_to_keep`): the lm_head's FLOPs over the prompt are not counted.
  head_rows = rows * r.max_new_tokens
  prompt_head = 3 * 2 * rows * rlx.trainer.prompt_len * mc.hidden_size
  flops = train_flops(mc, rows * length, length)
  flops -= prompt_head * mc.vocab_size
  peak = matmul_peak(
    mc, rows * length, head_rows, dtype, max_m=512 if args.quick else 2048
  )
  out = []
  for side, records in sides.items():
    med = summarise(records)
    out.append(
      dict(
        setting=setting,
        micro_batches=config.optimizer.grad_accum_steps,
        dtype=dtype,
        side=side,
        rows=rows,
        length=length,
        params=mc.num_params,
        gflops=flops / med["update"] / 1e9,
        peak=peak / 1e9,
        tokens_per_s=rows * length / med["step"],
        **med,
      )
    )
  if len(out) == 2:
    out[1]["speedup"] = out[0]["step"] / out[1]["step"]
  return out


def table(rows: list[dict], args, started: str) -> str:
  import torch

  try:
    import trl

    trl_version = trl.__version__
  except ImportError:
    trl_version = "-"
  bf16 = native_bf16()
  path = (
    f"native ({', '.join(bf16)}): bf16 inputs, fp32 accumulation"
    if bf16
    else "no native bf16 on this CPU (XLA converts to fp32)"
  )
  lines = [
    f"Measured {started} by `python benchmarks/rl_step.py "
    f"{' '.join(sys.argv[1:])}`".rstrip()
    + f"; {cpu_name()}, {os.cpu_count()} cores; bf16 path: {path}.",
    f"jax {jax.__version__}, torch {torch.__version__} "
    f"({torch.get_num_threads()} threads), trl {trl_version}; load average "
    f"(1/5/15 min) {args.load_start} at start, {load()} at the end.",
    f"Median of {args.runs} steps after the first, rlx and TRL alternating "
    f"with {SETTLE_S:.0f} s pauses between; "
    "times in seconds; host = step - rollout - reward - update; tokens/s = "
    "rows x (prompt + new tokens) / step; GFLOP/s: the update's matmul "
    "FLOPs (forward + backward, all positions; the lm_head's over the "
    "completions, which both sides score alone) / update time; peak: the "
    "same dot shapes timed alone in that dtype, row-major operands.",
    "",
    "| setting | dtype | side | compile | step | rollout | reward | update "
    "| host | tokens/s | mean length | update GFLOP/s | peak GFLOP/s "
    "| % peak | rlx speed-up |",
    "| --- " * 15 + "|",
  ]
  for r in rows:
    setting = f"{r['setting']} ({r['params'] / 1e6:.1f}M, {r['rows']}x"
    setting += f"{r['length']}"
    if r["micro_batches"] > 1:
      setting += f" in {r['micro_batches']} micro-batches"
    setting += ")"
    speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
    lines.append(
      f"| {setting} | {r['dtype']} | {r['side']} | {r['compile']:.1f} "
      f"| {r['step']:.2f} | {r['rollout']:.2f} | {r['reward']:.3f} "
      f"| {r['update']:.2f} | {r['host']:.2f} | {r['tokens_per_s']:.0f} "
      f"| {r['new_tokens']:.0f} | {r['gflops']:.1f} | {r['peak']:.0f} "
      f"| {100 * r['gflops'] / r['peak']:.0f}% | {speedup} |"
    )
  return "\n".join(lines)


def write_readme(text: str, setting: str) -> None:
  """Replaces the setting's section of the README (one per setting, so a
  run of one setting keeps the other's table)."""
  with open(README) as f:
    readme = f.read()
  begin, end = BEGIN.format(setting), END.format(setting)
  section = f"{begin}\n{text}\n{end}"
  if begin in readme:
    head, rest = readme.split(begin, 1)
    readme = head + section + rest.split(end, 1)[1]
  else:
    head, sep, tail = readme.partition("\n## Update\n")
    if "\n## RL step\n" not in head:
      head += "\n## RL step\n"
    readme = f"{head}\n{section}\n{sep}{tail}"
  with open(README, "w") as f:
    f.write(readme)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", default="default,bench50m,bench50m_micro")
  parser.add_argument("--sides", default="rlx,trl")
  parser.add_argument("--dtypes", default=None, help="default: fp32[,bf16]")
  parser.add_argument("--runs", type=int, default=3)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--readme", action=argparse.BooleanOptionalAction)
  args = parser.parse_args(argv)
  args.sides = args.sides.split(",")
  if args.dtypes is None:
    args.dtypes = "fp32,bf16" if native_bf16() else "fp32"
  if args.quick:
    args.runs = min(args.runs, 2)
  args.load_start = load()
  started = datetime.datetime.now(datetime.timezone.utc).strftime(
    "%Y-%m-%d %H:%M UTC"
  )
  rows = []
  for setting in args.settings.split(","):
    ours = []
    for dtype in args.dtypes.split(","):
      with tempfile.TemporaryDirectory() as workdir:
        ours += run_setting(setting, dtype, args, workdir)
      print(table(ours, args, started), flush=True)
    if args.readme if args.readme is not None else not args.quick:
      write_readme(table(ours, args, started), setting)
    rows += ours
  return rows


if __name__ == "__main__":
  main()
