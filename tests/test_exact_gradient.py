"""The exact policy gradient vs what each rlx estimator updates on average.

A real rlx transformer with a 3-token vocabulary (0 is EOS) answers two
one-token prompts with at most H = 4 tokens: 31 possible completions per
prompt, so the objective J = mean_q sum_y pi(y | q) r(y) and every
expectation below are exact sums over the 62 rows. Rewards are binary:
prompt A is right when its first token is 1, prompt B when its first two
tokens are 2, 2 (a harder question).

For each estimator, M groups of G samples per prompt are drawn from pi and
pushed through rlx's own `prepare_batch` (advantages) and loss, and the
gradient of the loss with respect to the token log-probs is contracted with
the Jacobian of rlx's `token_logprobs`: M independent estimates of the
update. Their mean is compared with the closed form of docs/grpo.md
(computed independently, from the model's full softmax and a binomial sum)
within a Monte-Carlo bound, and the closed forms with the true gradient.
Run this file as a script to print the measured numbers.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from rlx import algos
from rlx.algos import losses
from rlx.models import ModelConfig, init_model

V, H, G, M = 3, 4, 8, 16000  # vocab, horizon, group size, sampled batches
EOS, PROMPTS = 0, (1, 2)
Q = len(PROMPTS)


def _completions():
  """All completions: k non-EOS tokens then EOS (k < H), or H non-EOS."""
  out = []
  for k in range(H + 1):
    for body in itertools.product((1, 2), repeat=k):
      out.append(body + (EOS,) if k < H else body)
  return out


def _reward(prompt, completion):
  if prompt == 1:
    return float(completion[0] == 1)
  return float(completion[:2] == (2, 2))


def _model_config():
  return ModelConfig(
    vocab_size=V,
    hidden_size=8,
    intermediate_size=16,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    head_dim=4,
    init_std=0.45,
  )


def jacobian_rows(f, x):
  """d f / d x as [f.size, x.size], one VJP per output (no vmap)."""
  y, vjp = jax.vjp(f, x)
  eye = jnp.eye(y.size, dtype=y.dtype).reshape(-1, *y.shape)
  return jax.lax.map(lambda ct: vjp(ct)[0], eye)


class Problem:
  """The enumerated rows, exact quantities, and rlx's log-prob Jacobian.

  Everything that differentiates the model is one jitted function (one
  compile). rlx's log-prob path has a custom VJP (no forward mode), so its
  Jacobian is taken one row at a time (`lax.map` over VJPs):
  jit(vmap(vjp)) through the model (`jax.jacrev`) gave wrong rows on CPU
  with jax 0.10.2.
  """

  def __init__(self, seed=0):
    model = init_model(_model_config(), seed)
    self.graphdef, self.params = nnx.split(model)
    comps = _completions()
    rows = [(q, c) for q in PROMPTS for c in comps]
    Y, T = len(rows), 1 + H
    self.tokens = np.zeros((Y, T), np.int32)
    self.cmask = np.zeros((Y, T), bool)
    for i, (q, c) in enumerate(rows):
      self.tokens[i, 0] = q
      self.tokens[i, 1 : 1 + len(c)] = c
      self.cmask[i, 1 : 1 + len(c)] = True
    self.mask = self.cmask.copy()
    self.mask[:, 0] = True
    self.prompt = np.array([PROMPTS.index(q) for q, _ in rows])
    self.length = self.cmask.sum(1).astype(np.float64)
    self.r = np.array([_reward(q, c) for q, c in rows])
    self.flat, self.unravel = ravel_pytree(self.params)
    # The reference policy: the same model with perturbed weights.
    noise = np.random.default_rng(seed + 1).normal(size=self.flat.shape)
    ref_flat = self.flat + 0.3 * jnp.asarray(noise, jnp.float32)
    out = jax.tree.map(np.asarray, jax.jit(self._exact)(self.flat, ref_flat))
    self.logp_seq = out["seq_logp"].astype(np.float64)
    self.pi = np.exp(self.logp_seq)
    self.score = out["score"].astype(np.float64)  # grad log pi(y), [Y, P]
    self.rlx_logp, self.ref_logp = out["rlx_logp"], out["ref_logp"]
    self.jac = out["jac"].astype(np.float64).reshape(Y * T, -1)
    self.autodiff_grad_J = out["grad_J"]
    self.kl_grads = out["kl_grads"]
    self.p = np.array([self.pi[self.prompt == q] @ self.r[self.prompt == q]
                       for q in range(Q)])  # fmt: skip
    # grad p_q = E[r grad log pi | q]; grad J = mean_q grad p_q.
    self.grad_p = self.expected(self.r[:, None] * self.score)
    self.grad_J = self.grad_p.mean(0)

  def log_softmax(self, flat):
    logits, _ = nnx.merge(self.graphdef, self.unravel(flat))(
      self.tokens, self.mask
    )
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)[:, :-1]

  def seq_logp(self, flat):
    """log pi(y | q) of every row, [Y]: sum over completion positions t of
    log softmax(logits at t - 1)[token t]. Independent of rlx.losses."""
    lsm = self.log_softmax(flat)
    tok = jnp.take_along_axis(lsm, self.tokens[:, 1:, None], -1)[..., 0]
    return jnp.sum(jnp.where(self.cmask[:, 1:], tok, 0.0), axis=1)

  def rlx_token_logprobs(self, flat):
    return algos.token_logprobs(
      self.graphdef, self.unravel(flat), self.tokens, self.mask, chunk_size=None
    )

  def J(self, flat):
    """J = mean over prompts of P(right)."""
    return jnp.sum(jnp.exp(self.seq_logp(flat)) * self.r) / Q

  def _exact(self, flat, ref_flat):
    seq_logp = self.seq_logp(flat)
    pi = jax.lax.stop_gradient(jnp.exp(seq_logp)) / Q  # d(s) held fixed
    ref_lsm = jax.lax.stop_gradient(self.log_softmax(ref_flat))
    ref_logp = self.rlx_token_logprobs(ref_flat)
    at = self.cmask[:, 1:]

    def state_kl(f, reverse):
      """sum_y d(y) sum_t KL at the state before token t (full softmax)."""
      lsm = self.log_softmax(f)
      a, b = (ref_lsm, lsm) if reverse else (lsm, ref_lsm)
      kl = jnp.sum(jnp.exp(a) * (a - b), -1)
      return jnp.sum(pi * jnp.sum(jnp.where(at, kl, 0.0), 1))

    def estimator(f, e):
      k = losses.kl_estimate(self.rlx_token_logprobs(f), ref_logp, e)
      return jnp.sum(pi * jnp.sum(jnp.where(self.cmask, k, 0.0), 1))

    seq_ref = jnp.sum(jnp.where(self.cmask, ref_logp, 0.0), 1)
    true_kl = lambda f: (
      jnp.sum(jnp.exp(self.seq_logp(f)) * (self.seq_logp(f) - seq_ref)) / Q
    )
    kl_fns = {
      "reverse": functools.partial(state_kl, reverse=True),
      "forward": functools.partial(state_kl, reverse=False),
      "true": true_kl,
      **{e: functools.partial(estimator, e=e) for e in losses.KL_ESTIMATORS},
    }
    return {
      "seq_logp": seq_logp,
      "score": jax.jacfwd(self.seq_logp)(flat),
      "rlx_logp": self.rlx_token_logprobs(flat),
      "jac": jacobian_rows(self.rlx_token_logprobs, flat),
      "ref_logp": ref_logp,
      "grad_J": jax.grad(self.J)(flat),
      "kl_grads": {k: jax.grad(f)(flat) for k, f in kl_fns.items()},
    }

  def expected(self, f):
    """sum_y pi(y | q) f(y), per prompt: [Q, ...]."""
    return np.stack([np.tensordot(self.pi * (self.prompt == q), f, 1)
                     for q in range(Q)])  # fmt: skip

  def sample(self, m, seed):
    """[m, Q * G] row indices: G draws from pi(. | q) for each prompt."""
    rng = np.random.default_rng(seed)
    idx = []
    for q in range(Q):
      rows = np.flatnonzero(self.prompt == q)
      pi = self.pi[rows] / self.pi[rows].sum()
      idx.append(rows[rng.choice(len(rows), size=(m, G), p=pi)])
    return np.concatenate(idx, axis=1)


@functools.lru_cache(maxsize=1)
def problem():
  return Problem()


# Closed forms (docs/grpo.md) --------------------------------------------------


def np_group_advantage(name, rewards):
  """The advantage of sample 0 of one group, numpy (no rlx)."""
  r = np.asarray(rewards, np.float64)
  if name == "reinforce":
    return r[0]
  if name == "running_mean":
    return r[0] - 0.3
  if name == "rloo":
    return r[0] - r[1:].mean()
  centred = r[0] - r.mean()
  if name in ("group_mean", "none"):
    return centred
  std = r.std(ddof=1)
  return 0.0 if std <= 1e-3 else centred / (std + 1e-4)


def binomial_weights(name, p):
  """(a1, a0) = E[A | r_i = 1], E[A | r_i = 0] for binary rewards, with
  the other G - 1 rewards ~ Bernoulli(p): an exact binomial sum."""
  a1 = a0 = 0.0
  for k in range(G):
    pk = math.comb(G - 1, k) * p**k * (1 - p) ** (G - 1 - k)
    others = [1.0] * k + [0.0] * (G - 1 - k)
    a1 += pk * np_group_advantage(name, [1.0, *others])
    a0 += pk * np_group_advantage(name, [0.0, *others])
  return a1, a0


def predicted_update(prob, name, weight, norm):
  """E[-grad loss] = norm / Q sum_q E_y[(a1_q r + a0_q (1 - r)) w(y)
  grad log pi(y)]: exact, because A depends on y only through r."""
  out = 0.0
  for q in range(Q):
    a1, a0 = binomial_weights(name, prob.p[q])
    coef = (a1 * prob.r + a0 * (1 - prob.r)) * weight
    out = out + prob.expected(coef[:, None] * prob.score)[q]
  return norm * out / Q


# Monte Carlo through rlx ------------------------------------------------------


def rlx_updates(prob, algo, idx, *, running_mean=0.0, with_ref=False):
  """[M, P] estimates -grad(loss) of one batch each, through rlx's
  `prepare_batch` and loss (chain rule through rlx's log-prob Jacobian)."""
  cfg = algo.config

  def one(rows):
    batch = {
      "rewards": jnp.asarray(prob.r, jnp.float32)[rows],
      "completion_mask": jnp.asarray(prob.cmask)[rows],
    }
    if with_ref:
      batch["ref_logprobs"] = jnp.asarray(prob.ref_logp)[rows]
    batch, _ = cfg.prepare_batch(
      batch, G, running_mean=jnp.float32(running_mean)
    )
    loss = lambda lp: cfg.loss({"logp": lp}, batch, {})[0]
    coef = jax.grad(loss)(jnp.asarray(prob.rlx_logp)[rows])
    # Scatter onto the enumerated rows: [Y, T] coefficients of d logp.
    return jnp.zeros(prob.rlx_logp.shape).at[rows].add(coef)

  coef = jax.jit(jax.vmap(one))(idx)
  return -np.asarray(coef.reshape(len(idx), -1), np.float64) @ prob.jac


def check_mean(samples, target, z=4.0):
  """Asserts the mean of [M, P] samples is `target` within Monte Carlo
  error: along the target and the samples' mean directions |diff| < z
  standard errors, and ||diff||^2 < z^2 tr(Cov) / M (a chi-square bound
  that holds whatever the covariance). Returns (diff norm, noise norm)."""
  m = len(samples)
  mean = samples.mean(0)
  diff = mean - target
  noise2 = samples.var(0, ddof=1).sum() / m
  for d in (target, mean):
    u = d / np.linalg.norm(d)
    se = (samples @ u).std(ddof=1) / math.sqrt(m)
    assert abs(diff @ u) < z * se, (diff @ u, se)
  assert diff @ diff < z**2 * noise2, (diff @ diff, noise2)
  return float(np.linalg.norm(diff)), float(math.sqrt(noise2))


def cosine(a, b):
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# The setting ------------------------------------------------------------------


def test_enumeration_is_the_whole_distribution():
  """Every completion is enumerated: probabilities sum to 1 per prompt, and
  rlx's token log-probs sum to the independent sequence log-probs."""
  prob = problem()
  for q in range(Q):
    np.testing.assert_allclose(prob.pi[prob.prompt == q].sum(), 1.0, 1e-5)
  rlx_seq = (prob.rlx_logp * prob.cmask).sum(1)
  np.testing.assert_allclose(rlx_seq, prob.logp_seq, rtol=1e-5, atol=1e-5)
  # The policy-gradient theorem: grad J = E[r grad log pi] (as used for
  # grad_J everywhere) equals the gradient of the enumerated J.
  np.testing.assert_allclose(
    prob.autodiff_grad_J, prob.grad_J, rtol=1e-4, atol=1e-7
  )
  assert prob.p[1] < 0.1 < 0.5 < prob.p[0]  # B is the hard question


# REINFORCE, baselines, RLOO: unbiased -----------------------------------------

UNBIASED = {
  # name: (make(...) args, advantage name, scale of grad J)
  "reinforce": (("reinforce",), {}, "reinforce", 1.0),
  "running_mean": (("reinforce",), {"baseline": "running_mean"}, None, 1.0),
  "rloo": (("rloo",), {}, "rloo", 1.0),
  "group_mean": (("reinforce_baseline",), {}, "group_mean", (G - 1) / G),
  "dr_grpo": (("dr_grpo",), {"max_completion_length": H}, "none", None),
}


@pytest.mark.parametrize("name", list(UNBIASED))
def test_unbiased_estimators(name):
  """E[update] = c grad J exactly: c = 1 for REINFORCE (with or without a
  fixed baseline) and RLOO, (G - 1) / G for the group mean taken with the
  sample itself, (G - 1) / (G H) for Dr. GRPO (its loss divides by the
  completion budget H)."""
  prob = problem()
  args, kw, adv_name, c = UNBIASED[name]
  c = (G - 1) / (G * H) if name == "dr_grpo" else c
  algo = algos.make(*args, **kw)
  if adv_name is not None:
    norm = 1 / H if name == "dr_grpo" else 1.0
    pred = predicted_update(prob, adv_name, 1.0, norm)
    np.testing.assert_allclose(pred, c * prob.grad_J, rtol=1e-4, atol=1e-7)
  samples = rlx_updates(prob, algo, prob.sample(M, seed=1), running_mean=0.3)
  check_mean(samples, c * prob.grad_J)
  # Power: a 5% error in the scale would not pass.
  with pytest.raises(AssertionError):
    check_mean(samples, 0.95 * c * prob.grad_J)


# GRPO: std scaling and length normalisation -----------------------------------


def grpo_std_weights():
  """c(p) = a1 - a0 of GRPO's std-scaled advantage, per prompt."""
  prob = problem()
  return np.array([np.subtract(*binomial_weights("std", p)) for p in prob.p])


def test_grpo_std_scaling_reweights_questions_by_difficulty():
  """With a token-sum loss (`dr_grpo` aggregation) and std scaling, the
  update is sum_q c(p_q) grad p_q / (Q H): each question weighted by
  c(p) = a1 - a0 ~ (1 - 1/G) / std, not equally as in grad J. The hard
  question B (small p) gets more weight than A; Dr. GRPO's c is (G - 1) / G
  for both. The weights are measured by regressing each sampled update on
  (grad p_A, grad p_B)."""
  prob = problem()
  c = grpo_std_weights()
  pred = predicted_update(prob, "std", 1.0, 1 / H)
  np.testing.assert_allclose(
    pred, (c[:, None] * prob.grad_p).sum(0) / (Q * H), rtol=1e-4, atol=1e-7
  )
  assert c[1] / c[0] > 1.2  # B is up-weighted (see docs/grpo.md)
  algo = algos.make(
    "grpo", loss_type="dr_grpo", max_completion_length=H, beta=0.0
  )
  samples = rlx_updates(prob, algo, prob.sample(M, seed=2))
  check_mean(samples, pred)
  weights = samples @ np.linalg.pinv(prob.grad_p) * (Q * H)  # [M, Q]
  mean = weights.mean(0)
  se = weights.std(0, ddof=1) / math.sqrt(M)
  assert np.all(np.abs(mean - c) < 4 * se), (mean, c, se)
  ratio = weights[:, 1].mean() / weights[:, 0].mean()
  assert ratio > 1 + 4 * np.hypot(se[0] / mean[0], se[1] / mean[1]) * ratio
  # The bias is far outside the Monte Carlo error: the same check rejects
  # grad J (best scaled) as the mean of these samples.
  scale = (pred @ prob.grad_J) / (prob.grad_J @ prob.grad_J)
  with pytest.raises(AssertionError):
    check_mean(samples, scale * prob.grad_J)


def length_gradients(prob):
  """grad E[|y| | right, q = A] and grad E[|y| | wrong, q = A], [2, P], by
  the score identity grad E[f] = E[f grad log pi] on the enumeration."""
  out = []
  for w in (prob.r, 1 - prob.r):
    w = prob.pi * w * (prob.prompt == 0)
    mean_len = w @ prob.length / w.sum()
    out.append(w * (prob.length - mean_len) @ prob.score / w.sum())
  return np.stack(out)


def length_rates(prob, u):
  """d E[|y| | right, q=A] and d E[|y| | wrong, q=A] along u, per unit
  of d J along u (exact, by differentiating the enumeration)."""
  return list(length_gradients(prob) @ u / (prob.grad_J @ u))


def test_grpo_length_normalisation_lengthens_wrong_answers():
  """GRPO's per-sequence token mean weights each completion by 1/|y|:
  E[update] = 1/Q sum_q E[(a1 r + a0 (1 - r)) / |y| grad log pi(y)], which
  (advantage without std) is (G - 1) / G times the gradient of the
  surrogate 1/Q sum_q (1 - p_q) E[r / |y|] - p_q E[(1 - r) / |y|] at fixed
  p: short right answers up, short wrong answers down. Per unit of reward
  gained, it lengthens wrong answers where grad J shortens them."""
  prob = problem()
  pred = predicted_update(prob, "none", 1 / prob.length, 1.0)

  p = prob.p[prob.prompt]
  surrogate = prob.pi / prob.length * ((1 - p) * prob.r - p * (1 - prob.r))
  grad_s = surrogate @ prob.score / Q
  np.testing.assert_allclose(pred, (G - 1) / G * grad_s, rtol=1e-3, atol=1e-6)
  algo = algos.make("grpo", scale_rewards="none", beta=0.0)
  samples = rlx_updates(prob, algo, prob.sample(M, seed=3))
  check_mean(samples, pred)
  _, wrong = length_rates(prob, pred)
  _, wrong0 = length_rates(prob, prob.grad_J)
  assert wrong > 0 > wrong0 and wrong - wrong0 > 1.0, (wrong, wrong0)
  scale = (pred @ prob.grad_J) / (prob.grad_J @ prob.grad_J)
  with pytest.raises(AssertionError):
    check_mean(samples, scale * prob.grad_J)


def test_grpo_full_matches_its_closed_form():
  """Std scaling and the token mean together (rlx's "grpo" preset without
  KL): still exactly the closed form with a1, a0 of the std advantage."""
  prob = problem()
  pred = predicted_update(prob, "std", 1 / prob.length, 1.0)
  samples = rlx_updates(
    prob, algos.make("grpo", beta=0.0), prob.sample(M, seed=4)
  )
  check_mean(samples, pred)


def test_other_loss_types_on_policy():
  """On-policy (ratio 1), CISPO (epsilon_high >= 1), SAPO and VESPO weight
  the token gradient by exactly 1: batch by batch, their update is that of
  the clipped surrogate with the same aggregation."""
  prob = problem()
  idx = prob.sample(256, seed=6)
  for name, same in [("cispo", "dapo"), ("sapo", "grpo"), ("vespo", "dapo")]:
    got = rlx_updates(prob, algos.make(name), idx)
    want = rlx_updates(prob, algos.make("grpo", loss_type=same, beta=0), idx)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# KL estimators ----------------------------------------------------------------


def test_kl_estimator_values():
  """k1 and k3 are unbiased for KL(pi || ref) of whole completions; k2 is
  not (exact expectations over the enumeration)."""
  prob = problem()
  seq_ref = (prob.ref_logp * prob.cmask).sum(1)
  kl = prob.expected(prob.logp_seq - seq_ref)
  est = {}
  for e in losses.KL_ESTIMATORS:
    k = np.asarray(losses.kl_estimate(prob.rlx_logp, prob.ref_logp, e))
    est[e] = prob.expected((k * prob.cmask).sum(1))
  np.testing.assert_allclose(est["k1"], kl, rtol=1e-4)
  np.testing.assert_allclose(est["k3"], kl, rtol=1e-4)
  assert np.all(np.abs(est["k2"] - kl) > 0.01 * kl)  # 1e-4 for k1, k3


def test_kl_estimator_gradients_as_losses():
  """As a loss term, sum_t k(logp_t) on samples of pi has expected gradient
  (the samples' distribution d held fixed):
    k1: 0;  k2: grad sum_s d(s) KL(pi_s || ref_s);
    k3: grad sum_s d(s) KL(ref_s || pi_s)   (the reverse KL);
  neither is grad KL(pi || ref) of whole completions (exact: `_exact`)."""
  g = {k: np.asarray(v, np.float64) for k, v in problem().kl_grads.items()}
  atol = 1e-5 * np.abs(g["reverse"]).max()
  np.testing.assert_allclose(g["k1"], 0.0, atol=atol)
  np.testing.assert_allclose(g["k2"], g["forward"], rtol=1e-3, atol=atol)
  np.testing.assert_allclose(g["k3"], g["reverse"], rtol=1e-3, atol=atol)
  assert cosine(g["reverse"], g["true"]) < 0.99
  assert cosine(g["forward"], g["true"]) < 0.99


def test_k3_gradient_through_the_grpo_loss():
  """The KL term of rlx's GRPO loss (beta, k3, constant rewards so A = 0,
  dr_grpo aggregation) updates on average along -beta / H grad sum_s d(s)
  KL(ref_s || pi_s)."""
  prob = problem()
  beta = 0.5
  algo = algos.make(
    "grpo", beta=beta, loss_type="dr_grpo", max_completion_length=H
  )
  r = prob.r
  prob.r = np.zeros_like(r)
  try:
    idx = prob.sample(M // 4, seed=5)
    samples = rlx_updates(prob, algo, idx, with_ref=True)
  finally:
    prob.r = r
  reverse = np.asarray(prob.kl_grads["reverse"], np.float64)
  check_mean(samples, -beta / H * reverse)


if __name__ == "__main__":
  prob = problem()
  print("p(right | A), p(right | B):", prob.p)
  c = grpo_std_weights()
  print("GRPO std weights c(p):", c, "ratio", c[1] / c[0])
  print("Dr. GRPO weights:", (G - 1) / G)
  std = predicted_update(prob, "std", 1.0, 1 / H)
  length = predicted_update(prob, "none", 1 / prob.length, 1.0)
  full = predicted_update(prob, "std", 1 / prob.length, 1.0)
  for name, u in [("std", std), ("length", length), ("grpo", full)]:
    print(name, "cosine with grad J:", cosine(u, prob.grad_J))
    print("  d E[|y| | right, wrong] / dJ:", length_rates(prob, u))
  print(
    "grad J:  d E[|y| | right, wrong] / dJ:", length_rates(prob, prob.grad_J)
  )
  g = {k: np.asarray(v, np.float64) for k, v in prob.kl_grads.items()}
  print("cos(k3 grad, true KL grad):", cosine(g["reverse"], g["true"]))
  print("cos(k2 grad, true KL grad):", cosine(g["forward"], g["true"]))
