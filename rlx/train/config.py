"""The experiment config: defaults, and checks that name the bad key.

Config files (`experiments/configs/*.py`) start from `default_config()` and
change what they need. `check_config`, run before any work, refuses unknown
keys (listing the allowed ones), numbers of the wrong type or range in
every section, unknown algorithm / reward / task names, reward kwargs for
rewards not weighted, a group of one sample for group-baseline algorithms,
and batch shapes that do not divide by the group size or the mesh; it
builds the RL and SFT `Algo`s once, so their own checks run too. Each
message is one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

import ml_collections

# Sections whose keys are free-form (passed on as keyword arguments).
FREE_FORM = (
  "model.overrides",
  "task.options",
  "algo.options",
  "reward.weights",
  "reward.kwargs",
  "reward.functions",
)
ROLLOUT_STRATEGIES = ("sample", "beam")
OVERLONG_POLICIES = ("error", "filter")


class ConfigError(ValueError):
  """A config value rlx cannot run with; the message names the key."""


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.preset = "small"  # rlx.models.PRESETS, used when no checkpoint
  c.model.checkpoint = ""  # a local HF checkpoint directory
  c.model.dtype = "float32"  # compute dtype; params stay float32
  c.model.overrides = ml_collections.ConfigDict()  # ModelConfig fields

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""  # default: the checkpoint's, or trained on the task
  c.tokenizer.vocab_size = 256  # for a tokenizer trained on the task

  c.task = ml_collections.ConfigDict()
  c.task.name = "arithmetic"
  c.task.options = ml_collections.ConfigDict()  # rlx.data.make_task kwargs

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all devices not used by fsdp x tensor
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.rollout = ml_collections.ConfigDict()
  c.rollout.prompts_per_step = 16
  c.rollout.num_samples = 8  # the group size G
  c.rollout.strategy = "sample"  # or "beam": G beams per prompt
  c.rollout.max_new_tokens = 32
  c.rollout.temperature = 1.0
  c.rollout.top_k = 0
  c.rollout.top_p = 1.0
  c.rollout.min_p = 0.0
  c.rollout.stop_strings = ("</answer>",)
  c.rollout.prompt_buckets = (16, 32, 64, 128, 256, 512, 1024, 2048)
  c.rollout.max_prompt_len = 256
  c.rollout.overlong_prompts = "error"  # or "filter"
  c.rollout.dynamic_sampling = False  # DAPO: resample zero-std groups
  c.rollout.dynamic_sampling_max_rounds = 4

  # Which prompts RL draws (rlx.train.curriculum): "uniform", or
  # "pass_rate", Kimi k1.5's prioritised sampling by the SFT model's pass
  # rate over num_samples samples (always- and never-solved prompts left
  # out), estimated on the first num_prompts training prompts (0: all).
  c.curriculum = ml_collections.ConfigDict()
  c.curriculum.sampling = "uniform"
  c.curriculum.num_samples = 8
  c.curriculum.num_prompts = 0

  c.algo = ml_collections.ConfigDict()
  c.algo.name = "grpo"
  c.algo.num_epochs = 1
  c.algo.num_minibatches = 1
  c.algo.options = ml_collections.ConfigDict()  # the algorithm's fields

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 1e-6
  c.optimizer.weight_decay = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.clip_norm = 1.0
  c.optimizer.schedule = "constant"  # or "cosine" (over train.steps)
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_accum_steps = 1

  c.sft = ml_collections.ConfigDict()
  c.sft.steps = 0  # a warm-up on the task's worked solutions
  c.sft.batch_size = 32
  c.sft.learning_rate = 1e-3
  c.sft.warmup_steps = 0

  # An equal-compute SFT control: after RL, SFT continues from the SFT
  # params for the RL phase's step time, evaluated like RL.
  c.control = ml_collections.ConfigDict()
  c.control.enabled = False
  c.control.learning_rate = 3e-4  # constant, after warm-up
  c.control.warmup_steps = 10
  c.control.eval_every = 50  # steps; the control ends on a multiple

  c.reward = ml_collections.ConfigDict()
  c.reward.weights = ml_collections.ConfigDict({"accuracy_if_format": 1.0})
  c.reward.kwargs = ml_collections.ConfigDict()  # name -> dict of kwargs
  c.reward.functions = ml_collections.ConfigDict()  # name -> "module:fn"
  c.reward.timeout_s = 10.0
  c.reward.fail_on_error = False
  c.reward.max_abs = 1e6  # larger |reward values| are invalid (scored 0)
  c.reward.memory_limit_mb = 4096  # the reward worker's writes; 0: none

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100
  c.train.eval_every = 25  # 0: only before and after
  c.train.save_every = 10
  c.train.keep_checkpoints = 3
  c.train.async_checkpoints = True
  c.train.progress = True
  c.train.export = True  # HF-format export of the final policy
  # Stop after this many consecutive update steps skipped for a non-finite
  # loss or gradient (each one is logged).
  c.train.max_consecutive_skips = 3
  # Stop when one step grows the params' global norm by more than this
  # factor (a finite but absurd update); 0 disables the check.
  c.train.max_param_norm_growth = 2.0

  c.eval = ml_collections.ConfigDict()
  c.eval.num_prompts = 128
  c.eval.num_samples = 4  # k of pass@k, mean@k, maj@k (0: greedy only)
  c.eval.temperature = 1.0
  c.eval.batch_size = 64
  return c


def _check_keys(config, schema, prefix=""):
  for key in config.keys():
    path = f"{prefix}{key}"
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema.keys()), n=1)
      hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
      raise ConfigError(
        f"unknown config key {path!r}{hint}; allowed keys here: "
        f"{sorted(schema.keys())}"
      )
    value, expected = config[key], schema[key]
    if path in FREE_FORM:
      continue
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(
          f"config key {path!r} must be a section, got {value!r}"
        )
      _check_keys(value, expected, path + ".")


def _require(ok: bool, key: str, value, allowed) -> None:
  if not ok:
    if isinstance(value, ml_collections.ConfigDict):  # its repr is YAML
      value = value.to_dict()
    raise ConfigError(f"config.{key}={value!r}: {allowed}")


def _number(config, key: str, ok, allowed: str, integer: bool = False):
  """`config.<key>` must be a finite number (an int if `integer`) for which
  `ok(value)` holds."""
  value = config
  for part in key.split("."):
    value = value[part]
  kinds = int if integer else (int, float)
  valid = (
    isinstance(value, kinds)
    and not isinstance(value, bool)
    and math.isfinite(value)
    and ok(value)
  )
  kind = "an integer" if integer else "a finite number"
  _require(valid, key, value, f"must be {kind} {allowed}")


_POSITIVE_INTS = (
  "control.eval_every",
  "rollout.prompts_per_step",
  "rollout.num_samples",
  "rollout.max_new_tokens",
  "rollout.max_prompt_len",
  "algo.num_epochs",
  "algo.num_minibatches",
  "sft.batch_size",
  "train.save_every",
  "train.keep_checkpoints",
  "train.max_consecutive_skips",
  "eval.num_prompts",
  "eval.batch_size",
  "tokenizer.vocab_size",
  "mesh.fsdp",
  "mesh.tensor",
)
_NON_NEGATIVE_INTS = (
  "control.warmup_steps",
  "sft.steps",
  "sft.warmup_steps",
  "train.steps",
  "train.eval_every",
  "eval.num_samples",
  "rollout.top_k",
  "rollout.dynamic_sampling_max_rounds",
  "optimizer.warmup_steps",
)


def _check_values(config) -> None:
  """Types and ranges of every section's numbers, one key at a time."""
  _number(config, "seed", lambda v: True, "(any)", integer=True)
  for key in _POSITIVE_INTS:
    _number(config, key, lambda v: v >= 1, ">= 1", integer=True)
  for key in _NON_NEGATIVE_INTS:
    _number(config, key, lambda v: v >= 0, ">= 0", integer=True)
  _number(
    config,
    "mesh.data",
    lambda v: v == -1 or v >= 1,
    ">= 1, or -1 for all devices left",
    integer=True,
  )
  ge0 = lambda v: v >= 0
  _number(config, "rollout.temperature", ge0, ">= 0 (0: greedy)")
  _number(config, "rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]")
  _number(config, "rollout.min_p", lambda v: 0 <= v < 1, "in [0, 1)")
  _number(config, "eval.temperature", ge0, ">= 0 (0: greedy)")
  _number(config, "sft.learning_rate", ge0, ">= 0")
  _number(config, "optimizer.learning_rate", ge0, ">= 0")
  _number(config, "reward.timeout_s", lambda v: v > 0, "> 0 (seconds)")
  _number(
    config,
    "reward.max_abs",
    lambda v: 0 < v <= 3.4e38,
    "in (0, 3.4e38]: the largest valid |reward value| (float32)",
  )
  _number(
    config,
    "reward.memory_limit_mb",
    lambda v: v >= 0,
    ">= 0: MiB the reward worker may write (0: no limit)",
  )
  _number(config, "control.learning_rate", ge0, ">= 0")
  _number(
    config,
    "train.max_param_norm_growth",
    lambda v: v == 0 or v > 1,
    "> 1 (a factor), or 0 to disable the check",
  )
  r = config.rollout
  buckets = r.prompt_buckets
  _require(
    isinstance(buckets, (tuple, list))
    and len(buckets) > 0
    and all(
      isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in buckets
    ),
    "rollout.prompt_buckets",
    buckets,
    "must be a non-empty tuple of prompt lengths >= 1, e.g. (64, 128)",
  )
  stops = r.stop_strings
  _require(
    isinstance(stops, (tuple, list)) and all(isinstance(x, str) for x in stops),
    "rollout.stop_strings",
    stops,
    "must be a tuple of strings",
  )


