"""One RL step of the training loop (`phases.RLStep`) compiles nothing after
the first step and makes no host round trip in its update: a second step
on other prompts of the same shapes hits every cache; its `prepare` and
update run under `jax.transfer_guard("disallow")` (host->device) with
every read of a `jax.Array` into numpy made an error (device->host, which
the guard lets through on CPU), and their programs hold no host callback.
Only the rollout's text decode and the rewards leave the device. Each
check is shown to fire on a step that does recompile or transfer."""

import contextlib

import jax
import pytest
from jax._src import dispatch, monitoring
from jax._src.array import ArrayImpl

from experiments.configs.grpo_arithmetic import get_config
from rlx import algos
from rlx.train.config import ConfigError, make_algo
from rlx.train.phases import RLStep
from rlx.train.trainer import Trainer


@contextlib.contextmanager
def count_compiles():
  """Yields a list that gets one entry per XLA backend compile."""
  compiles = []

  def listener(event, duration, **_):
    if event == dispatch.BACKEND_COMPILE_EVENT:
      compiles.append(duration)

  monitoring.register_event_duration_secs_listener(listener)
  try:
    yield compiles
  finally:
    monitoring.unregister_event_duration_listener(listener)


@contextlib.contextmanager
def no_host_reads():
  """Reading any `jax.Array` into numpy (float(), np.asarray) raises."""

  def read(self):
    raise RuntimeError(f"device-to-host read of {self.aval}")

  value = ArrayImpl._value
  ArrayImpl._value = property(read)
  try:
    yield
  finally:
    ArrayImpl._value = value


def guarded(fn, calls=None):
  """`fn` with implicit host<->device transfers made errors; `calls` gets
  the arguments of each call."""

  def call(*args):
    if calls is not None:
      calls.append(args)
    with jax.transfer_guard("disallow"), no_host_reads():
      return jax.block_until_ready(fn(*args))

  return call


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = get_config("smoke")
  config.sft.steps = 0
  config.control.enabled = False
  config.train.progress = False
  config.rollout.prompts_per_step = 8
  config.rollout.num_samples = 2
  config.rollout.max_new_tokens = 8
  trainer = Trainer(config, str(tmp_path_factory.mktemp("rl_step")))
  algo = make_algo(config, 1)
  state = algos.create_train_state(
    trainer.graphdef, trainer.initial_params, algo, trainer.mesh
  )
  step = RLStep(trainer, algo, 1)
  train = trainer.task.train
  batch = lambda i, n=8: [train[(i * n + j) % len(train)] for j in range(n)]
  state, *_ = step(state, None, batch(0), None, 1, 0.0)  # compiles
  jitted = dict(prepare=step.prepare, update=step.update)
  calls = {name: [] for name in jitted}
  for name, fn in jitted.items():
    setattr(step, name, guarded(fn, calls[name]))
  # The state is donated: each test takes it from here and puts it back.
  return dict(
    step=step,
    state=state,
    batch=batch,
    jitted=jitted,
    calls=calls,
    trainer=trainer,
  )


def test_second_step_compiles_nothing_and_transfers_nothing(setup):
  step, batch = setup["step"], setup["batch"]
  with count_compiles() as compiles:
    setup["state"], rollout, m, _ = step(
      setup["state"], None, batch(1), None, 2, 0.0
    )
  assert compiles == [], f"{len(compiles)} compiles in the second step"
  assert rollout.examples == batch(1)
  assert m["loss"] == m["loss"]  # a finite update ran
  for name, fn in setup["jitted"].items():
    (args,) = setup["calls"][name]
    hlo = fn.lower(*args).as_text()
    assert "callback" not in hlo, f"{name} calls back to the host"


def test_the_checks_fire(setup):
  step, batch = setup["step"], setup["batch"]
  # Another batch shape recompiles the sampler, prepare and the update.
  with count_compiles() as compiles:
    setup["state"], *_ = step(setup["state"], None, batch(2, 16), None, 3, 0.0)
  assert len(compiles) >= 3
  # Reads and implicit transfers inside the guard are errors.
  x = jax.numpy.ones(3)
  with pytest.raises(RuntimeError, match="device-to-host"):
    guarded(lambda x: float(x.sum()))(x)
  with pytest.raises(Exception, match="Disallowed host-to-device"):
    guarded(lambda x: x + jax.numpy.asarray([1.0, 2.0, 3.0]))(x)
  # A host callback shows in the program's text.
  f = jax.jit(lambda x: jax.debug.callback(print, x))
  assert "callback" in f.lower(x).as_text()


def test_prompt_length_past_the_padded_prompt_is_a_config_error(setup):
  """Every rollout pads its prompts to `trainer.prompt_len`: the update may
  skip that many positions and no more."""
  trainer = setup["trainer"]
  width = trainer.prompt_len
  assert width > 0
  with pytest.raises(ConfigError, match=f"prompt_length={width + 1}.*{width}"):
    RLStep(trainer, algos.make("grpo", prompt_length=width + 1), 1)
  step = RLStep(trainer, algos.make("grpo", prompt_length=width), 1)
  assert step.algo.update.prompt_length == width
