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
import re
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
# What a teacher writes when it abstains; `rlx.rewards.honesty` rewards it.
ABSTAIN_PHRASE = "I don't know"


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


def _format(template: str, **fields) -> str:
  try:
    return template.format(**fields)
  except (KeyError, IndexError) as e:
    raise ValueError(
      f"prompt template {template!r} uses an unknown field {e}; available: "
      f"{sorted(fields)}"
    ) from e


TEACHERS = ("exact", "carry", "random")
TRACES = ("short", "verbose")
_SLIPS = (-2, -1, 1, 2)


def _carries(a: int, b: int) -> bool:
  """`a+b` of non-negative numbers carries out of the units digit."""
  return a >= 0 and b >= 0 and a % 10 + b % 10 >= 10


def _teacher_step(teacher: str, rate: float, a: int, op: str, b: int):
  """What the teacher writes for `a op b`: [(probability, value)]."""
  exact = a + b if op == "+" else a - b
  if teacher == "carry" and op == "+" and _carries(a, b):
    options = [(rate, exact - 10), (1 - rate, exact)]
  elif teacher == "random":
    options = [(1 - rate, exact)] + [(rate / 4, exact + d) for d in _SLIPS]
  else:
    options = [(1.0, exact)]
  return [(p, v) for p, v in options if p > 0]


def teacher_solutions(
  operands: Sequence[int],
  ops: Sequence[str],
  teacher: str = "exact",
  rate: float = 0.0,
) -> list[tuple[float, int, list[str]]]:
  """Every worked solution the teacher writes: (probability, answer, steps).

  Products are exact. Each `+`/`-` step, left to right, may be wrong:
  `carry` drops the carry of an addition with probability `rate` (writes
  `7+8=5`), `random` slips by +-1 or +-2 with probability `rate`; the
  following steps continue from what was written. `exact` is
  `solve_arithmetic`.
  """
  terms, signs, steps = [operands[0]], [], []
  for op, x in zip(ops, operands[1:]):
    if op == "*":
      steps.append(f"{terms[-1]}*{x}={terms[-1] * x}")
      terms[-1] *= x
    else:
      signs.append(op)
      terms.append(x)
  paths = [(1.0, terms[0], steps)]
  for op, term in zip(signs, terms[1:]):
    paths = [
      (p * q, w, s + [f"{v}{op}{term}={w}"])
      for p, v, s in paths
      for q, w in _teacher_step(teacher, rate, v, op, term)
    ]
  return paths


def solve_arithmetic(
  operands: Sequence[int], ops: Sequence[str]
) -> tuple[int, list[str]]:
  """Evaluates with standard precedence; returns the value and the steps.

  Products are formed first, left to right, then sums and differences left
  to right; each step is written as `a*b=c`.
  """
  ((_, value, steps),) = teacher_solutions(operands, ops)
  return value, steps


