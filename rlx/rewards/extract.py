"""Answer extraction and checking for text rewards.

Nothing here executes model text. Numbers are parsed with strict ASCII
regexes into `fractions.Fraction`, and integer arithmetic left of an `=`
by `countdown.evaluate_equation` (checked, then parsed, never executed);
scans are iterative and inputs are capped in length before any parsing, so
adversarial completions (huge numbers, deep nesting, repeated tags) cost
little.

A checker an RL policy optimises against must accept only right answers:
whitespace and LaTeX spacing separate tokens and never join digits (`1 2`
is not 12), and `lhs = number` counts only when the left side agrees.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Answers longer than this are never parsed and never match.
MAX_ANSWER_CHARS = 10_000
# Numbers with more digits than this are compared as strings, which keeps
# `int()` far below Python's 4300-digit conversion limit.
MAX_NUMBER_DIGITS = 1_000

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
_BOXED = "\\boxed"

_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(rf"([+-]?)({_DEC})", re.ASCII)
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?", re.ASCII)
_FRACTION_RE = re.compile(rf"([+-]?)({_DEC})/({_DEC})", re.ASCII)
_LATEX_FRAC_RE = re.compile(
  rf"([+-]?)\\frac\{{([+-]?{_DEC})\}}\{{([+-]?{_DEC})\}}", re.ASCII
)
_LATEX_FRAC_SHORT_RE = re.compile(r"([+-]?)\\frac(\d)(\d)", re.ASCII)
_WHITESPACE_RE = re.compile(r"\s+")
# `\,` or `{,}` between digit groups of three is a thousands separator.
_LATEX_THOUSANDS_RE = re.compile(
  r"(?<=\d)(?:\\,|\{,\})(?=\d{3}(?!\d))", re.ASCII
)
# LaTeX spacing reads as whitespace: it separates tokens, it never joins them.
_LATEX_SPACE_RE = re.compile(r"\\[,!;: ]|\\q?quad(?![A-Za-z])|~")
_LATEX_SIZING_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_LATEX_OPS = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"))
# `x = 5`, `n_1 = 5`, `a_{10} = 5`: a single-letter name on the left.
_VARIABLE_RE = re.compile(r"[A-Za-z](?:_(?:\w|\{\w+\}))?", re.ASCII)
_DELIMITERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def extract_tagged_answer(text: str) -> str | None:
  """Returns the text inside the last `<answer>...</answer>`, or None."""
  end = text.rfind(ANSWER_CLOSE)
  if end < 0:
    return None
  start = text.rfind(ANSWER_OPEN, 0, end)
  if start < 0:
    return None
  return text[start + len(ANSWER_OPEN) : end]


def last_boxed(text: str) -> str | None:
  """Returns the content of the last `\\boxed{...}` in `text`, or None.

  Braces are matched with a counter (no recursion). `\\boxed 5` without
  braces yields the token up to the next whitespace or `$`.
  """
  start = text.rfind(_BOXED)
  if start < 0:
    return None
  i = start + len(_BOXED)
  n = len(text)
  if i < n and text[i] == "{":
    depth = 0
    for j in range(i, min(n, i + MAX_ANSWER_CHARS + 2)):
      c = text[j]
      if c == "{":
        depth += 1
      elif c == "}":
        depth -= 1
        if depth == 0:
          return text[i + 1 : j]
    return None
  if i < n and text[i] == " ":
    rest = text[i + 1 :].lstrip(" ")
    token = re.match(r"[^\s$]+", rest)
    return token.group(0) if token else None
  return None


def extract_answer(text: str) -> str | None:
  """Returns the final answer of a completion, or None.

  The last `<answer>...</answer>` block wins (the last `\\boxed{...}`
  inside it, if any); without one, the last `\\boxed{...}` anywhere in the
  text. Answers longer than `MAX_ANSWER_CHARS` are treated as missing.
  """
  answer = extract_tagged_answer(text)
  if answer is None:
    answer = last_boxed(text)
  elif _BOXED in answer:
    answer = last_boxed(answer) or answer
  if answer is None or len(answer) > MAX_ANSWER_CHARS:
    return None
  return answer


def _balanced(text: str) -> bool:
  depth = 0
  for c in text:
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth < 0:
        return False
  return depth == 0


def _unwrap_boxed(text: str) -> str:
  """Strips `\\boxed{...}` layers that wrap the whole string."""
  prefix = _BOXED + "{"
  layers = 0
  while text.startswith(prefix, layers * len(prefix)):
    layers += 1
  if not layers:
    return text
  closing = len(text) - len(text.rstrip("}"))
  layers = min(layers, closing)
  inner = text[len(prefix) * layers : len(text) - layers]
  return inner.strip() if _balanced(inner) else text


def _strip_delimiters(text: str) -> str:
  """Strips `\\boxed{}`, math delimiters and trailing periods, in any
  nesting (`$\\boxed{4}$.`)."""
  changed = True
  while changed:
    changed = False
    text = text.strip().rstrip(".").rstrip()
    unwrapped = _unwrap_boxed(text)
    if unwrapped != text:
      text = unwrapped
      changed = True
    for left, right in _DELIMITERS:
      if (
        len(text) >= len(left) + len(right)
        and text.startswith(left)
        and text.endswith(right)
      ):
        text = text[len(left) : len(text) - len(right)]
        changed = True
  return text


def _decimal(sign: str, digits: str) -> Fraction | None:
  whole, _, frac = digits.partition(".")
  if len(whole) + len(frac) > MAX_NUMBER_DIGITS:
    return None
  value = Fraction(int(whole + frac or "0"), 10 ** len(frac))
  return -value if sign == "-" else value


def _signed(text: str) -> Fraction | None:
  match = _NUMBER_RE.fullmatch(text)
  return _decimal(*match.groups()) if match else None


def _ratio(sign: str, num: Fraction | None, den: Fraction | None):
  if num is None or den is None or den == 0:
    return None
  value = num / den
  return -value if sign == "-" else value


def parse_number(text: str) -> Fraction | None:
  """Parses an ASCII number without whitespace into a Fraction.

  Accepts integers, decimals (`0.50`, `.5`, `5.`), thousands separators
  (`1,234.5`), fractions `3/4`, `\\frac{3}{4}`, `\\frac34`, each with an
  optional sign. Returns None for anything else, for a zero denominator and
  for numbers with more than `MAX_NUMBER_DIGITS` digits.
  """
  if len(text) > MAX_ANSWER_CHARS:
    return None
  if _THOUSANDS_RE.fullmatch(text):
    text = text.replace(",", "")
  value = _signed(text)
  if value is not None:
    return value
  for pattern in (_FRACTION_RE, _LATEX_FRAC_RE, _LATEX_FRAC_SHORT_RE):
    match = pattern.fullmatch(text)
    if match:
      sign, num, den = match.groups()
      return _ratio(sign, _signed(num), _signed(den))
  return None


def _squeeze(text: str, tight: str = "._") -> str:
  """Deletes whitespace, except that a gap between two letters, digits or
  `tight` characters becomes one space: `1 2` and `0 .5` stay two tokens,
  never `12`."""

  def joins(c: str) -> bool:
    return c.isalnum() or c in tight

  def gap(match):
    start, stop = match.span()
    keep = 0 < start and stop < len(text)
    keep = keep and joins(text[start - 1]) and joins(text[stop])
    return " " if keep else ""

  return _WHITESPACE_RE.sub(gap, text)


def _expression_value(text: str) -> Fraction | None:
  """A number, or the exact value of integer `+ - * /` arithmetic."""
  value = parse_number(text)
  if value is not None:
    return value
  for latex, op in _LATEX_OPS:
    text = text.replace(latex, op)
  # Imported here: `countdown` imports this module.
  from rlx.rewards.countdown import evaluate_equation

  result = evaluate_equation(text)
  return None if result is None else result[0]


def _equation_value(text: str) -> Fraction | None:
  """The number on the right of `lhs = ... = number` when every side agrees.

  Each side left of the last `=` must be a number or integer arithmetic of
  that value, except that the first may be a single-letter variable
  (`x = 5`, `a_1 = 5`). `5 = 4`, `NaN = 4` and `1001 = 1000` give None.
  """
  sides = text.split("=")
  value = parse_number(sides.pop())
  if value is None:
    return None
  for i, side in enumerate(sides):
    if i == 0 and _VARIABLE_RE.fullmatch(side):
      continue
    if _expression_value(side) != value:
      return None
  return value


def canonical_answer(text) -> Fraction | str | None:
  """Returns a comparable form of an answer: a Fraction or a string.

  Strips surrounding whitespace, wrapping `\\boxed{}`, `$...$`, `\\(...\\)`,
  `\\[...\\]`, `\\left`/`\\right` and a trailing period; reads U+2212 as
  `-` and `\\,` or `{,}` between groups of three digits as a thousands
  separator. Other whitespace and LaTeX spacing (`\\,`, `\\!`, `~`, ...)
  only separate tokens: `1 2`, `1\\!2` and `0 .5` are not numbers. An
  equation `lhs = number` yields the number when every side agrees (see
  `_equation_value`). Other text yields the case-folded string with
  whitespace squeezed. None for a missing or over-long answer.
  """
  if text is None:
    return None
  text = str(text)
  if len(text) > MAX_ANSWER_CHARS:
    return None
  text = _strip_delimiters(text)
  text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
  text = text.replace("\u2212", "-")
  text = _LATEX_SIZING_RE.sub("", text)
  text = _LATEX_THOUSANDS_RE.sub(",", text)
  text = _LATEX_SPACE_RE.sub(" ", text).strip()
  # `4, 500` is two numbers, never 4500.
  number = _squeeze(text, tight="._,").rstrip(".")
  value = parse_number(number)
  if value is None and "=" in number:
    value = _equation_value(number)
  if value is not None:
    return value
  text = _squeeze(text).rstrip(".")
  return text.casefold() if text else None


def answers_match(predicted, gold) -> bool:
  """Whether two answers are equal as numbers, or else as strings."""
  a = canonical_answer(predicted)
  b = canonical_answer(gold)
  if a is None or b is None or type(a) is not type(b):
    return False
  return a == b
