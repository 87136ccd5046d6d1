"""RL and SFT updates: GRPO (Dr. GRPO, DAPO, GSPO, CISPO, SAPO, LUSPO,
VESPO), PPO, REINFORCE (RLOO, REINFORCE++), SFT.

    algo = rlx.algos.make("grpo", beta=0.04, num_minibatches=2,
                          optimizer=OptimizerConfig(learning_rate=1e-6))
    state = create_train_state(graphdef, params, algo, mesh)
    batch, stats = algo.prepare_batch(batch, group_size)   # advantages
    step = compile_update_step(algo, graphdef, state, batch, mesh)
    state, metrics = step(state, batch, key)

See `update.py` for the batch format.
"""

from __future__ import annotations

import dataclasses

from rlx.algos import advantages, losses
from rlx.algos.grpo import GRPOConfig, grpo_loss, truncated_completions
from rlx.algos.losses import token_logprobs
from rlx.algos.optim import OptimizerConfig, make_optimizer
from rlx.algos.ppo import PPOConfig, init_value_head, ppo_loss, values
from rlx.algos.reinforce import ReinforceConfig, reinforce_loss
from rlx.algos.sft import SFTConfig, sft_loss
from rlx.algos.update import (
  Algo,
  TrainState,
  UpdateConfig,
  compile_update_step,
  create_train_state,
  host_local_to_global,
  init_train_state,
  make_update_step,
  tree_shardings,
)

# name -> (config class, preset options; user options override them).
ALGORITHMS = {
  "grpo": (GRPOConfig, dict(loss_type="grpo", beta=0.04)),
  "dr_grpo": (
    GRPOConfig,
    dict(loss_type="dr_grpo", scale_rewards="none", beta=0.0),
  ),
  "dapo": (
    GRPOConfig,
    dict(loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, beta=0.0),
  ),
  "gspo": (
    GRPOConfig,
    dict(
      loss_type="grpo",
      importance_sampling_level="sequence",
      epsilon_low=3e-4,
      epsilon_high=4e-4,
      beta=0.0,
    ),
  ),
  # TRL loss types by name, with their papers' settings (all are also
  # `loss_type` options of "grpo").
  "cispo": (
    GRPOConfig,
    dict(loss_type="cispo", epsilon_high=5.0, beta=0.0),
  ),
  "sapo": (GRPOConfig, dict(loss_type="sapo", beta=0.0)),
  "luspo": (
    GRPOConfig,
    dict(
      loss_type="luspo",
      importance_sampling_level="sequence",
      epsilon_low=3e-4,
      epsilon_high=4e-4,
      beta=0.0,
    ),
  ),
  "vespo": (GRPOConfig, dict(loss_type="vespo", beta=0.0)),
  "ppo": (PPOConfig, {}),
  "reinforce": (ReinforceConfig, dict(baseline="none")),
  "reinforce_baseline": (ReinforceConfig, dict(baseline="group_mean")),
  "rloo": (ReinforceConfig, dict(baseline="rloo")),
  "reinforce_pp": (
    ReinforceConfig,
    dict(baseline="reinforce_pp", kl_coef=0.01, loss_type="bnpo"),
  ),
  "sft": (SFTConfig, {}),
}


def make(
  name: str,
  *,
  optimizer: OptimizerConfig | None = None,
  **options,
) -> Algo:
  """An `Algo` by name; options go to the algorithm's config or to
  `UpdateConfig` (num_epochs, num_minibatches, shuffle, chunk_size,
  temperature, prompt_length, log_entropy). `epsilon` sets epsilon_low and
  epsilon_high.
  """
  if name not in ALGORITHMS:
    raise ValueError(f"algorithm {name!r}: allowed {sorted(ALGORITHMS)}")
  cls, preset = ALGORITHMS[name]
  if "epsilon" in options:
    eps = options.pop("epsilon")
    options.setdefault("epsilon_low", eps)
    options.setdefault("epsilon_high", eps)
  update_fields = {f.name for f in dataclasses.fields(UpdateConfig)}
  algo_fields = {f.name for f in dataclasses.fields(cls)}
  unknown = set(options) - update_fields - algo_fields
  if unknown:
    raise ValueError(
      f"make({name!r}): unknown options {sorted(unknown)}; allowed "
      f"{sorted(algo_fields | update_fields | {'optimizer', 'epsilon'})}"
    )
  update = UpdateConfig(
    **{k: v for k, v in options.items() if k in update_fields}
  )
  config = cls(
    **{**preset, **{k: v for k, v in options.items() if k in algo_fields}}
  )
  return Algo(name, config, update, optimizer or OptimizerConfig())


__all__ = [
  "ALGORITHMS",
  "Algo",
  "GRPOConfig",
  "OptimizerConfig",
  "PPOConfig",
  "ReinforceConfig",
  "SFTConfig",
  "TrainState",
  "UpdateConfig",
  "advantages",
  "compile_update_step",
  "create_train_state",
  "grpo_loss",
  "host_local_to_global",
  "init_train_state",
  "init_value_head",
  "losses",
  "make",
  "make_optimizer",
  "make_update_step",
  "ppo_loss",
  "reinforce_loss",
  "sft_loss",
  "token_logprobs",
  "tree_shardings",
  "truncated_completions",
  "values",
]
