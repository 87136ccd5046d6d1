"""rlx: reinforcement learning for language models in JAX / Flax NNX.

`import rlx` is cheap; a subpackage is imported when first used, so
`rlx.models.load_pretrained(...)` and `rlx.train.run(...)` work after a
plain `import rlx`.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("algos", "data", "decoding", "models", "rewards", "train")


def __getattr__(name: str):
  if name in _SUBPACKAGES:
    return importlib.import_module(f"rlx.{name}")
  raise AttributeError(f"module 'rlx' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_SUBPACKAGES])
