"""End-to-end updates on a tiny model: direction, NaN skip, compile once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlx import algos
from rlx.models import init_model, make_mesh, preset

N, T, P, G = 8, 16, 6, 4


@pytest.fixture(scope="module")
def setup():
  model = init_model(preset("tiny"), 0)
  graphdef, params = nnx.split(model)
  mesh = make_mesh(devices=jax.devices()[:1])
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, (N, T)).astype(np.int32)
  mask = np.ones((N, T), bool)
  mask[1, :2] = False  # left padding
  comp = np.zeros((N, T), bool)
  comp[:, P:] = True
  comp[3, T - 3 :] = False  # a shorter completion
  logp = _logprobs(graphdef, params, tokens, mask)
  rewards = np.array([1, 0, 0, 1, 0, 1, 1, 1], np.float32)
  batch = dict(
    tokens=tokens,
    mask=mask,
    completion_mask=comp,
    rewards=rewards,
    old_logprobs=np.asarray(logp),
    ref_logprobs=np.asarray(logp),
  )
  return graphdef, params, mesh, batch


def _prepared(algo, graphdef, state, batch):
  if algo.uses_value_head:
    batch = dict(batch)
    batch["old_values"] = _values(
      graphdef, state.params, state.value_head, batch["tokens"], batch["mask"]
    )
  batch, _ = algo.prepare_batch(batch, G)
  return {k: np.asarray(v) for k, v in batch.items()}


_logprobs = jax.jit(algos.token_logprobs, static_argnums=0)
_values = jax.jit(algos.values, static_argnums=0)


def _seq_logp(graphdef, params, batch):
  logp = _logprobs(graphdef, params, batch["tokens"], batch["mask"])
  return np.asarray(jnp.sum(logp * batch["completion_mask"], axis=1))


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
  "name",
  [
    "grpo",
    "ppo",
    pytest.param("rloo", marks=SLOW),
    pytest.param("dapo", marks=SLOW),
    pytest.param("gspo", marks=SLOW),
    pytest.param("reinforce_pp", marks=SLOW),
    pytest.param("cispo", marks=SLOW),
    pytest.param("sapo", marks=SLOW),
    pytest.param("luspo", marks=SLOW),
    pytest.param("vespo", marks=SLOW),
  ],
)
def test_update_moves_logprobs_with_the_advantage(setup, name):
  graphdef, params, mesh, batch = setup
  options = {"epsilon": 0.2} if name in ("gspo", "luspo") else {}
  algo = algos.make(
    name,
    optimizer=algos.OptimizerConfig(learning_rate=3e-3),
    **options,
  )
  state = algos.create_train_state(graphdef, params, algo, mesh)
  batch = _prepared(algo, graphdef, state, batch)
  before = _seq_logp(graphdef, params, batch)
  step = algos.compile_update_step(algo, graphdef, state, batch, mesh)
  state, metrics = step(state, batch, jax.random.key(0))
  assert int(metrics["skipped_steps"]) == 0
  assert np.isfinite(float(metrics["loss"]))
  delta = _seq_logp(graphdef, state.params, batch) - before
  adv = batch["advantages"]
  if adv.ndim == 2:
    adv = (adv * batch["completion_mask"]).sum(1)
  assert np.mean(delta[adv > 0]) > 0, (delta, adv)
  assert np.mean(delta[adv < 0]) < 0, (delta, adv)
  assert int(state.step) == 1


def test_sft_raises_completion_logprobs(setup):
  graphdef, params, mesh, batch = setup
  algo = algos.make("sft", optimizer=algos.OptimizerConfig(learning_rate=3e-3))
  state = algos.create_train_state(graphdef, params, algo, mesh)
  sft_batch = {k: batch[k] for k in ("tokens", "mask", "completion_mask")}
  before = _seq_logp(graphdef, params, sft_batch)
  step = algos.compile_update_step(algo, graphdef, state, sft_batch, mesh)
  state, metrics = step(state, sft_batch, jax.random.key(0))
  assert np.all(_seq_logp(graphdef, state.params, sft_batch) > before)
  want = -(batch["old_logprobs"] * batch["completion_mask"]).sum()
  np.testing.assert_allclose(
    metrics["loss"], want / batch["completion_mask"].sum(), rtol=1e-5
  )


@pytest.fixture(scope="module")
def grpo_step(setup):
  """One compiled GRPO update with 2 epochs x 2 minibatches."""
  graphdef, params, mesh, batch = setup
  algo = algos.make(
    "grpo",
    num_epochs=2,
    num_minibatches=2,
    optimizer=algos.OptimizerConfig(learning_rate=1e-3),
  )
  state = algos.create_train_state(graphdef, params, algo, mesh)
  batch = _prepared(algo, graphdef, state, batch)
  step = algos.compile_update_step(algo, graphdef, state, batch, mesh)
  return algo, step, batch


def test_nan_skips_the_step_and_compiles_once(setup, grpo_step):
  graphdef, params, mesh, _ = setup
  algo, step, batch = grpo_step
  fresh = lambda: algos.create_train_state(graphdef, params, algo, mesh)
  state, m = step(fresh(), batch, jax.random.key(0))
  assert int(m["skipped_steps"]) == 0
  assert int(state.step) == 1
  expected = {
    "loss", "policy_loss", "kl", "entropy", "grad_norm", "approx_kl",
    "clip_frac_low", "clip_frac_high", "ratio_mean", "ratio_min",
    "ratio_max", "advantages_mean", "advantages_std", "skipped_steps",
  }  # fmt: skip
  assert expected <= set(m)

  bad = dict(batch)
  bad["advantages"] = batch["advantages"].copy()
  bad["advantages"][0] = np.nan
  state0 = fresh()
  want_params = jax.tree.map(np.asarray, state0.params)
  want_opt = jax.tree.map(np.asarray, state0.opt_state)
  state, m = step(state0, bad, jax.random.key(1))
  # Row 0 lands in one minibatch per epoch: 2 of the 4 steps are skipped.
  assert int(m["skipped_steps"]) == 2
  assert np.all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))

  bad["advantages"][:] = np.nan
  state, m = step(fresh(), bad, jax.random.key(2))
  assert int(m["skipped_steps"]) == 4
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want_params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(want_opt)):
    np.testing.assert_array_equal(a, b)
  assert step._cache_size() == 1


@pytest.mark.slow
def test_grad_accumulation_matches_one_pass(setup):
  graphdef, params, mesh, batch = setup
  results = []
  for accum in (1, 2):
    algo = algos.make(
      "grpo", optimizer=algos.OptimizerConfig(grad_accum_steps=accum)
    )
    state = algos.create_train_state(graphdef, params, algo, mesh)
    b = _prepared(algo, graphdef, state, batch)
    # The trainer's path: sharding constraints on the mesh (per-row fields
    # such as the advantages split into micro-batches too).
    b = algos.host_local_to_global(b, mesh)
    step = algos.compile_update_step(algo, graphdef, state, b, mesh)
    _, m = step(state, b, jax.random.key(0))
    results.append(m)
  for k in ("loss", "grad_norm", "kl", "entropy"):
    np.testing.assert_allclose(
      results[0][k], results[1][k], rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
  "minibatches,accum", [(2, 1), pytest.param(1, 2, marks=pytest.mark.slow)]
)
def test_dapo_normalises_by_the_whole_batch(setup, minibatches, accum):
  """Each DAPO minibatch / micro-batch loss divides by the rollout batch's
  tokens over the number of chunks, not by its own token count."""
  graphdef, params, mesh, batch = setup
  algo = algos.make(
    "dapo",
    num_minibatches=minibatches,
    shuffle=False,
    log_entropy=False,
    optimizer=algos.OptimizerConfig(learning_rate=0.0, grad_accum_steps=accum),
  )
  state = algos.create_train_state(graphdef, params, algo, mesh)
  b = _prepared(algo, graphdef, state, batch)
  _, m = jax.jit(algos.make_update_step(algo, graphdef))(
    state, b, jax.random.key(0)
  )
  comp, adv = b["completion_mask"], b["advantages"]
  # On-policy, lr 0: every ratio is 1, so the token loss is -A.
  per_seq = -(adv[:, None] * comp).sum(1)
  half = comp.sum() / 2
  want = np.mean([per_seq[:4].sum() / half, per_seq[4:].sum() / half])
  np.testing.assert_allclose(m["loss"], want, rtol=1e-5, atol=1e-7)


def test_make_errors():
  with pytest.raises(ValueError, match="allowed .*'grpo'.*'sft'"):
    algos.make("trpo")
  with pytest.raises(ValueError, match="unknown options \\['bogus'\\]"):
    algos.make("grpo", bogus=1)
  with pytest.raises(ValueError, match="GRPOConfig.loss_type='x'"):
    algos.make("grpo", loss_type="x")
  with pytest.raises(ValueError, match="kl_estimator"):
    algos.make("grpo", kl_estimator="k5")
  with pytest.raises(ValueError, match="UpdateConfig.num_epochs=0"):
    algos.make("ppo", num_epochs=0)
  with pytest.raises(ValueError, match="OptimizerConfig.total_steps"):
    algos.OptimizerConfig(schedule="cosine")
  assert algos.make("grpo").needs_reference
  assert not algos.make("grpo", beta=0.0).needs_reference
  assert not algos.make("dapo").needs_reference
  dapo = algos.make("dapo").config
  assert (dapo.epsilon_low, dapo.epsilon_high) == (0.2, 0.28)
  assert algos.make("ppo").uses_value_head
  assert algos.make("gspo").config.importance_sampling_level == "sequence"


def test_training_loop_passes_the_budget_and_truncation():
  """`make_algo` sets Dr. GRPO's normaliser to rollout.max_new_tokens (TRL's
  max_completion_length) for the GRPO family only; `_rl_batch` flags the
  completions that used the whole budget without a stop."""
  import importlib.util
  import os
  import types

  from rlx.train import config as config_lib
  from rlx.train import rollout as rollout_lib

  path = os.path.join(
    os.path.dirname(__file__), "..", "experiments", "configs",
    "grpo_arithmetic.py",
  )  # fmt: skip
  spec = importlib.util.spec_from_file_location("grpo_arithmetic", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.algo.name = "dr_grpo"
  algo = config_lib.make_algo(config, 1)
  assert algo.config.max_completion_length == config.rollout.max_new_tokens
  config.algo.options = {"max_completion_length": 7}
  assert config_lib.make_algo(config, 1).config.max_completion_length == 7
  config.algo.name, config.algo.options = "ppo", {}
  assert config_lib.make_algo(config, 1).config.loss_type == "bnpo"
  out = types.SimpleNamespace(
    tokens=np.array([[3, 9, 0], [3, 4, 5], [3, 5, 6], [4, 4, 9]]),
    mask=np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]], bool),
    lengths=np.array([2, 3, 3, 3]),
  )
  trainer = types.SimpleNamespace(
    sampling={"eos_ids": (9,), "stop_sequences": ((5, 6),)}
  )
  rollout = rollout_lib.Rollout(
    examples=[{}, {}], prompt_tokens=np.ones((2, 2), np.int32),
    prompt_mask=np.ones((2, 2), np.int32), completions=out,
    texts=[""] * 4, group_size=2, rewards=np.zeros(4, np.float32),
    reward_table=np.zeros((4, 2), np.float32),
  )  # fmt: skip
  batch = rollout_lib.rl_batch(trainer, rollout, per_reward=False)
  assert batch["rewards"].shape == (4,)
  assert rollout_lib.rl_batch(trainer, rollout, True)["rewards"].shape == (4, 2)
  np.testing.assert_array_equal(batch["truncated"], [False, True, False, False])
  assert batch["tokens"].shape == (4, 5)


def test_schedule():
  cfg = algos.OptimizerConfig(
    learning_rate=1.0, schedule="cosine", warmup_steps=10, total_steps=110
  )
  sched = algos.optim.learning_rate_schedule(cfg)
  np.testing.assert_allclose(
    [sched(0), sched(5), sched(10), sched(60), sched(110)],
    [0, 0.5, 1, 0.5, 0],
    atol=1e-6,
  )


def test_prompt_length_gives_the_update_of_all_positions(setup):
  """Skipping the prompt's log-probs (`prompt_length` = the prompt width)
  changes nothing; one position more drops a completion token."""
  graphdef, params, mesh, batch = setup

  def update(prompt_length):
    algo = algos.make(
      "grpo",
      optimizer=algos.OptimizerConfig(learning_rate=3e-3),
      prompt_length=prompt_length,
    )
    state = algos.create_train_state(graphdef, params, algo, mesh)
    prepared = _prepared(algo, graphdef, state, batch)
    step = algos.compile_update_step(algo, graphdef, state, prepared, mesh)
    state, metrics = step(state, prepared, jax.random.key(0))
    return jax.tree.leaves(state.params), float(metrics["loss"])

  full, loss_full = update(0)
  skip, loss_skip = update(P)
  _, loss_over = update(P + 1)
  largest = lambda xs, ys: max(
    float(jnp.max(jnp.abs(x - y))) for x, y in zip(xs, ys)
  )
  assert largest(full, skip) < 1e-6
  assert loss_skip == pytest.approx(loss_full, rel=1e-5)
  assert largest(full, jax.tree.leaves(params)) > 1e-4  # the update moved
  assert abs(loss_over - loss_full) > 1e-4
