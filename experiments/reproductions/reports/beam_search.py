"""The beam_search reproduction's figure and README paragraph."""

import numpy as np

from experiments.reproductions import reports
from experiments.reproductions.reports import pct, points


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
  plt = reports.pyplot()
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
  budget = int(samples[0][len("sample_maj") :])
  ax.errorbar(
    x[len(beams) :],
    [dec[n]["mean_logprob"] for n in samples],
    yerr=[dec[n]["mean_logprob_se"] for n in samples],
    marker="s",
    linestyle="none",
    capsize=3,
    color=colors["sampling"],
    label=f"{budget} samples at temperature 1 (mean over all)",
  )
  ax.set_xticks(x, names)
  ax.set_xlabel("decoder (SFT model)")
  ax.set_ylabel("mean sequence log-prob (nats, summed over tokens)")
  ax.set_title("(b) the model's log-prob of what it decoded")
  ax.legend(fontsize=8, loc="lower left")
  rl = results["rl"]
  ax = axes[1, 0]
  width = max(1, len(rl["sampling"]["steps"]) // 20)
  for s in rl:
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
  for s in rl:
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
  return reports.save(fig, path)


def paragraph(r: dict) -> str:
  """The README section: every number from `r`, the wording from their
  signs and sizes."""
  dec, groups, rl = r["decoders"], r["groups"], r["rl"]
  n, k, g = r["num_prompts"], r["eval_samples"], r["group_size"]
  beams = [name for name in dec if not name.startswith("sample")]
  vote_name = next(name for name in dec if name.startswith("sample_maj"))
  budget = int(vote_name[len("sample_maj") :])
  rows = [
    "| decoder | accuracy | carry | no_carry | sequence log-prob (sum) "
    "| per token | length (tokens) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for name, d in dec.items():
    rows.append(
      f"| {name} | {pct(d['accuracy'])} +- {pct(d['accuracy_se'])} "
      f"| {pct(d.get('carry/accuracy', float('nan')))} "
      f"| {pct(d.get('no_carry/accuracy', float('nan')))} "
      f"| {d['mean_logprob']:.3f} +- {d['mean_logprob_se']:.3f} "
      f"| {d['mean_token_logprob']:.4f} | {d['mean_length']:.2f} |"
    )
  lps = [dec[b]["mean_logprob"] for b in beams]
  drops = [
    (a, b) for a, b, x, y in zip(beams, beams[1:], lps, lps[1:]) if y < x - 1e-6
  ]
  worse = max(dec[b]["share_below_narrower"] for b in beams[1:])
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
    f"{pct(worse)} of the prompts a wider beam ended on a less likely "
    "completion than the next narrower one."
  )
  same = [b for b in beams[2:] if dec[b]["share_above_narrower"] == 0]
  if same:
    claim += (
      f" With {' and '.join(b[4:] for b in same)} beams no prompt got a "
      "likelier completion than with the next narrower beam: the SFT model "
      "is peaked (8 samples "
      f"hold {groups['sampling']['distinct_completions']:.2f} distinct "
      "completions on average)."
    )
  wide = f"beam{budget}"
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
    f"{lead}: {wide} against greedy is {points(gain)} of accuracy "
    f"({'within' if abs(gain) < 2 * se else 'beyond'} two standard errors "
    f"of {pct(se)}); the most accurate search is {best}. On the carry "
    "problems, where the teacher's most likely answer drops the carry, "
    f"greedy gets {pct(carry('greedy'))} and {wide} {pct(carry(wide))}"
  )
  likelihood += (
    ": the search returns what the SFT model finds likeliest, and there "
    "that is the teacher's mistake."
    if carry(wide) <= carry("greedy") + 0.05
    else "."
  )
  vote = dec[vote_name]["accuracy"] - dec["greedy"]["accuracy"]
  likelihood += (
    f" A majority vote over {budget} samples (the same budget) is "
    f"{points(vote)} against greedy (carry {pct(carry(vote_name))})"
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
    f"{pct(rs['accuracy'][0])} -> {pct(final(rs, 'accuracy'))} (carry "
    f"{pct(rs['carry_accuracy'][0])} -> "
    f"{pct(final(rs, 'carry_accuracy'))}, mean@{k} "
    f"{pct(rs[f'mean@{k}'][0])} -> {pct(final(rs, f'mean@{k}'))}), with "
    f"beam rollouts to {pct(final(rb, 'accuracy'))} (carry "
    f"{pct(final(rb, 'carry_accuracy'))}, mean@{k} "
    f"{pct(final(rb, f'mean@{k}'))}). Beam rollouts {verdict} "
    f"({points(d_acc)} greedy, {points(d_mean)} mean@{k}; one seed each, "
    f"standard error of the difference {pct(d_se)}) and learn {pace}: "
    f"the curves are furthest apart at step {rs['eval_steps'][i]}, sampling "
    f"{pct(rs['accuracy'][i])} against beam {pct(rb['accuracy'][i])} "
    f"({points(gaps[i])}, {abs(gaps[i]) / max(se_i, 1e-9):.1f} standard "
    "errors)."
  )
  sa, ba = rs["groups_after"]["sampling"], rb["groups_after"]["beam"]
  why = (
    "Why: diversity within the group. A beam group is the model's "
    f"{g} likeliest completions, distinct by construction, not draws from "
    f"it. From the SFT model beam groups hold {gb['distinct_answers']:.2f} "
    f"distinct answers against {gs['distinct_answers']:.2f} for sampled "
    f"groups, so {pct(gb['mixed_groups'])} of beam groups carry a GRPO "
    f"gradient against {pct(gs['mixed_groups'])} (in training, groups with "
    f"equal rewards: {pct(zero(rb))} of beam groups, {pct(zero(rs))} of "
    "sampled ones, averaged over the steps). But that diversity is not the "
    f"policy's: the members of a beam group have a mean log-prob of "
    f"{gb['mean_logprob']:.2f} nats against {gs['mean_logprob']:.2f} for "
    f"samples, and only {pct(gb['share_correct'])} of them are right "
    f"against {pct(gs['share_correct'])}; after RL still "
    f"{ba['distinct_answers']:.2f} distinct answers and "
    f"{pct(ba['share_correct'])} right in the beam-trained policy's beam "
    f"groups, against {sa['distinct_answers']:.2f} and "
    f"{pct(sa['share_correct'])} in the sampling-trained policy's samples. "
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
    f"log-prob and length are the mean over all {budget} samples. The RL "
    "rollout groups use the loop's beam search (length_penalty 1)."
  )
  return "\n\n".join(
    ["\n".join(rows), claim + " " + likelihood, rlp + " " + why, how]
  )
