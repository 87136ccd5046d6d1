"""Beam search against greedy and sampling: as a decoder, and as GRPO's
rollouts.

  python experiments/reproductions/beam_search.py --workdir=DIR [--quick]

Data -> SFT -> decode -> RL twice -> figure:
1. SFT on the default task (`grpo_arithmetic`: `a+b-c=` from a teacher
   that drops 70% of its carries), the same warm-up as the default run.
2. The SFT model decodes the held-out prompts with greedy search, beam
   search with 2, 4 and 8 beams, and 8 samples at temperature 1 with a
   majority vote over their extracted answers (the same budget as 8
   beams). For each: accuracy of the answer it returns, the model's own
   log-probability of the returned completion (a teacher-forced pass,
   summed over the completion's tokens, EOS included; also per token) and
   its length. Every decoder stops at EOS only, so that all score the
   same kind of sequence and greedy is beam search with one beam; beam
   search ranks by the summed log-prob (length_penalty 0), the quantity
   reported. Expected: the mean log-prob does not decrease as beams grow.
3. The rollout groups GRPO would see from the SFT model: G = 8 beams as
   the loop builds them (`rollout.strategy="beam"`: HF's default length
   penalty 1) against 8 samples: distinct answers per group, groups with
   both a right and a wrong answer (the only ones with a GRPO gradient),
   and the share of right answers in a group; the same again from each
   policy after RL.
4. GRPO from the same SFT checkpoint with sampling rollouts and with beam
   rollouts, the same steps and settings otherwise (the default run's):
   training reward and held-out accuracy (greedy, and mean@4, the
   sampled accuracy that RL maximises) along the way.
"""

import os
import shutil
import sys

