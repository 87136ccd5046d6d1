"""rlx: reinforcement learning for language models in JAX/Flax NNX."""

import setuptools

setuptools.setup(
  name="rlx",
  version="0.1.0",
  description="JAX/Flax NNX research codebase for RL on language models.",
  packages=setuptools.find_packages(include=["rlx", "rlx.*"]),
  python_requires=">=3.10",
  install_requires=[
    "jax>=0.6",
    "flax>=0.11",
    "optax",
    "orbax-checkpoint",
    "sentencepiece",
    "ml_collections",
    "safetensors",
    "tokenizers",
    "numpy",
    "absl-py",
    "tqdm",
    "matplotlib",
    "tensorboardX",
  ],
  extras_require={
    "test": [
      "pytest",
      "pytest-timeout",
      "ruff",
      "transformers",
      "torch==2.13.0",
      # tests/test_notebooks.py executes notebooks/*.ipynb
      "nbclient",
      "nbformat",
      "ipykernel",
    ],
    # benchmarks/rl_step.py's TRL side (GRPOTrainer)
    "bench": ["trl", "transformers", "torch==2.13.0", "datasets"],
    # `tensorboard --logdir=WORKDIR/tensorboard` (README, TensorBoard)
    "tensorboard": ["tensorboard"],
  },
  entry_points={
    "console_scripts": ["rlx-generate=rlx.generate:main"],
  },
)
