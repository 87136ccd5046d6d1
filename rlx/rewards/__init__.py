"""Host-side text rewards: built-ins by name, user functions, a runner."""

from rlx.rewards.correct import is_correct
from rlx.rewards.countdown import check_countdown, countdown_reward
from rlx.rewards.extract import answers_match, extract_answer, parse_number
from rlx.rewards.honesty import honesty_reward
from rlx.rewards.length import kimi_length_reward, overlong_reward
from rlx.rewards.r1 import (
  accuracy_if_format_reward,
  accuracy_reward,
  format_reward,
  has_r1_format,
)
from rlx.rewards.registry import BUILTIN_REWARDS, get_reward_fn
from rlx.rewards.runner import (
  RewardError,
  RewardRunner,
  RewardSpec,
  check_reward_specs,
  compute_rewards,
  default_runner,
)

__all__ = [
  "BUILTIN_REWARDS",
  "RewardError",
  "RewardRunner",
  "RewardSpec",
  "accuracy_if_format_reward",
  "accuracy_reward",
  "answers_match",
  "check_countdown",
  "check_reward_specs",
  "compute_rewards",
  "countdown_reward",
  "default_runner",
  "extract_answer",
  "format_reward",
  "get_reward_fn",
  "has_r1_format",
  "honesty_reward",
  "is_correct",
  "kimi_length_reward",
  "overlong_reward",
  "parse_number",
]