import jax
import matplotlib
import numpy as np
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(
  0,
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

from experiments.configs import grpo_arithmetic  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from rlx import data, decoding, models, rewards, train  # noqa: E402
from rlx.rewards import vote  # noqa: E402
from rlx.train import lm, metrics  # noqa: E402

NAME = "beam_search"
BEAMS = (2, 4, 8)
BUDGET = 8  # samples of the majority vote; the largest beam
DECODE_LENGTH_PENALTY = 0.0  # rank beams by the summed log-prob
# Full run: the default run's SFT and 100 GRPO steps. Quick: the same code
# path, a shorter SFT (a much weaker model) and 4 RL steps. At 100 SFT
# steps the model is so weak (3% accurate) that on one of the 32 prompts
# two beams lose the greedy path and end 6.1 nats lower, in a degenerate
# answer, which pulls beam2's mean log-prob below greedy's; at 150 and 200
# steps the claim held (tests/test_reproductions_beam_search.py).
SIZES = {
  False: dict(sft_steps=450, rl_steps=100, eval_every=10, prompts=256),
  True: dict(sft_steps=150, rl_steps=4, eval_every=2, prompts=32),
}
STRATEGIES = ("sampling", "beam")  # results name -> rollout.strategy below
_ROLLOUT = {"sampling": "sample", "beam": "beam"}


def base_config(quick: bool):
  size = SIZES[quick]
  c = grpo_arithmetic.get_config()
  c.control.enabled = False
  c.train.progress = False
  c.sft.steps = size["sft_steps"]
  c.eval.num_prompts = size["prompts"]
  return c


# 1. SFT ----------------------------------------------------------------------


def run_sft(config, workdir: str) -> str:
  """SFT only (no RL step); returns the directory of its HF export."""
  config = config.copy_and_resolve_references()
  config.train.steps = 0
  train.run(config, workdir)
  return os.path.join(workdir, "export")


# 2. Decoders -----------------------------------------------------------------


class Decoders:
  """The exported model, its tokenizer and the held-out prompts."""

  def __init__(self, export: str, config, num_prompts: int):
    model = models.load_pretrained(export)
    self.graphdef, self.params = nnx.split(model)
    self.tok = data.load_tokenizer(export)
    if self.tok.eos_id is None:
      raise ValueError(f"{export}: the tokenizer has no EOS token")
    task = data.make_task(config.task.name, **dict(config.task.options))
    self.examples = task.eval[:num_prompts]
    if len(self.examples) < num_prompts:
      raise ValueError(
        f"the task has {len(self.examples)} held-out prompts, "
        f"fewer than {num_prompts}"
      )
    self.reward_fields = task.reward_fields
    prompts = [
      self.tok.encode(e["prompt"], add_bos=self.tok.adds_bos)
      for e in self.examples
    ]
    self.prompt_tokens, self.prompt_mask = decoding.pad_prompts(
      prompts,
      self.tok.pad_id,
      buckets=tuple(config.rollout.prompt_buckets),
    )
    self.max_new_tokens = config.rollout.max_new_tokens
    self.stops = tuple(
      tuple(self.tok.encode(s)) for s in config.rollout.stop_strings if s
    )

  def beam(self, k: int, length_penalty: float):
    cfg = decoding.BeamConfig(
      max_new_tokens=self.max_new_tokens,
      num_beams=k,
      num_return_sequences=k,
      length_penalty=length_penalty,
      eos_ids=(self.tok.eos_id,),
      pad_id=self.tok.pad_id,
    )
    fn = decoding.make_beam_search(self.graphdef, self.params, cfg)
    return self._finish(fn(self.params, self.prompt_tokens, self.prompt_mask))

  def sample(self, n: int, temperature: float, stop_strings: bool, seed=0):
    cfg = decoding.SamplingConfig(
      max_new_tokens=self.max_new_tokens,
      temperature=temperature,
      num_samples=n,
      eos_ids=(self.tok.eos_id,),
      stop_sequences=self.stops if stop_strings else (),
      pad_id=self.tok.pad_id,
    )
    fn = decoding.make_sampler(self.graphdef, self.params, cfg)
    key = jax.random.key(seed)
    return self._finish(
      fn(self.params, self.prompt_tokens, self.prompt_mask, key)
    )

  def _finish(self, out) -> dict:
    """Texts, correctness, answers, lengths and sequence log-probs of the
    rows of a decoder's output (n consecutive rows per prompt)."""
    out = jax.tree.map(np.asarray, out)
    rows = len(out.tokens)
    n = rows // len(self.examples)
    texts = [
      self.tok.decode(t[m]) for t, m in zip(out.tokens, out.mask.astype(bool))
    ]
    fields = data.collate_fields(self.examples, self.reward_fields, n)
    # The model's own log-prob of each completion, teacher-forced.
    prompt_mask = np.repeat(self.prompt_mask, n, 0)
    tokens = np.concatenate(
      [np.repeat(self.prompt_tokens, n, 0), out.tokens.astype(np.int32)], 1
    )
    mask = np.concatenate([prompt_mask, out.mask.astype(np.int32)], 1)
    scored = np.concatenate([np.zeros_like(prompt_mask), out.mask], 1)
    seq, _ = lm.sequence_logprobs(
      self.graphdef, self.params, tokens, mask, scored_NxT=scored.astype(bool)
    )
    # The decoder's own bookkeeping must agree with the forward pass.
    decoder_seq = np.where(out.mask, out.raw_logprobs, 0.0).sum(1)
    return dict(
      n=n,
      texts=texts,
      correct=np.asarray(rewards.is_correct(texts, fields), bool),
      answers=[rewards.extract_answer(t) for t in texts],
      lengths=out.lengths.astype(np.int64),
      logprob=seq,
      check=float(np.max(np.abs(seq - decoder_seq))),
    )

  def vote_correct(self, d: dict) -> np.ndarray:
    """Per prompt: the majority answer of its n rows is right."""
    n, ok = d["n"], []
    for i, example in enumerate(self.examples):
      answer = vote.majority_answer(d["texts"][i * n : (i + 1) * n])
      fields = data.collate_fields([example], self.reward_fields)
      text = "" if answer is None else f"<answer>{answer}</answer>"
      ok.append(answer is not None and rewards.is_correct([text], fields)[0])
    return np.asarray(ok, bool)

  def classes(self) -> np.ndarray:
    return np.asarray([e.get("category", "all") for e in self.examples])


def _mean_se(x) -> tuple[float, float]:
  x = np.asarray(x, np.float64)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def decoder_record(dec: Decoders, d: dict, correct=None) -> dict:
  """The decoder's answer per prompt: its first row (the best beam), or,
  with `correct` given (the vote), every row for log-prob and length."""
  n = d["n"]
  top = slice(None) if correct is not None else slice(None, None, n)
  correct = d["correct"][::n] if correct is None else correct
  logprob, lengths = d["logprob"][top], d["lengths"][top]
  acc, acc_se = _mean_se(correct)
  lp, lp_se = _mean_se(logprob)
  record = {
    "accuracy": acc,
    "accuracy_se": acc_se,
    "mean_logprob": lp,
    "mean_logprob_se": lp_se,
    "mean_token_logprob": float(np.mean(logprob / np.maximum(lengths, 1))),
    "mean_length": float(np.mean(lengths)),
    "logprob_check_max_abs": d["check"],
  }
  classes = dec.classes()
  for c in sorted(set(classes)):
    record[f"{c}/accuracy"] = float(np.mean(correct[classes == c]))
  return record


def group_stats(dec: Decoders, d: dict) -> dict:
  """What one GRPO group of n rows per prompt holds."""
  n = d["n"]
  ok = d["correct"].reshape(-1, n)
  distinct = [
    len({a for a in d["answers"][i * n : (i + 1) * n] if a is not None})
    for i in range(len(dec.examples))
  ]
  return {
    "group_size": n,
    "distinct_answers": float(np.mean(distinct)),
    "distinct_completions": float(
      np.mean(
        [len(set(d["texts"][i * n : (i + 1) * n])) for i in range(len(ok))]
      )
    ),
    "mixed_groups": float(np.mean(ok.any(1) & ~ok.all(1))),
    "any_correct": float(np.mean(ok.any(1))),
    "share_correct": float(ok.mean()),
    "mean_logprob": float(np.mean(d["logprob"])),
  }


def compare_decoders(dec: Decoders, config) -> tuple[dict, dict]:
  greedy = dec.sample(1, 0.0, False)
  out = {"greedy": decoder_record(dec, greedy)}
  previous = greedy["logprob"]
  for k in BEAMS:
    d = dec.beam(k, DECODE_LENGTH_PENALTY)
    out[f"beam{k}"] = decoder_record(dec, d)
    # Beam search is no exact search: a wider beam can end lower.
    top = d["logprob"][:: d["n"]]
    out[f"beam{k}"]["share_below_narrower"] = float(
      np.mean(top < previous - 1e-4)
    )
    out[f"beam{k}"]["share_above_narrower"] = float(
      np.mean(top > previous + 1e-4)
    )
    previous = top
  samples = dec.sample(BUDGET, 1.0, False, seed=config.seed)
  out[f"sample_maj{BUDGET}"] = decoder_record(
    dec, samples, dec.vote_correct(samples)
  )
  return out, rollout_groups(dec, config)


def rollout_groups(dec: Decoders, config) -> dict:
  """The RL loop's rollout groups of the held-out prompts, decoded as the
  loop decodes them (beams: HF's default length penalty 1; samples: the
  rollout temperature and stop strings)."""
  g = config.rollout.num_samples
  return {
    "beam": group_stats(dec, dec.beam(g, 1.0)),
    "sampling": group_stats(
      dec, dec.sample(g, config.rollout.temperature, True, seed=config.seed)
    ),
  }


# 4. RL with each rollout strategy --------------------------------------------


def run_rl(config, sft_dir: str, workdir: str, strategy: str, quick: bool):
  """GRPO from the SFT checkpoint in `sft_dir`; returns its curves."""
  size = SIZES[quick]
  for part in ("tokenizer", os.path.join("checkpoints", "sft")):
    source, target = (os.path.join(d, part) for d in (sft_dir, workdir))
    if not os.path.exists(target):
      shutil.copytree(source, target)
  config = config.copy_and_resolve_references()
  config.rollout.strategy = _ROLLOUT[strategy]
  config.train.steps = size["rl_steps"]
  config.train.eval_every = size["eval_every"]
  summary = train.run(config, workdir)
  records = [r for r in metrics.read_metrics(workdir) if r["phase"] == "rl"]
  evals = [r for r in records if "eval/accuracy" in r]
  steps = [r for r in records if "train/reward" in r]
  k = config.eval.num_samples
  curve = lambda rs, key: [float(r.get(key, float("nan"))) for r in rs]
  return {
    "eval_steps": [int(r["step"]) for r in evals],
    "accuracy": curve(evals, "eval/accuracy"),
    "accuracy_se": curve(evals, "eval/accuracy_se"),
    f"mean@{k}": curve(evals, f"eval/mean@{k}"),
    "carry_accuracy": curve(evals, "eval/carry/accuracy"),
    "no_carry_accuracy": curve(evals, "eval/no_carry/accuracy"),
    "steps": [int(r["step"]) for r in steps],
    "reward": curve(steps, "train/reward"),
    "train_accuracy": curve(steps, "train/accuracy"),
    "frac_zero_std": curve(steps, "update/frac_zero_std"),
    "response_length": curve(steps, "train/response_length"),
    "rl_step_time_s": float(records[-1]["time/elapsed_s"]),
    "groups_after": rollout_groups(
      Decoders(os.path.join(workdir, "export"), config, size["prompts"]),
      config,
    ),
    "after": {
      key: v for key, v in summary["after"].items() if key.startswith("eval/")
    },
  }


# Figure -----------------------------------------------------------------------


def _smooth(x, width: int) -> np.ndarray:
  """Running mean over the last `width` steps (fewer at the start)."""
  x = np.asarray(x, np.float64)
  c = np.cumsum(np.insert(x, 0, 0.0))
  lo = np.maximum(np.arange(1, len(x) + 1) - width, 0)
  return (c[1:] - c[lo]) / (np.arange(1, len(x) + 1) - lo)


def figure(results: dict, path: str) -> str:
  dec = results["decoders"]
  names = list(dec)
  beams = [n for n in names if not n.startswith("sample")]
  fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
  colors = {"sampling": "tab:orange", "beam": "tab:blue"}
  x = np.arange(len(names))
  ax = axes[0, 0]
  ax.bar(
    x,
    [100 * dec[n]["accuracy"] for n in names],
    yerr=[100 * dec[n]["accuracy_se"] for n in names],
    color=[
      colors["sampling" if n.startswith("sample") else "beam"] for n in names
    ],
    capsize=3,
  )
  ax.set_xticks(x, names)
  ax.set_xlabel("decoder (SFT model)")
  ax.set_ylabel("held-out accuracy (%), +- 1 s.e.")
  ax.set_title("(a) accuracy of the answer each decoder returns")
  ax = axes[0, 1]
  ax.errorbar(
    x[: len(beams)],
    [dec[n]["mean_logprob"] for n in beams],
    yerr=[dec[n]["mean_logprob_se"] for n in beams],
    marker="o",
    capsize=3,
    color=colors["beam"],
    label="greedy = 1 beam, then 2 / 4 / 8 beams: the returned completion",
  )
  samples = [n for n in names if n.startswith("sample")]
  ax.errorbar(
    x[len(beams) :],
    [dec[n]["mean_logprob"] for n in samples],
    yerr=[dec[n]["mean_logprob_se"] for n in samples],
    marker="s",
    linestyle="none",
    capsize=3,
    color=colors["sampling"],
    label=f"{BUDGET} samples at temperature 1 (mean over all)",
  )
  ax.set_xticks(x, names)
  ax.set_xlabel("decoder (SFT model)")
  ax.set_ylabel("mean sequence log-prob (nats, summed over tokens)")
  ax.set_title("(b) the model's log-prob of what it decoded")
  ax.legend(fontsize=8, loc="lower left")
  rl = results["rl"]
  ax = axes[1, 0]
  width = max(1, len(rl["sampling"]["steps"]) // 20)
  for s in STRATEGIES:
    r = rl[s]
    ax.plot(r["steps"], r["reward"], color=colors[s], alpha=0.25)
    ax.plot(
      r["steps"],
      _smooth(r["reward"], width),
      color=colors[s],
      label=f"{s} rollouts (running mean of {width})",
    )
  ax.set_xlabel("GRPO step")
  ax.set_ylabel("mean reward over the rollout group")
  ax.set_title(
    "(c) training reward (beam groups are not samples of the policy)"
  )
  ax.legend(fontsize=8)
  ax = axes[1, 1]
  k = results["eval_samples"]
  for s in STRATEGIES:
    r = rl[s]
    acc, se = np.asarray(r["accuracy"]), np.asarray(r["accuracy_se"])
    ax.plot(
      r["eval_steps"],
      100 * acc,
      color=colors[s],
      marker="o",
      label=f"{s}: greedy",
    )
    ax.fill_between(
      r["eval_steps"],
      100 * (acc - se),
      100 * (acc + se),
      color=colors[s],
      alpha=0.15,
    )
    ax.plot(
      r["eval_steps"],
      100 * np.asarray(r[f"mean@{k}"]),
      color=colors[s],
      linestyle="--",
      label=f"{s}: mean@{k} (temperature 1)",
    )
  ax.set_xlabel("GRPO step")
  ax.set_ylabel(f"held-out accuracy (%), {results['num_prompts']} prompts")
  ax.set_title("(d) held-out accuracy by rollout strategy")
  ax.legend(fontsize=8)
  fig.suptitle(
    "Beam search against greedy and self-consistency sampling (maj@8, Wang "
    "et al. 2023),\nand beam search as GRPO's rollouts (DeepSeekMath, Shao "
    "et al. 2024)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# The experiment ---------------------------------------------------------------


def run(workdir: str, quick: bool):
  config = base_config(quick)
  size = SIZES[quick]
  sft_dir = os.path.join(workdir, "sft")
  export = run_sft(config, sft_dir)
  dec = Decoders(export, config, size["prompts"])
  decoders, groups = compare_decoders(dec, config)
  rl = {
    s: run_rl(config, sft_dir, os.path.join(workdir, f"rl_{s}"), s, quick)
    for s in STRATEGIES
  }
  results = {
    "quick": quick,
    "sizes": size,
    "num_prompts": len(dec.examples),
    "eval_samples": config.eval.num_samples,
    "group_size": config.rollout.num_samples,
    "decode_length_penalty": DECODE_LENGTH_PENALTY,
    "decoders": decoders,
    "groups": groups,
    "rl": rl,
  }
  path = figure(results, os.path.join(workdir, f"{NAME}.png"))
  return results, path


def _pct(x: float) -> str:
  return f"{100 * x:.1f}%"


def _points(x: float) -> str:
  return f"{100 * x:+.1f} points"


def paragraph(r: dict) -> str:
  """The README section: every number from `r`, the wording from their
  signs and sizes."""
  dec, groups, rl = r["decoders"], r["groups"], r["rl"]
  n, k, g = r["num_prompts"], r["eval_samples"], r["group_size"]
  beams = ["greedy"] + [f"beam{b}" for b in BEAMS]
  vote_name = f"sample_maj{BUDGET}"
  rows = [
    "| decoder | accuracy | carry | no_carry | sequence log-prob (sum) "
    "| per token | length (tokens) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for name, d in dec.items():
    rows.append(
      f"| {name} | {_pct(d['accuracy'])} +- {_pct(d['accuracy_se'])} "
      f"| {_pct(d.get('carry/accuracy', float('nan')))} "
      f"| {_pct(d.get('no_carry/accuracy', float('nan')))} "
      f"| {d['mean_logprob']:.3f} +- {d['mean_logprob_se']:.3f} "
      f"| {d['mean_token_logprob']:.4f} | {d['mean_length']:.2f} |"
    )
  lps = [dec[b]["mean_logprob"] for b in beams]
  drops = [
    (a, b) for a, b, x, y in zip(beams, beams[1:], lps, lps[1:]) if y < x - 1e-6
  ]
  worse = max(dec[f"beam{b}"]["share_below_narrower"] for b in BEAMS)
  claim = (
    "The claim holds: the mean sequence log-probability does not decrease "
    "as beams grow ("
    if not drops
    else "The claim does not hold here: the mean sequence log-probability "
    f"decreases from {' and '.join(f'{a} to {b}' for a, b in drops)} ("
  )
  claim += " -> ".join(f"{b} {x:.3f}" for b, x in zip(beams, lps)) + " nats)."
  claim += (
    " Beam search is no exact search, yet no wider beam ended on a less "
    "likely completion than the next narrower one on any prompt."
    if worse == 0
    else " Beam search is no exact search: on up to "
    f"{_pct(worse)} of the prompts a wider beam ended on a less likely "
    "completion than the next narrower one."
  )
  same = [
    f"beam{b}"
    for b in BEAMS[1:]
    if dec[f"beam{b}"]["share_above_narrower"] == 0
  ]
  if same:
    claim += (
      f" With {' and '.join(b[4:] for b in same)} beams no prompt got a "
      "likelier completion than with the next narrower beam: the SFT model "
      "is peaked (8 samples "
      f"hold {groups['sampling']['distinct_completions']:.2f} distinct "
      "completions on average)."
    )
  wide = f"beam{BUDGET}"
  best = max(beams, key=lambda b: dec[b]["accuracy"])
  gain = dec[wide]["accuracy"] - dec["greedy"]["accuracy"]
  se = max(dec[wide]["accuracy_se"], dec["greedy"]["accuracy_se"])
  carry = lambda name: dec[name].get("carry/accuracy", float("nan"))
  lead = (
    "The likelier completions are also more accurate"
    if gain >= 2 * se
    else "The likelier completions are less accurate"
    if gain <= -2 * se
    else "The likelier completions are not measurably more accurate"
  )
  likelihood = (
    f"{lead}: {wide} against greedy is {_points(gain)} of accuracy "
    f"({'within' if abs(gain) < 2 * se else 'beyond'} two standard errors "
    f"of {_pct(se)}); the most accurate search is {best}. On the carry "
    "problems, where the teacher's most likely answer drops the carry, "
    f"greedy gets {_pct(carry('greedy'))} and {wide} {_pct(carry(wide))}"
  )
  likelihood += (
    ": the search returns what the SFT model finds likeliest, and there "
    "that is the teacher's mistake."
    if carry(wide) <= carry("greedy") + 0.05
    else "."
  )
  vote = dec[vote_name]["accuracy"] - dec["greedy"]["accuracy"]
  likelihood += (
    f" A majority vote over {BUDGET} samples (the same budget) is "
    f"{_points(vote)} against greedy (carry {_pct(carry(vote_name))})"
  )
  likelihood += (
    ": it elects the answer the model puts most probability on, on carry "
    "problems the same wrong one."
    if carry(vote_name) <= carry("greedy") + 0.05
    else "."
  )
  gb, gs = groups["beam"], groups["sampling"]
  rs, rb = rl["sampling"], rl["beam"]
  steps = rs["eval_steps"][-1]
  final = lambda x, key: x[key][-1]
  d_acc = final(rb, "accuracy") - final(rs, "accuracy")
  d_se = float(np.hypot(final(rb, "accuracy_se"), final(rs, "accuracy_se")))
  d_mean = final(rb, f"mean@{k}") - final(rs, f"mean@{k}")
  verdict = (
    "end higher"
    if d_acc > 2 * d_se
    else "end lower"
    if d_acc < -2 * d_se
    else "end level within two standard errors"
  )
  gaps = np.asarray(rb["accuracy"]) - np.asarray(rs["accuracy"])
  i = int(np.argmax(np.abs(gaps)))
  se_i = float(np.hypot(rb["accuracy_se"][i], rs["accuracy_se"][i]))
  pace = (
    "slower"
    if gaps[i] < -2 * se_i
    else "faster"
    if gaps[i] > 2 * se_i
    else "at the same pace, within two standard errors"
  )
  zero = lambda x: float(np.nanmean(x["frac_zero_std"]))
  rlp = (
    f"GRPO from the same SFT checkpoint for {steps} steps, the default "
    f"run's settings: with sampled rollouts held-out greedy accuracy goes "
    f"{_pct(rs['accuracy'][0])} -> {_pct(final(rs, 'accuracy'))} (carry "
    f"{_pct(rs['carry_accuracy'][0])} -> "
    f"{_pct(final(rs, 'carry_accuracy'))}, mean@{k} "
    f"{_pct(rs[f'mean@{k}'][0])} -> {_pct(final(rs, f'mean@{k}'))}), with "
    f"beam rollouts to {_pct(final(rb, 'accuracy'))} (carry "
    f"{_pct(final(rb, 'carry_accuracy'))}, mean@{k} "
    f"{_pct(final(rb, f'mean@{k}'))}). Beam rollouts {verdict} "
    f"({_points(d_acc)} greedy, {_points(d_mean)} mean@{k}; one seed each, "
    f"standard error of the difference {_pct(d_se)}) and learn {pace}: "
    f"the curves are furthest apart at step {rs['eval_steps'][i]}, sampling "
    f"{_pct(rs['accuracy'][i])} against beam {_pct(rb['accuracy'][i])} "
    f"({_points(gaps[i])}, {abs(gaps[i]) / max(se_i, 1e-9):.1f} standard "
    "errors)."
  )
  sa, ba = rs["groups_after"]["sampling"], rb["groups_after"]["beam"]
  why = (
    "Why: diversity within the group. A beam group is the model's "
    f"{g} likeliest completions, distinct by construction, not draws from "
    f"it. From the SFT model beam groups hold {gb['distinct_answers']:.2f} "
    f"distinct answers against {gs['distinct_answers']:.2f} for sampled "
    f"groups, so {_pct(gb['mixed_groups'])} of beam groups carry a GRPO "
    f"gradient against {_pct(gs['mixed_groups'])} (in training, groups with "
    f"equal rewards: {_pct(zero(rb))} of beam groups, {_pct(zero(rs))} of "
    "sampled ones, averaged over the steps). But that diversity is not the "
    f"policy's: the members of a beam group have a mean log-prob of "
    f"{gb['mean_logprob']:.2f} nats against {gs['mean_logprob']:.2f} for "
    f"samples, and only {_pct(gb['share_correct'])} of them are right "
    f"against {_pct(gs['share_correct'])}; after RL still "
    f"{ba['distinct_answers']:.2f} distinct answers and "
    f"{_pct(ba['share_correct'])} right in the beam-trained policy's beam "
    f"groups, against {sa['distinct_answers']:.2f} and "
    f"{_pct(sa['share_correct'])} in the sampling-trained policy's samples. "
    "GRPO's advantage on a beam group weights completions by their rank "
    "among the beams, not by how often the policy writes them, so the "
    "update is a biased stand-in for the policy gradient that sampling "
    "estimates: much of it pushes down wrong completions the policy "
    "seldom writes. The group's mean reward (panel c) is no estimate of "
    "the policy's reward either."
  )
  how = (
    f"Held-out prompts: {n}. Every decoder stops at EOS; beam search ranks "
    f"by the summed log-prob (length_penalty "
    f"{r['decode_length_penalty']:g}); the log-probs are the SFT model's "
    "own, from a teacher-forced pass over each returned completion, "
    "summed over its tokens with EOS (also shown divided by the length). "
    f"For {vote_name} the accuracy is that of the majority answer and the "
    f"log-prob and length are the mean over all {BUDGET} samples. The RL "
    "rollout groups use the loop's beam search (length_penalty 1)."
  )
  return "\n\n".join(
    ["\n".join(rows), claim + " " + likelihood, rlp + " " + why, how]
  )


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