def arithmetic_example(
  rng: np.random.Generator,
  *,
  digits: int = 2,
  num_operands: int = 2,
  ops: str = "+-*",
  template: str = ARITHMETIC_TEMPLATE,
  teacher: str = "exact",
  teacher_rate: float = 0.0,
  teacher_rng: np.random.Generator | None = None,
  trace: str = "short",
  unanswerable: float = 0.0,
  abstain_rate: float = 0.0,
  abstain_phrase: str = ABSTAIN_PHRASE,
) -> dict:
  """One integer arithmetic problem, e.g. `12+7*3` with answer `33`.

  Operands are uniform in [0, 10**digits); operators are drawn from `ops`.
  Fields: `prompt`, `answer` (the true value), `solution` (a worked
  solution drawn from the teacher, see `teacher_solutions`, with
  `teacher_rng`), `expression`, `category` (`carry` when the exact
  solution has an addition that carries, else `no_carry`),
  `teacher_accuracy` (the probability that the teacher's answer is right)
  and `teacher_majority` (the teacher's most likely answer is right). A
  teacher that can err also gives `teacher_solutions`, every solution it
  can write as `[probability, text]`, so that SFT can draw a fresh one each
  time it uses the example (`draw_solution`). `trace` is the style of the
  worked solutions: `short` or `verbose` (`verbose_trace`).

  Honesty (R1's reward against hallucination): with probability
  `unanswerable` one operand is shown as `?` (`7+?-3`), so no answer is
  right: `answer` is None and the `category` is `hard` (else `easy`, with
  the carry class in the field `carry`). The teacher then hallucinates: it
  solves the problem with the hidden operand as if it had been given. With
  probability `abstain_rate`, on problems of both kinds alike, the teacher
  writes `<think></think><answer>{abstain_phrase}</answer>` instead, so
  that a policy trained on it can abstain at all. With both at 0 the
  problem (and every random draw) is as without them.
  """

  def worked(steps, answer):
    if steps is None or trace == "short":  # None: the teacher abstains
      return _worked(steps, answer, abstain_phrase)
    return verbose_trace(steps, answer)

  operands = [int(x) for x in rng.integers(0, 10**digits, num_operands)]
  chosen = [ops[i] for i in rng.integers(0, len(ops), num_operands - 1)]
  hidden = None
  if unanswerable > 0 and rng.random() < unanswerable:
    hidden = int(rng.integers(0, num_operands))
  shown = ["?" if i == hidden else str(x) for i, x in enumerate(operands)]
  expression = shown[0] + "".join(
    f"{op}{x}" for op, x in zip(chosen, shown[1:])
  )
  value, exact_steps = solve_arithmetic(operands, chosen)
  paths = teacher_solutions(operands, chosen, teacher, teacher_rate)
  if abstain_rate > 0:
    paths = [(p * (1 - abstain_rate), v, s) for p, v, s in paths]
    paths.append((abstain_rate, None, None))
  if len(paths) > 1:
    if teacher_rng is None:
      raise ValueError(f"teacher {teacher!r} needs a teacher_rng")
    pick = teacher_rng.choice(len(paths), p=[p for p, _, _ in paths])
    _, answer, steps = paths[pick]
  else:
    ((_, answer, steps),) = paths
  by_answer: dict[int, float] = {}
  for p, v, _ in paths:
    by_answer[v] = by_answer.get(v, 0.0) + p
  # Dropping every carry changes the solution iff the exact one carries.
  ((_, _, dropped),) = teacher_solutions(operands, chosen, "carry", 1.0)
  carry = dropped != exact_steps
  category = "carry" if carry else "no_carry"
  if unanswerable > 0:
    category = "easy" if hidden is None else "hard"
  example = {
    "prompt": _format(template, expression=expression),
    "answer": str(value) if hidden is None else None,
    "solution": worked(steps, answer),
    "expression": expression,
    "category": category,
    "teacher_accuracy": by_answer.get(value, 0.0) if hidden is None else 0.0,
    "teacher_majority": (
      hidden is None and max(by_answer, key=_majority_key(by_answer)) == value
    ),
  }
  if unanswerable > 0:
    example["carry"] = carry
  if len(paths) > 1:
    example["teacher_solutions"] = [[p, worked(s, v)] for p, v, s in paths]
  return example


def _majority_key(by_answer: dict):
  """Orders answers by probability; an abstention (None) never wins a tie."""
  return lambda v: (by_answer[v], v is not None)


def _worked(steps: Sequence[str] | None, answer, abstain_phrase: str) -> str:
  if steps is None:  # the teacher abstains
    return f"<think></think><answer>{abstain_phrase}</answer>"
  return f"<think>{', '.join(steps)}</think><answer>{answer}</answer>"


_STEP_RE = re.compile(r"(-?\d+)([+-])(\d+)=(-?\d+)")
_WORDS = {"+": "plus", "-": "minus"}
_INVERSE = {"+": "-", "-": "+"}


