"""The r1_zero reproduction's figure and README paragraph."""

import numpy as np

from experiments.reproductions import reports


def figure(results: dict, path: str) -> str:
  """R1's Figures 2 and 3: reward and format rate, accuracy, length."""
  plt = reports.pyplot()
  steps = results["steps"]
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  ax = axes[0]
  ax.plot(steps, results["reward"], label="reward (accuracy + 0.5 format)")
  ax.plot(steps, results["format_rate"], label="format rate")
  ax.set_xlabel("RL step")
  ax.set_title("training reward")
  ax.legend()
  ax = axes[1]
  ax.errorbar(
    results["eval_steps"],
    results["eval_accuracy"],
    yerr=results["eval_accuracy_se"],
    marker="o",
    label="held-out greedy accuracy",
  )
  ax.plot(steps, results["accuracy"], alpha=0.5, label="training accuracy")
  ax.set_xlabel("RL step")
  ax.set_ylim(0, 1)
  ax.set_title("accuracy")
  ax.legend()
  ax = axes[2]
  ax.plot(steps, results["response_length"])
  ax.set_xlabel("RL step")
  ax.set_ylabel("tokens")
  ax.set_title("mean response length")
  fig.suptitle(
    "DeepSeek R1-Zero (toy scale): RL from a base model, rule rewards"
  )
  return reports.save(fig, path)


def paragraph(r: dict) -> str:
  """The README paragraph, from `results.json`."""
  length = r["response_length"]
  grew = np.mean(length[-len(length) // 5 :]) - np.mean(
    length[: len(length) // 5]
  )
  gain = r["reward_last_fifth"] - r["reward_first_fifth"]
  lines = [
    "R1-Zero's claim: RL with rule-based rewards alone, from a base model "
    "with no SFT on the answer format, teaches the model the format and "
    "raises accuracy, and (at scale) responses grow longer with "
    "self-verification. Here the base model was pretrained on worked "
    "arithmetic in prose, "
    f"{r['pretraining_tagged_share']:.0%} of it in `<think>/<answer>` "
    "markup (as a web-trained base has seen such tags) and none with the "
    "instruction; RL then ran with the accuracy and format rewards only.",
    "",
    f"- Mean training reward: {r['reward_first_fifth']:.3f} over the first "
    f"fifth of RL, {r['reward_last_fifth']:.3f} over the last "
    f"({gain:+.3f}); format rate {r['format_rate'][0]:.0%} at the first "
    f"step, {r['format_rate'][-1]:.0%} at the last.",
    f"- Held-out greedy accuracy: {r['eval_accuracy'][0]:.1%} at step "
    f"{r['eval_steps'][0]}, {r['eval_accuracy'][-1]:.1%} +- "
    f"{r['eval_accuracy_se'][-1]:.1%} at step {r['eval_steps'][-1]}"
    + (
      ": it stays low, because the base model's arithmetic is weak at this "
      "size; RL found the format, not the arithmetic."
      if r["eval_accuracy"][-1] < 0.2
      else "."
    ),
    f"- Response length: {length[0]:.1f} tokens at the first step, "
    f"{length[-1]:.1f} at the last ({grew:+.1f} last fifth against first). "
    + (
      "It does not grow: these problems need a fixed number of steps, and "
      "the corpus shows no longer way to solve them, so RL has no longer "
      "reasoning to select (R1's growth came with hard problems at scale)."
      if grew < 1
      else "It grows."
    ),
    f"- Self-checking (a completion that works some step twice): "
    f"{r['recheck_rate_before']:.1%} of one sample per held-out prompt "
    f"before RL, {r['recheck_rate_after']:.1%} after. The pretraining "
    "text contains no self-verification for RL to amplify. Completions "
    "before RL, then after:",
    "",
    "```",
    *r["samples_before"],
    "---",
    *r["samples_after"],
    "```",
  ]
  return "\n".join(lines)
