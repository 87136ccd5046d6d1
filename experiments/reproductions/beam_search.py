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

import numpy as np

sys.path.insert(
  0,
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

from experiments.configs import grpo_arithmetic  # noqa: E402
from experiments.reproductions import common  # noqa: E402
from experiments.reproductions.reports.beam_search import (  # noqa: E402
  figure,
  paragraph,
)
from rlx import train  # noqa: E402
from rlx.train import heldout, metrics  # noqa: E402

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


# 2-3. Decoders, and the rollout groups GRPO would see -----------------------


def decoder_record(
  dec: heldout.HeldOut, d: heldout.Decoded, correct=None
) -> dict:
  """The decoder's answer per prompt: its first row (the best beam), or,
  with `correct` given (the vote), every row for log-prob and length."""
  n = d.n
  top = slice(None) if correct is not None else slice(None, None, n)
  correct = d.correct[::n] if correct is None else correct
  logprob, lengths = d.logprob[top], d.lengths[top]
  acc, acc_se = common.mean_se(correct)
  lp, lp_se = common.mean_se(logprob)
  record = {
    "accuracy": acc,
    "accuracy_se": acc_se,
    "mean_logprob": lp,
    "mean_logprob_se": lp_se,
    "mean_token_logprob": float(np.mean(logprob / np.maximum(lengths, 1))),
    "mean_length": float(np.mean(lengths)),
    "logprob_check_max_abs": d.check,
  }
  classes = dec.categories()
  for c in sorted(set(classes)):
    record[f"{c}/accuracy"] = float(np.mean(correct[classes == c]))
  return record


def group_stats(dec: heldout.HeldOut, d: heldout.Decoded) -> dict:
  """What one GRPO group of n rows per prompt holds."""
  n = d.n
  ok = d.correct.reshape(-1, n)
  distinct = [
    len({a for a in d.answers[i * n : (i + 1) * n] if a is not None})
    for i in range(len(dec.examples))
  ]
  return {
    "group_size": n,
    "distinct_answers": float(np.mean(distinct)),
    "distinct_completions": float(
      np.mean([len(set(d.texts[i * n : (i + 1) * n])) for i in range(len(ok))])
    ),
    "mixed_groups": float(np.mean(ok.any(1) & ~ok.all(1))),
    "any_correct": float(np.mean(ok.any(1))),
    "share_correct": float(ok.mean()),
    "mean_logprob": float(np.mean(d.logprob)),
  }


def compare_decoders(dec: heldout.HeldOut, config) -> tuple[dict, dict]:
  greedy = dec.sample(1, 0.0, False)
  out = {"greedy": decoder_record(dec, greedy)}
  previous = greedy.logprob
  for k in BEAMS:
    d = dec.beam(k, DECODE_LENGTH_PENALTY)
    out[f"beam{k}"] = decoder_record(dec, d)
    # Beam search is no exact search: a wider beam can end lower.
    top = d.logprob[:: d.n]
    out[f"beam{k}"]["share_below_narrower"] = float(
      np.mean(top < previous - 1e-4)
    )
    out[f"beam{k}"]["share_above_narrower"] = float(
      np.mean(top > previous + 1e-4)
    )
    previous = top
  samples = dec.sample(BUDGET, 1.0, False, seed=config.seed)
  out[f"sample_maj{BUDGET}"] = decoder_record(
    dec, samples, dec.majority_correct(samples)
  )
  return out, rollout_groups(dec, config)


def rollout_groups(dec: heldout.HeldOut, config) -> dict:
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
  records = metrics.read_metrics(workdir, phase="rl")
  evals = [r for r in records if "eval/accuracy" in r]
  steps = [r for r in records if "train/reward" in r]
  k, curve = config.eval.num_samples, metrics.curve
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
      heldout.HeldOut(os.path.join(workdir, "export"), config, size["prompts"]),
      config,
    ),
    "after": {
      key: v for key, v in summary["after"].items() if key.startswith("eval/")
    },
  }


# The experiment ---------------------------------------------------------------


def run(workdir: str, quick: bool):
  config = base_config(quick)
  size = SIZES[quick]
  sft_dir = os.path.join(workdir, "sft")
  export = common.sft_only(config, sft_dir)  # 1. SFT
  dec = heldout.HeldOut(export, config, size["prompts"])
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


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