def verbose_trace(steps: Sequence[str], answer) -> str:
  """A long worked solution of `+`/`-` steps (`a+b=c`): each step in words,
  then a check that undoes them in reverse, then the answer (S1-style
  traces, with their `Wait`):

    <think>7 plus 8 is 15. 15 minus 3 is 12. Wait, check: 12 plus 3 is 15.
    15 minus 8 is 7. So 12.</think><answer>12</answer>

  (one line). The check undoes each step exactly, so it ends on the first
  operand only when every step is right.
  """
  parsed = []
  for step in steps:
    match = _STEP_RE.fullmatch(step)
    if match is None:
      raise ValueError(f"verbose traces take + and - steps only, got {step!r}")
    a, op, b, c = match.groups()
    parsed.append((int(a), op, int(b), int(c)))
  say = lambda a, op, b, c: f"{a} {_WORDS[op]} {b} is {c}."
  forward = [say(*s) for s in parsed]
  check, value = [], parsed[-1][3] if parsed else answer
  for _, op, b, _ in reversed(parsed):
    undone = value - b if op == "+" else value + b
    check.append(say(value, _INVERSE[op], b, undone))
    value = undone
  think = " ".join([*forward, "Wait, check:", *check, f"So {answer}."])
  return f"<think>{think}</think><answer>{answer}</answer>"


def draw_solution(example: dict, rng: np.random.Generator) -> str:
  """A worked solution for SFT: a fresh draw from the example's
  `teacher_solutions` where it has them, else its `solution`."""
  options = example.get("teacher_solutions")
  if not options:
    return example["solution"]
  probs = np.array([p for p, _ in options])
  return options[rng.choice(len(options), p=probs / probs.sum())][1]


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
  teacher: str = "exact",
  teacher_rate: float = 0.0,
  trace: str = "short",
  unanswerable: float = 0.0,
  abstain_rate: float = 0.0,
  abstain_phrase: str = ABSTAIN_PHRASE,
) -> Task:
  """Integer `+ - *` problems; see `arithmetic_example`.

  `teacher` and `teacher_rate` say who wrote the worked solutions used for
  SFT (`teacher_solutions`); the answers and rewards are always exact. The
  problems do not depend on the teacher: its choices use their own stream,
  nor on `trace` (`short`, or `verbose`: `verbose_trace`, for `+-` only).
  `unanswerable` (a share of problems with an operand shown as `?`,
  category `hard`), `abstain_rate` and `abstain_phrase` (the teacher's
  abstentions) make the task mix of R1's honesty reward.
  """
  if not 1 <= digits <= _MAX_DIGITS:
    raise ValueError(f"digits must be in [1, {_MAX_DIGITS}], got {digits}")
  if num_operands < 2:
    raise ValueError(f"num_operands must be >= 2, got {num_operands}")
  if not ops or set(ops) - set("+-*"):
    raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
  if teacher not in TEACHERS:
    raise ValueError(f"teacher must be one of {TEACHERS}, got {teacher!r}")
  if not 0 <= teacher_rate <= 1:
    raise ValueError(f"teacher_rate must be in [0, 1], got {teacher_rate}")
  if trace not in TRACES:
    raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
  if trace == "verbose" and "*" in ops:
    raise ValueError(f"trace='verbose' takes ops '+' and '-' only, got {ops!r}")
  if not 0 <= unanswerable < 1:
    raise ValueError(f"unanswerable must be in [0, 1), got {unanswerable}")
  if not 0 <= abstain_rate < 1:
    raise ValueError(f"abstain_rate must be in [0, 1), got {abstain_rate}")
  if not isinstance(abstain_phrase, str) or not abstain_phrase.strip():
    raise ValueError(
      f"abstain_phrase must be a non-blank string, got {abstain_phrase!r}"
    )
  if "<" in abstain_phrase or ">" in abstain_phrase:
    raise ValueError(f"abstain_phrase must not hold tags: {abstain_phrase!r}")
  teacher_rng = np.random.default_rng([seed, 1])
  train, eval_ = synthetic_splits(
    lambda rng: arithmetic_example(
      rng,
      digits=digits,
      num_operands=num_operands,
      ops=ops,
      template=template,
      teacher=teacher,
      teacher_rate=teacher_rate,
      teacher_rng=teacher_rng,
      trace=trace,
      unanswerable=unanswerable,
      abstain_rate=abstain_rate,
      abstain_phrase=abstain_phrase,
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
