"""TinyZero Countdown reward: reach a target with the given numbers."""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from rlx.rewards import extract, r1

MAX_EQUATION_CHARS = 1_000
MAX_PAREN_DEPTH = 32
MAX_LITERAL_DIGITS = 12

_ALLOWED_CHARS_RE = re.compile(r"[0-9+\-*/() \t]+", re.ASCII)
_ADJACENT_OPS_RE = re.compile(r"[+\-*/]\s*[+\-*/]", re.ASCII)
_LITERAL_RE = re.compile(r"[0-9]+", re.ASCII)
_INTEGER_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_OPS = {
  ast.Add: operator.add,
  ast.Sub: operator.sub,
  ast.Mult: operator.mul,
  ast.Div: operator.truediv,
}


def _paren_depth_ok(text: str) -> bool:
  depth = 0
  for c in text:
    if c == "(":
      depth += 1
      if depth > MAX_PAREN_DEPTH:
        return False
    elif c == ")":
      depth -= 1
      if depth < 0:
        return False
  return depth == 0


def evaluate_equation(expression: str) -> tuple[Fraction, list[int]] | None:
  """Exactly evaluates an arithmetic expression over integer literals.

  Allowed: non-negative integer literals, binary `+ - * /` and
  parentheses; no unary signs, no `**` or `//`, no two operators in a row.
  Division is exact (Fraction). Returns `(value, literals)` or None when the
  text is not allowed, too long (`MAX_EQUATION_CHARS`), nested deeper than
  `MAX_PAREN_DEPTH`, has a literal over `MAX_LITERAL_DIGITS` digits, or
  divides by zero. The text is only parsed (`ast.parse`), never executed,
  and only after these checks, so the parser never sees deep nesting.
  """
  text = expression.strip()
  if (
    not text
    or len(text) > MAX_EQUATION_CHARS
    or not _ALLOWED_CHARS_RE.fullmatch(text)
    or _ADJACENT_OPS_RE.search(text)
    or not _paren_depth_ok(text)
    or any(len(m) > MAX_LITERAL_DIGITS for m in _LITERAL_RE.findall(text))
  ):
    return None
  try:
    tree = ast.parse(text, mode="eval")
  except (SyntaxError, ValueError, MemoryError, RecursionError):
    return None
  literals = []
  values = []
  stack = [(tree.body, False)]
  while stack:
    node, expanded = stack.pop()
    if isinstance(node, ast.Constant) and type(node.value) is int:
      literals.append(node.value)
      values.append(Fraction(node.value))
    elif isinstance(node, ast.BinOp) and type(node.op) in _OPS:
      if expanded:
        right = values.pop()
        left = values.pop()
        if isinstance(node.op, ast.Div) and right == 0:
          return None
        values.append(_OPS[type(node.op)](left, right))
      else:
        stack.extend([(node, True), (node.right, False), (node.left, False)])
    else:
      return None
  return values[0], literals


def extract_equation(completion: str) -> str | None:
  """The equation of a Countdown completion, or None.

  The text of the last `<answer>...</answer>` block, or the last
  `\\boxed{...}` inside it. A `\\boxed{}` outside answer tags is no answer:
  the task asks for tags.
  """
  answer = extract.extract_tagged_answer(completion)
  if answer is not None and "\\boxed" in answer:
    answer = extract.last_boxed(answer) or answer
  return answer


def countdown_correct(
  completions: Sequence[str],
  numbers: Sequence[Sequence[int]],
  target: Sequence[int],
) -> list[bool]:
  """Whether each completion's equation passes `check_countdown`."""
  n = len(completions)
  numbers = r1.task_field("numbers", numbers, n, "countdown")
  target = r1.task_field("target", target, n, "countdown")
  return [
    (eq := extract_equation(c)) is not None and check_countdown(eq, ns, t)
    for c, ns, t in zip(completions, numbers, target)
  ]


def check_countdown(equation: str, numbers: Sequence[int], target) -> bool:
  """Whether `equation` reaches `target` using each number exactly once.

  "Exactly once" means the multiset of literals in the equation equals the
  multiset `numbers` (every number used, duplicates as often as given). The
  equation may end with `= N`, where N must equal the target.
  """
  target = int(target)
  lhs, eq, rhs = equation.partition("=")
  if eq:
    rhs = rhs.strip()
    if not _INTEGER_RE.fullmatch(rhs) or len(rhs) > MAX_LITERAL_DIGITS:
      return False
    if int(rhs) != target:
      return False
  result = evaluate_equation(lhs)
  if result is None:
    return False
  value, literals = result
  return value == target and Counter(literals) == Counter(
    int(x) for x in numbers
  )


def countdown_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  *,
  numbers: Sequence[Sequence[int]] | None = None,
  target: Sequence[int] | None = None,
  format_score: float = 0.1,
  strict_format: bool = False,
  think_prefilled: bool = False,
  **unused,
) -> list[float]:
  """TinyZero Countdown score per completion.

  1.0 when the equation (`extract_equation`: the last `<answer>` block)
  passes `check_countdown`; `format_score` when an answer block exists but the
  equation is wrong or malformed; 0.0 without an answer block. With
  `strict_format=True`, a completion without the strict R1 format (see
  `r1.has_r1_format`) scores 0.0.
  """
  del prompts, unused
  correct = countdown_correct(completions, numbers, target)
  scores = []
  for completion, ok in zip(completions, correct):
    if extract_equation(completion) is None or (
      strict_format and not r1.has_r1_format(completion, think_prefilled)
    ):
      scores.append(0.0)
    else:
      scores.append(1.0 if ok else float(format_score))
  return scores
