"""Model collapse (Shumailov et al., Nature 2024), on a Markov chain.

  python experiments/reproductions/model_collapse.py --workdir=DIR [--quick]

The "real" data come from a Markov chain over a small alphabet
(`rlx.data.markov`) whose every row has a few common successors, a few
rare ones (the tail) and impossible ones, so that every sequence's true
log-likelihood, and the true mass of the rare events, are exact.

Generation 0 is a small rlx transformer trained on `num_train` real
sequences; generation n + 1 is the same initial model trained on
`num_train` sequences sampled (temperature 1) from generation n. Two arms,
as in the paper's Figure 1(b) and (c): all synthetic, and `real10`, where
10% of each generation's training sequences are drawn fresh from the real
process. For every generation:

- real_ppl: the per-token perplexity of held-out real sequences under
  the model (the true chain's own perplexity is the floor);
- kl: KL(true || model) in nats per sequence, a Monte-Carlo estimate
  E_{x ~ true}[log p(x) - log q(x)] over the held-out real sequences (exact
  log p, the model's exact log q), with its standard error;
- tail_mass: the model's probability that the next symbol is a rare one
  (a transition of true probability below `rare_threshold`), averaged over
  the held-out real contexts (the truth's value is exact);
- impossible_mass: likewise for transitions of true probability 0;
- tail_mass_seq: the share of the model's samples that are rare real
  sequences (possible, and below the real data's 10% quantile of true
  log-likelihood);
- the per-token perplexity of each generation's own samples under the
  generation-0 model (the paper's histograms), and the share of samples
  beyond the real data's 1st and 99th percentiles of it.

results.json: `arms[arm][metric]` is the mean over `replicates`
independent runs (fresh initialisation, real data and sampling keys) per
generation, `arms[arm][metric + "_replicates"]` each run's values; `kl_se`
is the standard error across replicates (the Monte-Carlo one, `kl_se_mc`,
with a single replicate); `histograms` holds the sample counts per
generation on fixed bins; `true` the chain's exact values.
"""

import os
import sys

import jax
import numpy as np
from flax import nnx

sys.path.insert(
  0,
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
)

from experiments.reproductions import common  # noqa: E402
from rlx import algos, decoding, models  # noqa: E402
from rlx.data.markov import MarkovChain  # noqa: E402
from rlx.train import lm  # noqa: E402

NAME = "model_collapse"

CONFIG = dict(
  seed=0,
  replicates=3,  # independent runs of both arms; the curves are their mean
  # The real process: a sparse Markov chain, sequences of `length` symbols.
  num_states=12,
  num_common=3,
  num_rare=3,
  rare_range=(2e-3, 2e-2),
  rare_threshold=0.05,
  length=16,
  # Data per generation, and the arms.
  num_train=2000,
  real_fraction=0.1,
  generations=10,
  num_heldout=4000,
  # The model and its training (each generation from the same init).
  hidden_size=64,
  num_layers=2,
  epochs=8,
  batch_size=50,
  learning_rate=3e-3,
  schedule="constant",  # after a warm-up over 10% of the steps; or "cosine"
)
QUICK = dict(
  replicates=1, num_train=1000, generations=8, num_heldout=1000, epochs=6
)

# Histogram bins of per-token perplexity under generation 0.
HIST_BINS = np.geomspace(1.0, 1000.0, 121)
PAD, BOS, OFFSET = 0, 1, 2  # token ids; state s is token s + OFFSET
ARMS = ("synthetic", "real10")


def to_tokens(x_NxL: np.ndarray) -> np.ndarray:
  """States -> [BOS, tokens...] rows."""
  bos = np.full((x_NxL.shape[0], 1), BOS, np.int32)
  return np.concatenate([bos, x_NxL + OFFSET], axis=1).astype(np.int32)


def true_logprob(chain: MarkovChain, tokens_NxT: np.ndarray) -> np.ndarray:
  """Exact log p of [BOS, ...] rows; -inf where a token is no state."""
  x = tokens_NxT[:, 1:] - OFFSET
  ok = np.all((x >= 0) & (x < chain.num_states), axis=1)
  out = np.full(x.shape[0], -np.inf)
  out[ok] = chain.logprob(x[ok])
  return out