def _check_rewards(config) -> None:
  from rlx import rewards

  w = config.reward
  _require(
    len(w.weights) > 0,
    "reward.weights",
    dict(w.weights),
    "must name at least one reward, e.g. {'accuracy_if_format': 1.0}",
  )
  known = set(rewards.BUILTIN_REWARDS) | set(w.functions.keys())
  for name, weight in w.weights.items():
    _require(
      name in known,
      f"reward.weights.{name}",
      weight,
      f"unknown reward {name!r}; known: {sorted(known)} (add your own in "
      "reward.functions as name='module:function')",
    )
    _require(
      isinstance(weight, (int, float))
      and not isinstance(weight, bool)
      and math.isfinite(weight),
      f"reward.weights.{name}",
      weight,
      "must be a finite number",
    )
  for name, spec in w.functions.items():
    _require(
      isinstance(spec, str) and spec.count(":") == 1,
      f"reward.functions.{name}",
      spec,
      "must be 'module:function'",
    )
  for name, kwargs in w.kwargs.items():
    _require(
      name in w.weights,
      f"reward.kwargs.{name}",
      kwargs,
      f"names no reward in reward.weights {sorted(w.weights.keys())}",
    )
    _require(
      isinstance(kwargs, (dict, ml_collections.ConfigDict)),
      f"reward.kwargs.{name}",
      kwargs,
      "must be a dict of keyword arguments",
    )


