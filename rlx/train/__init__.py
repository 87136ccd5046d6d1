"""Training: small public pieces that scripts compose, and `run`, which
composes them as `experiments/run.py` does.

- `Trainer` (trainer.py): what a run builds once from its config.
- rollout.py: `generate`, `generate_all`, `score`, `Rollout`,
  `dynamic_sampling`, `rl_batch`.
- evaluation.py: `evaluate`, `summarise`, `teacher_metrics`, `chunks`,
  `outcome_shares` (per prompt, the share of its completions in each class).
- heldout.py: `HeldOut`, an exported model on the held-out prompts under
  any decoder (greedy, sampling, beam search), with log-probs.
- lm.py: `sequence_logprobs`, `completion_logprobs`, `next_token_logprobs`,
  `LMTrainer` (a causal LM fitted to any token rows, for density
  experiments).
- phases.py: `run_sft`, `supervised_phase`, `run_rl` (each step an
  `RLStep`), `run_control`.
- curriculum.py: Kimi k1.5's prompts by difficulty (`pass_rates`,
  `difficulty_weights`, `rl_weights` for `config.curriculum`), and
  `sample_groups` (k samples per prompt, e.g. for rejection sampling;
  `Groups.shortest_correct` for long2short).
- loop.py: `run(config, workdir)`; checkpoint.py, metrics.py, config.py.
"""

from rlx.train.config import ConfigError, check_config, default_config
from rlx.train.loop import run
from rlx.train.metrics import format_summary
from rlx.train.phases import TrainingDivergedError
from rlx.train.trainer import Trainer

__all__ = [
  "ConfigError",
  "Trainer",
  "TrainingDivergedError",
  "check_config",
  "default_config",
  "format_summary",
  "run",
]