def per_token_ppl(graphdef, params, tokens_NxT) -> np.ndarray:
  logp, count = lm.sequence_logprobs(graphdef, params, tokens_NxT)
  return np.exp(-logp / count)


def measure(graphdef, params, chain, heldout, rare_KxK, possible_KxK):
  """real_ppl, kl (+ se) and the tail / impossible masses on held-out real
  sequences."""
  logq, count = lm.sequence_logprobs(graphdef, params, heldout)
  logp = true_logprob(chain, heldout)
  gap = logp - logq
  # Next-symbol distributions after each held-out prefix of >= 1 symbol.
  lp = lm.next_token_logprobs(graphdef, params, heldout)[:, 1:-1]
  probs = np.exp(lp.astype(np.float64))
  prev = heldout[:, 1:-1] - OFFSET  # the state before each next symbol
  states = probs[..., OFFSET : OFFSET + chain.num_states]
  tail = np.sum(states * rare_KxK[prev], axis=-1)
  possible = np.sum(states * possible_KxK[prev], axis=-1)
  return dict(
    real_ppl=float(np.exp(-logq.sum() / count.sum())),
    kl=float(gap.mean()),
    kl_se=float(gap.std(ddof=1) / np.sqrt(gap.size)),
    tail_mass=float(tail.mean()),
    impossible_mass=float(1.0 - possible.mean()),
  )


