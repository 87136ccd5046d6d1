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
- the per-token perplexity of each generation's own samples under the
  generation-0 model (the paper's histograms).
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
)
QUICK = dict(num_train=1000, generations=4, num_heldout=1000, epochs=6)

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
  rare = (P > 0) & (P < c["rare_threshold"])
  possible = P > 0
  L, n = c["length"], c["num_train"]
  heldout = to_tokens(chain.sample(c["num_heldout"], L, rng))
  true_nll = chain.entropy(L)
  true = dict(
    real_ppl=float(np.exp(true_nll / L)),
    entropy=true_nll,
    tail_mass=chain.expected_transition_mass(L, rare),
    impossible_mass=0.0,
    num_rare_transitions=int(rare.sum()),
  )

  config = models.preset(
    "tiny",
    vocab_size=c["num_states"] + OFFSET,
    hidden_size=c["hidden_size"],
    intermediate_size=2 * c["hidden_size"],
    num_layers=c["num_layers"],
    max_position_embeddings=2 * (L + 1),
  )
  graphdef, init = nnx.split(models.init_model(config, c["seed"]))
  trainer = lm.LMTrainer(
    graphdef,
    algos.OptimizerConfig(learning_rate=c["learning_rate"]),
    batch_size=c["batch_size"],
  )
  steps = c["epochs"] * n // c["batch_size"]
  sampler = decoding.make_sampler(
    graphdef, init, decoding.SamplingConfig(max_new_tokens=L, temperature=1.0)
  )
  prompt = np.full((n, 1), BOS, np.int32)

  def sample(params, key):
    out = sampler(params, prompt, np.ones_like(prompt, bool), key)
    return np.concatenate([prompt, np.asarray(out.tokens)], axis=1)

  def train(data, generation, arm):
    seed = c["seed"] * 1000 + 100 * ARMS.index(arm) + generation
    params, losses = trainer.fit(init, data, steps=steps, seed=seed)
    return params, float(losses[-steps // c["epochs"] :].mean())

  def evaluate(params, loss, real_rows, key):
    """The generation's measurements and its `n` samples."""
    samples = sample(params, key)
    m = measure(graphdef, params, chain, heldout, rare, possible)
    logp_true = true_logprob(chain, samples)
    valid = np.isfinite(logp_true)
    m.update(
      train_loss=loss,
      real_rows=real_rows,
      sample_ppl_gen0=per_token_ppl(graphdef, gen0, samples).tolist(),
      sample_invalid=float(1.0 - valid.mean()),
      sample_true_nll=float(-logp_true[valid].mean() / L),
    )
    return m, samples

  key = jax.random.key(c["seed"])
  gen0, loss0 = train(to_tokens(chain.sample(n, L, rng)), 0, ARMS[0])
  first, first_samples = evaluate(gen0, loss0, n, jax.random.fold_in(key, 0))
  arms = {}
  for a, arm in enumerate(ARMS):
    rows = {k: [v] for k, v in first.items()}
    samples = first_samples
    for g in range(1, c["generations"] + 1):
      real_rows = round(c["real_fraction"] * n) if arm == "real10" else 0
      fresh = chain.sample(
        real_rows, L, np.random.default_rng([c["seed"], a, g])
      )
      data = np.concatenate([samples[: n - real_rows], to_tokens(fresh)])
      params, loss = train(data, g, arm)
      m, samples = evaluate(
        params, loss, real_rows, jax.random.fold_in(key, 100 * (a + 1) + g)
      )
      for k, v in m.items():
        rows[k].append(v)
      print(
        f"{arm} gen {g}: real ppl {m['real_ppl']:.3f} kl {m['kl']:.3f} "
        f"tail {m['tail_mass']:.4f} impossible {m['impossible_mass']:.4f} "
        f"invalid samples {m['sample_invalid']:.3f}",
        flush=True,
      )
    arms[arm] = rows

  results = dict(
    generations=list(range(c["generations"] + 1)),
    arms=arms,
    true=true,
    heldout_gen0_ppl=per_token_ppl(graphdef, gen0, heldout).tolist(),
    config={**c, "quick": quick, "steps_per_generation": steps},
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
  all_ppl = np.concatenate(
    [np.concatenate(arms[a]["sample_ppl_gen0"]) for a in ARMS]
  )
  lo, hi = np.percentile(all_ppl, 0.01), all_ppl.max()
  bins = np.geomspace(lo, hi, 60)
  cmap = plt.get_cmap("viridis")
  titles = {
    "synthetic": "(b) no real data kept",
    "real10": "(c) 10% fresh real data each generation",
  }
  for i, arm in enumerate(ARMS):
    ax = fig.add_subplot(grid[0, 3 * i : 3 * i + 3])
    for g in gens:
      ax.hist(
        arms[arm]["sample_ppl_gen0"][g],
        bins=bins,
        histtype="step",
        density=True,
        color=cmap(g / max(gens[-1], 1)),
        label=f"generation {g}",
      )
    ax.hist(
      results["heldout_gen0_ppl"],
      bins=bins,
      histtype="step",
      density=True,
      color="red",
      linestyle="--",
      label="real data",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
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
      ax.plot(gens, y, style, label=arm)
      if key == "kl":
        se = np.array(arms[arm]["kl_se"])
        ax.fill_between(gens, y - se, y + se, alpha=0.2)
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
  a, t = results["arms"], results["true"]
  s, r = a["synthetic"], a["real10"]
  last = results["generations"][-1]
  return f"(draft) {s['real_ppl'][last]} {r['real_ppl'][last]} {t}"


if __name__ == "__main__":
  common.main(NAME, run, paragraph)
