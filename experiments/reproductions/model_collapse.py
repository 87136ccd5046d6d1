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
from experiments.reproductions.reports.model_collapse import (  # noqa: E402
  figure,
  paragraph,
)
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


def measure(graphdef, params, chain, heldout, rare_KxK, possible_KxK):
  """real_ppl, kl (+ se) and the tail / impossible masses on held-out real
  sequences."""
  logq, count = lm.sequence_logprobs(graphdef, params, heldout)
  logp = chain.token_logprob(heldout, OFFSET)
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
    logp_true = chain.token_logprob(samples, OFFSET)
    valid = np.isfinite(logp_true)
    ppl0 = lm.perplexities(graphdef, gen0, samples)
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
  gen0, loss0 = train(
    chain.token_rows(chain.sample(n, L, rng), BOS, OFFSET), 0, ARMS[0]
  )
  # The real data's own spread under generation 0, for the histograms.
  heldout_ppl0 = lm.perplexities(graphdef, gen0, heldout)
  real_p1, real_p99 = np.quantile(heldout_ppl0, [0.01, 0.99])
  first = evaluate(gen0, loss0, n, jax.random.fold_in(key, 0))
  arms, hists = {}, {}
  for a, arm in enumerate(ARMS):
    rows = {k: [v] for k, v in first[0].items()}
    samples, hists[arm] = first[1], [first[2]]
    for g in range(1, c["generations"] + 1):
      real_rows = round(c["real_fraction"] * n) if arm == "real10" else 0
      fresh = chain.sample(real_rows, L, np.random.default_rng([seed, a, g]))
      data = np.concatenate(
        [samples[: n - real_rows], chain.token_rows(fresh, BOS, OFFSET)]
      )
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
  heldout = chain.token_rows(
    chain.sample(c["num_heldout"], L, rng), BOS, OFFSET
  )
  # Rare real sequences: the lowest decile of true probability.
  heldout_logp = chain.token_logprob(heldout, OFFSET)
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
    rows = common.over_replicates(per)
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


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