def check_config(config, num_devices: int | None = None) -> None:
  """Raise `ConfigError` naming the first bad key."""
  from rlx import algos
  from rlx.data import tasks
  from rlx.models import PRESETS

  _check_keys(config, default_config())
  _check_values(config)
  m, r = config.model, config.rollout
  if not m.checkpoint:
    _require(
      m.preset in PRESETS,
      "model.preset",
      m.preset,
      f"allowed {sorted(PRESETS)}",
    )
  _require(
    config.algo.name in algos.ALGORITHMS,
    "algo.name",
    config.algo.name,
    f"allowed {sorted(algos.ALGORITHMS)}",
  )
  _require(
    config.task.name in tasks.TASKS,
    "task.name",
    config.task.name,
    f"allowed {sorted(tasks.TASKS)}",
  )
  _check_rewards(config)
  from rlx.train import curriculum

  make_dataclass(curriculum.CurriculumConfig, config.curriculum, "curriculum")
  _require(
    r.strategy in ROLLOUT_STRATEGIES,
    "rollout.strategy",
    r.strategy,
    f"allowed {ROLLOUT_STRATEGIES}",
  )
  _require(
    r.overlong_prompts in OVERLONG_POLICIES,
    "rollout.overlong_prompts",
    r.overlong_prompts,
    f"allowed {OVERLONG_POLICIES}",
  )
  _require(
    r.max_prompt_len <= max(r.prompt_buckets),
    "rollout.max_prompt_len",
    r.max_prompt_len,
    f"must be <= the largest prompt bucket ({max(r.prompt_buckets)})",
  )
  if config.control.enabled:
    _require(
      config.sft.steps >= 1,
      "control.enabled",
      True,
      "the SFT control continues the SFT warm-up: needs sft.steps >= 1",
    )

  rows = r.prompts_per_step * r.num_samples
  _require(
    rows % config.algo.num_minibatches == 0,
    "algo.num_minibatches",
    config.algo.num_minibatches,
    f"must divide the rollout batch prompts_per_step x num_samples = {rows}",
  )
  algo = make_algo(config, config.algo.num_epochs * config.algo.num_minibatches)
  if config.sft.steps:
    make_sft_algo(config)
  group = isinstance(algo.config, algos.GRPOConfig) or (
    isinstance(algo.config, algos.ReinforceConfig)
    and algo.config.baseline in ("group_mean", "rloo")
  )
  _require(
    r.num_samples >= 2 or not group,
    "rollout.num_samples",
    r.num_samples,
    f"must be >= 2 for {config.algo.name}, whose baseline is the group of "
    "samples of a prompt (with 1, every advantage is 0)",
  )

  if num_devices is not None:
    mesh = config.mesh
    fsdp_tensor = mesh.fsdp * mesh.tensor
    data = mesh.data if mesh.data != -1 else num_devices // max(fsdp_tensor, 1)
    _require(
      data * fsdp_tensor == num_devices,
      "mesh",
      dict(mesh),
      f"data x fsdp x tensor must equal the {num_devices} devices",
    )
    shards = data * mesh.fsdp
    _require(
      r.prompts_per_step % shards == 0,
      "rollout.prompts_per_step",
      r.prompts_per_step,
      f"the rollout's prompt batch must divide by the mesh's data x fsdp = "
      f"{shards} batch shards",
    )
    minibatch = rows // config.algo.num_minibatches
    _require(
      minibatch % shards == 0,
      "rollout.prompts_per_step",
      r.prompts_per_step,
      f"the minibatch of {minibatch} sequences (prompts_per_step x "
      f"num_samples / num_minibatches) must divide by the mesh's "
      f"data x fsdp = {shards} batch shards",
    )
    if config.sft.steps:
      _require(
        config.sft.batch_size % shards == 0,
        "sft.batch_size",
        config.sft.batch_size,
        f"must divide by the mesh's data x fsdp = {shards}",
      )


