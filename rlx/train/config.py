"""The experiment config: defaults, and checks that name the bad key.

Config files (`experiments/configs/*.py`) start from `default_config()` and
change what they need. `check_config` refuses unknown keys (listing the
allowed ones), unknown algorithm / reward / task names, and batch shapes
that do not divide by the group size or the mesh.
"""

from __future__ import annotations

import dataclasses

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
      raise ConfigError(
        f"unknown config key {path!r}; allowed keys here: "
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
    raise ConfigError(f"config.{key}={value!r}: {allowed}")


def check_config(config, num_devices: int | None = None) -> None:
  """Raise `ConfigError` naming the first bad key."""
  from rlx import algos, rewards
  from rlx.data import tasks
  from rlx.models import PRESETS

  _check_keys(config, default_config())
  m, r, t = config.model, config.rollout, config.train
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
  known = set(rewards.BUILTIN_REWARDS) | set(config.reward.functions.keys())
  for name, weight in config.reward.weights.items():
    _require(
      name in known,
      f"reward.weights.{name}",
      weight,
      f"unknown reward {name!r}; known: {sorted(known)} (add your own in "
      "reward.functions as name='module:function')",
    )
  for name, spec in config.reward.functions.items():
    _require(
      isinstance(spec, str) and spec.count(":") == 1,
      f"reward.functions.{name}",
      spec,
      "must be 'module:function'",
    )
  _require(
    0 < config.reward.max_abs <= 3.4e38,
    "reward.max_abs",
    config.reward.max_abs,
    "the largest valid |reward value|: a number in (0, 3.4e38] (float32)",
  )
  _require(
    config.reward.memory_limit_mb >= 0,
    "reward.memory_limit_mb",
    config.reward.memory_limit_mb,
    "MiB the reward worker may write: >= 0 (0: no limit)",
  )
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
  for key in ("prompts_per_step", "num_samples", "max_new_tokens"):
    _require(r[key] >= 1, f"rollout.{key}", r[key], "must be >= 1")
  _require(
    r.max_prompt_len <= max(r.prompt_buckets),
    "rollout.max_prompt_len",
    r.max_prompt_len,
    f"must be <= the largest prompt bucket ({max(r.prompt_buckets)})",
  )
  for key in ("steps", "save_every", "keep_checkpoints"):
    _require(
      t[key] >= (0 if key == "steps" else 1), f"train.{key}", t[key], ">= 1"
    )
  _require(t.eval_every >= 0, "train.eval_every", t.eval_every, ">= 0")
  _require(config.sft.steps >= 0, "sft.steps", config.sft.steps, ">= 0")
  if config.control.enabled:
    _require(
      config.sft.steps >= 1,
      "control.enabled",
      True,
      "the SFT control continues the SFT warm-up: needs sft.steps >= 1",
    )
    _require(
      config.control.eval_every >= 1,
      "control.eval_every",
      config.control.eval_every,
      ">= 1",
    )

  rows = r.prompts_per_step * r.num_samples
  _require(
    rows % config.algo.num_minibatches == 0,
    "algo.num_minibatches",
    config.algo.num_minibatches,
    f"must divide the rollout batch prompts_per_step x num_samples = {rows}",
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
    raise ConfigError(f"config.{key}: {e}") from e


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
