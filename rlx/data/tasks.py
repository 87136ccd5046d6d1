"""Prompt tasks: synthetic arithmetic and Countdown, and JSONL datasets.

An example is a plain dict with at least `prompt`, `answer` and `solution`
(a correct completion `<think>...</think><answer>...</answer>` for SFT
warm-up, accepted by the strict R1 format reward) plus the task's reward
fields. Train and eval splits never share a prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from rlx.data import jsonl

ARITHMETIC_TEMPLATE = (
  "{expression}=? Reply <think>...</think><answer>...</answer>"
)
COUNTDOWN_TEMPLATE = (
  "Use {numbers} once each with + - * / to make {target}. "
  "Reply <think>...</think><answer>equation</answer>"
)
_MAX_DIGITS = 18


@dataclasses.dataclass(frozen=True)
class Task:
  """A dataset of prompts.

  Attributes:
    name: the task's name.
    train: training examples.
    eval: held-out examples; no prompt is also in `train`.
    reward_fields: example keys the reward functions need, passed to them
      as task fields (see `collate_fields`).
  """

  name: str
  train: list[dict]
  eval: list[dict]
  reward_fields: tuple[str, ...]


def collate_fields(
  examples: Sequence[dict], names: Sequence[str], repeat: int = 1
) -> dict[str, list]:
  """Task fields for the rewards of a batch, each example repeated.

  With `repeat=G` the result is aligned with G consecutive completions per
  example, the layout of a GRPO group.
  """
  fields = {}
  for name in names:
    column = []
    for i, example in enumerate(examples):
      if name not in example:
        raise KeyError(f"example {i} has no reward field {name!r}")
      column.extend([example[name]] * repeat)
    fields[name] = column
  return fields


def solve_arithmetic(
  operands: Sequence[int], ops: Sequence[str]
) -> tuple[int, list[str]]:
  """Evaluates with standard precedence; returns the value and the steps.

  Products are formed first, left to right, then sums and differences left
  to right; each step is written as `a*b=c`.
  """
  terms = [operands[0]]
  signs = []
  steps = []
  for op, x in zip(ops, operands[1:]):
    if op == "*":
      product = terms[-1] * x
      steps.append(f"{terms[-1]}*{x}={product}")
      terms[-1] = product
    else:
      signs.append(op)
      terms.append(x)
  value = terms[0]
  for op, term in zip(signs, terms[1:]):
    new = value + term if op == "+" else value - term
    steps.append(f"{value}{op}{term}={new}")
    value = new
  return value, steps


def _format(template: str, **fields) -> str:
  try:
    return template.format(**fields)
  except (KeyError, IndexError) as e:
    raise ValueError(
      f"prompt template {template!r} uses an unknown field {e}; available: "
      f"{sorted(fields)}"
    ) from e


def arithmetic_example(
  rng: np.random.Generator,
  *,
  digits: int = 2,
  num_operands: int = 2,
  ops: str = "+-*",
  template: str = ARITHMETIC_TEMPLATE,
) -> dict:
  """One integer arithmetic problem, e.g. `12+7*3` with answer `33`.

  Operands are uniform in [0, 10**digits); operators are drawn from `ops`.
  Fields: `prompt`, `answer`, `solution`, `expression`.
  """
  operands = [int(x) for x in rng.integers(0, 10**digits, num_operands)]
  chosen = [ops[i] for i in rng.integers(0, len(ops), num_operands - 1)]
  expression = str(operands[0]) + "".join(
    f"{op}{x}" for op, x in zip(chosen, operands[1:])
  )
  value, steps = solve_arithmetic(operands, chosen)
  return {
    "prompt": _format(template, expression=expression),
    "answer": str(value),
    "solution": f"<think>{', '.join(steps)}</think><answer>{value}</answer>",
    "expression": expression,
  }


# (value, expression, precedence); precedence 3 marks a literal.
_Term = tuple[int, str, int]
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _combine(a: _Term, b: _Term, op: str) -> _Term:
  prec = _PRECEDENCE[op]
  left = f"({a[1]})" if a[2] < prec else a[1]
  right_parens = b[2] < prec or (b[2] == prec and op in "-/")
  right = f"({b[1]})" if right_parens else b[1]
  if op == "+":
    value = a[0] + b[0]
  elif op == "-":
    value = a[0] - b[0]
  elif op == "*":
    value = a[0] * b[0]
  else:
    value = a[0] // b[0]
  return value, f"{left}{op}{right}", prec


def countdown_example(
  rng: np.random.Generator,
  *,
  num_numbers: int | tuple[int, int] = (3, 4),
  max_number: int = 99,
  max_target: int = 100,
  template: str = COUNTDOWN_TEMPLATE,
  max_tries: int = 1000,
) -> dict:
  """One Countdown problem that has a solution by construction.

  Draws `num_numbers` (an int, or an inclusive range) numbers in [1,
  `max_number`], then combines random pairs with random operations whose
  results stay positive integers until one value is left; that value is
  the target, kept when in [1, `max_target`]. Fields: `prompt`, `answer`
  (the reference equation), `numbers`, `target`, `solution`.
  """
  lo, hi = (
    (num_numbers, num_numbers)
    if isinstance(num_numbers, int)
    else tuple(num_numbers)
  )
  for _ in range(max_tries):
    count = int(rng.integers(lo, hi + 1))
    numbers = [int(x) for x in rng.integers(1, max_number + 1, count)]
    pool: list[_Term] = [(x, str(x), 3) for x in numbers]
    steps = []
    while len(pool) > 1:
      i = int(rng.integers(len(pool)))
      j = int(rng.integers(len(pool) - 1))
      j += j >= i
      a, b = pool[i], pool[j]
      if a[0] < b[0]:
        a, b = b, a
      valid = ["+", "*"]
      if a[0] != b[0]:
        valid.append("-")
      if b[0] > 1 and a[0] % b[0] == 0:
        valid.append("/")
      op = valid[int(rng.integers(len(valid)))]
      term = _combine(a, b, op)
      steps.append(f"{a[0]}{op}{b[0]}={term[0]}")
      pool = [t for k, t in enumerate(pool) if k not in (i, j)] + [term]
    target, equation, _ = pool[0]
    if 1 <= target <= max_target:
      prompt = _format(
        template, numbers=" ".join(map(str, numbers)), target=target
      )
      return {
        "prompt": prompt,
        "answer": equation,
        "numbers": numbers,
        "target": target,
        "solution": (
          f"<think>{', '.join(steps)}</think><answer>{equation}</answer>"
        ),
      }
  raise ValueError(
    f"no Countdown problem with a target in [1, {max_target}] after "
    f"{max_tries} tries; raise max_target"
  )


def synthetic_splits(
  generate: Callable[[np.random.Generator], dict],
  num_train: int,
  num_eval: int,
  seed: int,
  key: Callable[[dict], Hashable] = lambda ex: ex["prompt"],
) -> tuple[list[dict], list[dict]]:
  """Draws distinct problems: the first `num_eval` are eval, then train.

  Problems are deduplicated by `key` across both splits, so the splits are
  disjoint, and the eval set does not depend on `num_train`.
  """
  if num_train < 0 or num_eval < 0:
    raise ValueError(f"need num_train, num_eval >= 0: {num_train}, {num_eval}")
  rng = np.random.default_rng(seed)
  seen = set()
  splits = ([], [])
  max_tries = 20 * (num_train + num_eval) + 1000
  for _ in range(max_tries):
    if len(splits[1]) == num_eval and len(splits[0]) == num_train:
      break
    example = generate(rng)
    k = key(example)
    if k in seen:
      continue
    seen.add(k)
    splits[1 if len(splits[1]) < num_eval else 0].append(example)
  else:
    raise ValueError(
      f"found only {len(seen)} distinct problems for num_train={num_train} "
      f"+ num_eval={num_eval}; ask for fewer or make the task harder"
    )
  return splits


def arithmetic_task(
  *,
  num_train: int = 10_000,
  num_eval: int = 500,
  seed: int = 0,
  digits: int = 2,
  num_operands: int = 2,
  ops: str = "+-*",
  template: str = ARITHMETIC_TEMPLATE,
) -> Task:
  """Integer `+ - *` problems; see `arithmetic_example`."""
  if not 1 <= digits <= _MAX_DIGITS:
    raise ValueError(f"digits must be in [1, {_MAX_DIGITS}], got {digits}")
  if num_operands < 2:
    raise ValueError(f"num_operands must be >= 2, got {num_operands}")
  if not ops or set(ops) - set("+-*"):
    raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
  train, eval_ = synthetic_splits(
    lambda rng: arithmetic_example(
      rng,
      digits=digits,
      num_operands=num_operands,
      ops=ops,
      template=template,
    ),
    num_train,
    num_eval,
    seed,
  )
  return Task("arithmetic", train, eval_, ("answer",))


def countdown_task(
  *,
  num_train: int = 10_000,
  num_eval: int = 500,
  seed: int = 0,
  num_numbers: int | tuple[int, int] = (3, 4),
  max_number: int = 99,
  max_target: int = 100,
  template: str = COUNTDOWN_TEMPLATE,
) -> Task:
  """TinyZero Countdown; see `countdown_example`.

  Deduplicated by (sorted numbers, target), so eval problems are not
  reorderings of train problems.
  """
  counts = (num_numbers,) * 2 if isinstance(num_numbers, int) else num_numbers
  if len(counts) != 2 or not 2 <= counts[0] <= counts[1]:
    raise ValueError(f"num_numbers must be >= 2 or a range, got {num_numbers}")
  if max_number < 1 or max_target < 1:
    raise ValueError("max_number and max_target must be >= 1")
  train, eval_ = synthetic_splits(
    lambda rng: countdown_example(
      rng,
      num_numbers=tuple(counts),
      max_number=max_number,
      max_target=max_target,
      template=template,
    ),
    num_train,
    num_eval,
    seed,
    key=lambda ex: (tuple(sorted(ex["numbers"])), ex["target"]),
  )
  return Task("countdown", train, eval_, ("numbers", "target"))


def jsonl_task(
  *,
  path: str,
  eval_path: str | None = None,
  eval_fraction: float = 0.05,
  prompt_field: str = "prompt",
  answer_field: str = "answer",
  answer_format: str = "plain",
  template: str = "{prompt}",
  solution_field: str | None = None,
  extra_fields: Sequence[str] | Mapping[str, str] = (),
  max_examples: int | None = None,
) -> Task:
  """A user dataset; see `jsonl.load_jsonl` for the loading arguments.

  Without `eval_path`, examples whose prompt hashes below `eval_fraction`
  are held out (`jsonl.hash_split`). With `eval_path`, that file is the
  eval split and train examples whose prompt also occurs there are dropped.
  The reward fields are `answer` and the extra fields.
  """
  load = functools.partial(
    jsonl.load_jsonl,
    prompt_field=prompt_field,
    answer_field=answer_field,
    answer_format=answer_format,
    template=template,
    solution_field=solution_field,
    extra_fields=extra_fields,
    max_examples=max_examples,
  )
  examples = load(path)
  if eval_path is None:
    train, eval_ = jsonl.hash_split(examples, eval_fraction)
  else:
    eval_ = load(eval_path)
    held_out = {ex["prompt"] for ex in eval_}
    train = [ex for ex in examples if ex["prompt"] not in held_out]
  fields = tuple(k for k in examples[0] if k not in ("prompt", "solution"))
  return Task("jsonl", train, eval_, fields)


TASKS: dict[str, Callable[..., Task]] = {
  "arithmetic": arithmetic_task,
  "countdown": countdown_task,
  "jsonl": jsonl_task,
}


def make_task(name: str, **kwargs) -> Task:
  """Builds a task by name: `arithmetic`, `countdown` or `jsonl`."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
  allowed = list(inspect.signature(TASKS[name]).parameters)
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise TypeError(
      f"task {name!r}: unknown parameters {unknown}; allowed: {allowed}"
    )
  return TASKS[name](**kwargs)