def make_dataclass(cls, section, key: str, **extra):
  """`cls(**section, **extra)`, with unknown fields reported by key."""
  fields = {f.name for f in dataclasses.fields(cls)}
  values = dict(section)
  for name in values:
    if name not in fields:
      raise ConfigError(
        f"unknown config key '{key}.{name}' for {cls.__name__}; allowed: "
        f"{sorted(fields - set(extra))}"
      )
  try:
    return cls(**values, **extra)
  except (TypeError, ValueError) as e:
    message = str(e)
    if message.startswith(f"{cls.__name__}."):  # Class.field=value: ...
      field = message[len(cls.__name__) + 1 :]
      raise ConfigError(f"config.{key}.{field}") from e
    raise ConfigError(f"config.{key}: {e}") from e


def optimizer_config(config, total_steps: int, key: str, **overrides):
  """The optimizer section with `overrides` (from section `key`, which
  error messages name) as an `algos.OptimizerConfig`."""
  from rlx import algos

  o = dict(config.optimizer)
  o.update(overrides)
  if o.get("schedule") == "cosine":
    o["total_steps"] = total_steps
  return make_dataclass(algos.OptimizerConfig, o, key)


def make_algo(config, updates_per_step: int):
  """The RL `algos.Algo` of `config` (algo, optimizer and rollout)."""
  from rlx import algos

  a = config.algo
  opt = optimizer_config(
    config, config.train.steps * updates_per_step, "optimizer"
  )
  options = dict(a.options)
  if algos.ALGORITHMS.get(a.name, (None,))[0] is algos.GRPOConfig:
    # Dr. GRPO's normaliser is the completion budget, as in TRL.
    options.setdefault("max_completion_length", config.rollout.max_new_tokens)
    # The loop passes each reward function's values ([N, K], in the order
    # of `reward.weights`) for `multi_objective_aggregation`; the weights
    # are the reward section's, as TRL's `reward_weights` are its own.
    if "reward_weights" in options:
      raise ConfigError(
        f"config.algo.options.reward_weights={options['reward_weights']!r}: "
        "set the weights in config.reward.weights (name: weight) instead"
      )
    options["reward_weights"] = tuple(config.reward.weights.values())
  try:
    return algos.make(
      a.name,
      optimizer=opt,
      num_epochs=a.num_epochs,
      num_minibatches=a.num_minibatches,
      temperature=max(config.rollout.temperature, 1e-6)
      if config.rollout.strategy == "sample"
      else 1.0,
      **options,
    )
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.algo ({a.name}): {e}") from e


def make_sft_algo(config):
  """The SFT warm-up's `algos.Algo`: the optimizer section with `sft`'s
  learning rate and warm-up, and a cosine decay over `sft.steps`."""
  from rlx import algos

  s = config.sft
  opt = optimizer_config(
    config,
    s.steps,
    "sft",
    learning_rate=s.learning_rate,
    warmup_steps=s.warmup_steps,
    schedule="cosine" if s.steps > s.warmup_steps else "constant",
  )
  return algos.make("sft", optimizer=opt)


def apply_variant(config, arg: str | None):
  """big_vision-style `--config=file.py:arg` variants shared by all files.

  smoke: a tiny model and two steps of everything, for tests and a quick
  check that a config runs end to end.
  """
  if not arg:
    return config
  if arg != "smoke":
    raise ConfigError(f"config variant {arg!r}: allowed 'smoke'")
  config.model.preset = "tiny"
  config.model.checkpoint = config.model.checkpoint  # kept if given
  config.rollout.prompts_per_step = 8
  config.rollout.num_samples = 2
  config.rollout.max_new_tokens = 32
  config.algo.num_minibatches = 1
  config.sft.steps = min(config.sft.steps, 2)
  config.sft.batch_size = 8
  config.train.steps = min(config.train.steps, 2)
  config.train.eval_every = 0
  config.train.save_every = 1
  config.train.progress = False
  config.eval.num_prompts = 8
  config.eval.num_samples = 2
  config.eval.batch_size = 8
  config.control.eval_every = 2
  return config