def replicate(c, r, chain, heldout, rare_seq, trainer, sampler, config):
  """One run of both arms from a fresh initialisation and fresh data:
  per arm, each generation's measurements and the histogram of its samples'
  perplexities under generation 0."""
  P = chain.transition_KxK
  rare, possible = (P > 0) & (P < c["rare_threshold"]), P > 0
  L, n, seed = c["length"], c["num_train"], c["seed"] + r
  _, init = nnx.split(models.init_model(config, seed))
  graphdef = trainer.graphdef
  steps = c["epochs"] * n // c["batch_size"]
  prompt = np.full((n, 1), BOS, np.int32)

  def sample(params, key):
    out = sampler(params, prompt, np.ones_like(prompt, bool), key)
    return np.concatenate([prompt, np.asarray(out.tokens)], axis=1)

  def train(data, generation, arm):
    data_seed = seed * 1000 + 100 * ARMS.index(arm) + generation
    params, losses = trainer.fit(init, data, steps=steps, seed=data_seed)
    return params, float(losses[-steps // c["epochs"] :].mean())

  def evaluate(params, loss, real_rows, key):
    """The generation's measurements and its `n` samples."""
    samples = sample(params, key)
    m = measure(graphdef, params, chain, heldout, rare, possible)
    logp_true = true_logprob(chain, samples)
    valid = np.isfinite(logp_true)
    ppl0 = per_token_ppl(graphdef, gen0, samples)
    m.update(
      train_loss=loss,
      real_rows=real_rows,
      tail_mass_seq=float(np.mean(valid & (logp_true < rare_seq))),
      sample_invalid=float(1.0 - valid.mean()),
      sample_true_nll=float(-logp_true[valid].mean() / L),
      sample_ppl_median=float(np.median(ppl0)),
      sample_below_real_p1=float(np.mean(ppl0 < real_p1)),
      sample_above_real_p99=float(np.mean(ppl0 > real_p99)),
    )
    return m, samples, np.histogram(ppl0, HIST_BINS)[0]

  rng = np.random.default_rng([c["seed"], r])
  key = jax.random.key(seed)
  gen0, loss0 = train(to_tokens(chain.sample(n, L, rng)), 0, ARMS[0])
  # The real data's own spread under generation 0, for the histograms.
  heldout_ppl0 = per_token_ppl(graphdef, gen0, heldout)
  real_p1, real_p99 = np.quantile(heldout_ppl0, [0.01, 0.99])
  first = evaluate(gen0, loss0, n, jax.random.fold_in(key, 0))
  arms, hists = {}, {}
  for a, arm in enumerate(ARMS):
    rows = {k: [v] for k, v in first[0].items()}
    samples, hists[arm] = first[1], [first[2]]
    for g in range(1, c["generations"] + 1):
      real_rows = round(c["real_fraction"] * n) if arm == "real10" else 0
      fresh = chain.sample(real_rows, L, np.random.default_rng([seed, a, g]))
      data = np.concatenate([samples[: n - real_rows], to_tokens(fresh)])
      params, loss = train(data, g, arm)
      m, samples, hist = evaluate(
        params, loss, real_rows, jax.random.fold_in(key, 100 * (a + 1) + g)
      )
      for k, v in m.items():
        rows[k].append(v)
      hists[arm].append(hist)
      print(
        f"replicate {r} {arm} gen {g}: real ppl {m['real_ppl']:.3f} kl "
        f"{m['kl']:.3f} tail {m['tail_mass']:.4f} impossible "
        f"{m['impossible_mass']:.4f} invalid samples "
        f"{m['sample_invalid']:.3f}",
        flush=True,
      )
    arms[arm] = rows
  return arms, hists, np.histogram(heldout_ppl0, HIST_BINS)[0]


def run(workdir: str, quick: bool):
  c = {**CONFIG, **(QUICK if quick else {})}
  rng = np.random.default_rng(c["seed"])
  chain = MarkovChain.random_sparse(
    c["num_states"],
    num_common=c["num_common"],
    num_rare=c["num_rare"],
    rare_range=c["rare_range"],
    rng=rng,
  )
  P = chain.transition_KxK
  L = c["length"]
  heldout = to_tokens(chain.sample(c["num_heldout"], L, rng))
  # Rare real sequences: the lowest decile of true probability.
  heldout_logp = true_logprob(chain, heldout)
  rare_seq = np.quantile(heldout_logp, 0.1)
  true = dict(
    real_ppl=float(np.exp(chain.entropy(L) / L)),
    entropy=chain.entropy(L),
    tail_mass=chain.expected_transition_mass(
      L, (P > 0) & (P < c["rare_threshold"])
    ),
    tail_mass_seq=float(np.mean(heldout_logp < rare_seq)),
    impossible_mass=0.0,
    num_rare_transitions=int(np.sum((P > 0) & (P < c["rare_threshold"]))),
    num_impossible_transitions=int(np.sum(P == 0)),
  )

  config = models.preset(
    "tiny",
    vocab_size=c["num_states"] + OFFSET,
    hidden_size=c["hidden_size"],
    intermediate_size=2 * c["hidden_size"],
    num_layers=c["num_layers"],
    max_position_embeddings=2 * (L + 1),
  )
  graphdef, params = nnx.split(models.init_model(config, c["seed"]))
  steps = c["epochs"] * c["num_train"] // c["batch_size"]
  trainer = lm.LMTrainer(
    graphdef,
    algos.OptimizerConfig(
      learning_rate=c["learning_rate"],
      schedule=c["schedule"],
      warmup_steps=steps // 10,
      total_steps=steps,
    ),
    batch_size=c["batch_size"],
    mesh=models.make_mesh(devices=jax.devices()[:1]),
  )
  sampler = decoding.make_sampler(
    graphdef,
    params,
    decoding.SamplingConfig(max_new_tokens=L, temperature=1.0),
  )
  runs = [
    replicate(c, r, chain, heldout, rare_seq, trainer, sampler, config)
    for r in range(c["replicates"])
  ]

  arms = {}
  for arm in ARMS:
    per = [run_[0][arm] for run_ in runs]
    rows = {}
    for k in per[0]:
      x = np.array([p[k] for p in per])  # [replicates, generations]
      rows[k] = x.mean(axis=0).tolist()
      rows[k + "_replicates"] = x.tolist()
    kl = np.array(rows["kl_replicates"])
    mc = np.array(rows.pop("kl_se_replicates"))
    rows["kl_se_mc"] = (np.sqrt(np.sum(mc**2, axis=0)) / len(per)).tolist()
    rows["kl_se"] = (
      (kl.std(axis=0, ddof=1) / np.sqrt(len(per))).tolist()
      if len(per) > 1
      else rows["kl_se_mc"]
    )
    arms[arm] = rows

  results = dict(
    generations=list(range(c["generations"] + 1)),
    arms=arms,
    true=true,
    histograms=dict(
      bins=HIST_BINS.tolist(),
      real=np.sum([run_[2] for run_ in runs], axis=0).tolist(),
      **{
        arm: np.sum([run_[1][arm] for run_ in runs], axis=0).tolist()
        for arm in ARMS
      },
    ),
    config={
      **c,
      "quick": quick,
      "steps_per_generation": steps,
      "num_params": config.num_params,
    },
  )
  return results, figure(results, workdir)


def figure(results: dict, workdir: str) -> str:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  gens = results["generations"]
  arms = results["arms"]
  true = results["true"]
  fig = plt.figure(figsize=(15, 8.5))
  grid = fig.add_gridspec(2, 6)
  h = results["histograms"]
  edges = np.array(h["bins"])
  used = np.nonzero(np.sum([np.sum(h[a], axis=0) for a in ARMS], axis=0))[0]
  lo, hi = edges[used.min()], edges[used.max() + 1]
  cmap = plt.get_cmap("viridis")
  titles = {
    "synthetic": "(b) no real data kept",
    "real10": "(c) 10% fresh real data each generation",
  }

  def density(counts):
    counts = np.asarray(counts, np.float64)
    return counts / counts.sum() / np.diff(edges)

  for i, arm in enumerate(ARMS):
    ax = fig.add_subplot(grid[0, 3 * i : 3 * i + 3])
    for g in gens:
      ax.stairs(
        density(h[arm][g]),
        edges,
        color=cmap(g / max(gens[-1], 1)),
        label=f"generation {g}",
      )
    ax.stairs(
      density(h["real"]),
      edges,
      color="red",
      linestyle="--",
      label="real data",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("per-token perplexity of a sample, under generation 0")
    ax.set_ylabel("density")
    ax.set_title(titles[arm])
    ax.legend(fontsize=7, ncol=2)
  panels = [
    ("real_ppl", "perplexity of held-out real data", true["real_ppl"]),
    ("kl", "KL(true || model), nats per sequence", 0.0),
    ("tail_mass", "model mass on rare transitions", true["tail_mass"]),
  ]
  for i, (key, label, ref) in enumerate(panels):
    ax = fig.add_subplot(grid[1, 2 * i : 2 * i + 2])
    for arm, style in zip(ARMS, ("o-", "s-")):
      y = np.array(arms[arm][key])
      (line,) = ax.plot(gens, y, style, label=arm)
      if key == "kl":
        se = np.array(arms[arm]["kl_se"])
        ax.fill_between(gens, y - se, y + se, alpha=0.2, color=line.get_color())
    ax.axhline(ref, color="k", linestyle="--", label="true process")
    ax.set_xlabel("generation")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
  fig.suptitle(
    "Model collapse (Shumailov et al., Nature 2024) on a Markov chain: "
    "each generation trained on the previous generation's samples"
  )
  fig.tight_layout()
  path = os.path.join(workdir, f"{NAME}.png")
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def paragraph(results: dict) -> str:
  """What the run measured, and whether it matches the paper's claims."""
  c, t = results["config"], results["true"]
  s, r = results["arms"]["synthetic"], results["arms"]["real10"]
  G, R = results["generations"][-1], c["replicates"]
  late = slice(G // 2 + 1, None)  # the second half of the generations
  span = f"generations {G // 2 + 1}-{G}"

  def late_mean(arm, key):  # per replicate
    return np.mean(np.array(arm[key + "_replicates"])[:, late], axis=1)

  kl_faster = int(np.sum(late_mean(s, "kl") > late_mean(r, "kl")))
  ppl_faster = int(np.sum(late_mean(s, "real_ppl") > late_mean(r, "real_ppl")))
  gen0_tail = np.array(s["tail_mass_replicates"])[:, 0]
  shrinks = int(np.sum(late_mean(s, "tail_mass") < gen0_tail))
  below_real10 = int(
    np.sum(late_mean(s, "tail_mass") < late_mean(r, "tail_mass"))
  )
  se = "across replicates" if R > 1 else "Monte-Carlo"
  kl = lambda arm, g: f"{arm['kl'][g]:.2f} +- {arm['kl_se'][g]:.2f}"
  pct = lambda x: f"{100 * x:.1f}%"
  mid = lambda arm, k: pct(np.mean(arm[k][late]))
  verdict = lambda k: "all" if k == R else f"{k} of"
  return "\n".join(
    [
      f"The real data are sequences of {c['length']} symbols from a Markov "
      f"chain over {c['num_states']} symbols (`rlx.data.markov`) whose "
      f"every row has {c['num_common']} common successors, "
      f"{c['num_rare']} rare ones (true probability {c['rare_range'][0]:g} "
      f"to {c['rare_range'][1]:g}) and impossible ones, so that "
      "log-likelihoods are exact: the true per-token perplexity is "
      f"{t['real_ppl']:.3f}. Each generation is a "
      f"{c['num_params'] / 1e3:.0f}k-parameter rlx transformer trained from "
      f"the same initialisation on {c['num_train']} sequences for "
      f"{c['epochs']} epochs (`rlx.train.lm.LMTrainer`); generation n + 1 "
      "trains on samples of generation n (temperature 1), with, in the "
      f"`real10` arm, {pct(c['real_fraction'])} of them replaced by fresh "
      f"real sequences. Means over {R} independent replicate(s), measured "
      f"on {c['num_heldout']} held-out real sequences, generation 0 -> "
      f"generation {G} (synthetic / real10):",
      "",
      f"- perplexity of real data: {s['real_ppl'][0]:.3f} -> "
      f"{s['real_ppl'][G]:.3f} / {r['real_ppl'][G]:.3f};",
      "- KL(true || model) in nats per sequence, a Monte-Carlo estimate "
      "over the held-out sequences (exact log p, exact log q), +- one "
      f"standard error ({se}): {kl(s, 0)} -> {kl(s, G)} / {kl(r, G)};",
      "- mass the model gives to the rare transitions after real contexts "
      f"(truth {pct(t['tail_mass'])}): {pct(s['tail_mass'][0])} -> "
      f"{pct(s['tail_mass'][G])} / {pct(r['tail_mass'][G])}; mean over "
      f"{span} {mid(s, 'tail_mass')} / {mid(r, 'tail_mass')};",
      "- share of the model's samples that are rare real sequences (possible "
      "and in the real data's lowest decile of true probability; truth "
      f"{pct(t['tail_mass_seq'])}): {pct(s['tail_mass_seq'][0])} -> "
      f"{pct(s['tail_mass_seq'][G])} / {pct(r['tail_mass_seq'][G])};",
      "- mass on impossible transitions (truth 0): "
      f"{pct(s['impossible_mass'][0])} -> {pct(s['impossible_mass'][G])} / "
      f"{pct(r['impossible_mass'][G])}; samples holding an impossible "
      f"transition: {pct(s['sample_invalid'][0])} -> "
      f"{pct(s['sample_invalid'][G])} / {pct(r['sample_invalid'][G])};",
      "- the histograms (each generation's samples scored by generation 0): "
      "samples above the real data's 99th percentile of perplexity "
      f"{pct(s['sample_above_real_p99'][0])} -> "
      f"{pct(s['sample_above_real_p99'][G])} / "
      f"{pct(r['sample_above_real_p99'][G])}, below its 1st percentile "
      f"{pct(s['sample_below_real_p1'][0])} -> "
      f"{pct(s['sample_below_real_p1'][G])} / "
      f"{pct(r['sample_below_real_p1'][G])}.",
      "",
      f"Over {span}, the KL is higher without real data than with 10% of "
      f"it in {verdict(kl_faster)} {R} replicate(s), and so is the "
      f"real-data perplexity in {verdict(ppl_faster)} {R}. The mass on the "
      f"truth's rare transitions is below its generation-0 value in "
      f"{verdict(shrinks)} {R} replicate(s) of the synthetic arm, and below "
      f"the real10 arm's in {verdict(below_real10)} {R}."
      + (
        ""
        if shrinks == R
        else " So the paper's loss of the tails does not show in this "
        "transition-level mass at this scale; a likely reason is that the "
        "model's own errors spread mass over all unlikely successors, rare "
        "and impossible alike (the impossible mass above), which offsets "
        "the finite-sample loss of rare events."
      ),
    ]
  )


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
