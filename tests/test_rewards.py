"""Tests for rlx.rewards: checkers, length rewards, runner containment."""

import importlib
import math
import random
import re
import subprocess
import sys
import time
from fractions import Fraction

import ml_collections
import numpy as np
import pytest

from rlx import rewards
from rlx.rewards import countdown, extract, length, r1, registry

# Importable by name in the worker whether or not `tests` is a package.
FIX = f"{__package__}.reward_fixtures" if __package__ else "reward_fixtures"
importlib.import_module(FIX)


@pytest.fixture(scope="module")
def runner():
  with rewards.RewardRunner() as r:
    yield r


# --- accuracy ---------------------------------------------------------------

ACCURACY_CASES = [
  ("<answer>33</answer>", "33", True),
  ("<answer> 33 </answer>", "33", True),
  ("<answer>-7</answer>", "-7", True),
  ("<answer>\u22127</answer>", "-7", True),
  ("<answer>+5</answer>", "5", True),
  ("<answer>5.</answer>", "5", True),
  ("<answer>0.50</answer>", "0.5", True),
  ("<answer>0.5</answer>", "1/2", True),
  ("<answer>.5</answer>", "\\frac{1}{2}", True),
  ("<answer>\\frac{3}{4}</answer>", "0.75", True),
  ("<answer>3/4</answer>", "\\frac34", True),
  ("<answer>\\dfrac{-3}{4}</answer>", "-0.75", True),
  ("<answer>-\\frac{3}{4}</answer>", "-3/4", True),
  ("<answer>1,234</answer>", "1234", True),
  ("<answer>1234</answer>", "1,234", True),
  ("<answer>$1,234$.</answer>", "1234", True),
  ("<answer>\\(\\frac{1}{2}\\)</answer>", "0.5", True),
  ("<answer>\\boxed{42}</answer>", "42", True),
  ("<answer>\\boxed{\\boxed{7}}</answer>", "7", True),
  ("<answer>so \\boxed{42}</answer>", "42", True),
  ("The answer is \\boxed{42}.", "42", True),
  ("The answer is \\boxed{\\frac{1}{2}}.", "0.5", True),
  ("<answer>x = 5</answer>", "5", True),
  ("<answer>12+7*3=33</answer>", "33", True),
  ("<answer>Paris</answer>", "paris", True),
  ("<answer>33</answer> then <answer>34</answer>", "34", True),
  ("<answer>33</answer> then <answer>34</answer>", "33", False),
  ("<answer>34</answer>", "33", False),
  ("<answer>-33</answer>", "33", False),
  ("<answer>0.333</answer>", "1/3", False),
  ("<answer>1,23</answer>", "123", False),
  ("<answer>1_000</answer>", "1000", False),
  ("<answer>\u0663\u0663</answer>", "33", False),
  ("<answer>\uff13\uff13</answer>", "33", False),
  ("<answer>33", "33", False),
  ("33", "33", False),
  ("<answer></answer>", "", False),
  ("<answer>1/0</answer>", "5", False),
  ("<answer>Paris</answer>", "5", False),
  ("<answer>5</answer>", "Paris", False),
  # Accepted decorations.
  ("<answer>4.0</answer>", "4", True),
  ("<answer>1,000</answer>", "1000", True),
  ("<answer>1\\,000\\,000</answer>", "1000000", True),
  ("<answer>1{,}000</answer>", "1000", True),
  ("<answer>1/2</answer>", "0.5", True),
  ("<answer>$\\boxed{4}$.</answer>", "4", True),
  ("<answer>\\frac{ 1 }{ 2 }</answer>", "0.5", True),
  ("<answer>- 4</answer>", "-4", True),
  ("<answer>x = 4</answer>", "4", True),
  ("<answer>a_1 = 4</answer>", "4", True),
  ("<answer>2 \\times 2 = 4</answer>", "4", True),
  ("<answer>x = 2+2 = 4</answer>", "4", True),
  ("<answer>4 = 4</answer>", "4", True),
  # Spacing never joins digits; the left of `=` must agree with the right.
  ("<answer>1 2</answer>", "12", False),
  ("<answer>1\\,2</answer>", "12", False),
  ("<answer>1\\!2</answer>", "12", False),
  ("<answer>1~2</answer>", "12", False),
  ("<answer>4 5</answer>", "45", False),
  ("<answer>4, 500</answer>", "4500", False),
  ("<answer>4 ,500</answer>", "4500", False),
  ("<answer>x = 4, 500</answer>", "4500", False),
  ("<answer>(1, 2)</answer>", "(1,2)", True),
  ("<answer>4\n5</answer>", "45", False),
  ("<answer>0 .5</answer>", "0.5", False),
  ("<answer>1\\,00</answer>", "100", False),
  ("<answer>5 = 4</answer>", "4", False),
  ("<answer>NaN=4</answer>", "4", False),
  ("<answer>1001 = 1000</answer>", "1000", False),
  ("<answer>x = 3 = 4</answer>", "4", False),
  ("<answer>=4</answer>", "4", False),
  ("<answer>2+3=4</answer>", "4", False),
  ("<answer>answer = 4</answer>", "4", False),
  ("<answer>New York</answer>", "newyork", False),
]


@pytest.mark.parametrize("completion,gold,expected", ACCURACY_CASES)
def test_accuracy_cases(completion, gold, expected):
  got = r1.accuracy_reward(["p"], [completion], answer=[gold])
  assert got == [float(expected)]


def _renderings(value: Fraction) -> list[str]:
  """Ways a grader writes `value`: integer, decimal, fraction forms."""
  sign = "-" if value < 0 else ""
  v = abs(value)
  out = []
  if v.denominator == 1:
    n = v.numerator
    out += [f"{sign}{n}", f"{sign}{n}.0", f"{sign}{n:,}"]
    out += [f"{sign}{n:,}".replace(",", "\\,"), f"\u2212{n}" if sign else n]
    out += [f"+{n}" if not sign else f"{sign}{n}.00"]
  else:
    p, q = v.numerator, v.denominator
    out += [f"{sign}{p}/{q}", f"{sign}\\frac{{{p}}}{{{q}}}"]
    out += [f"\\dfrac{{{sign}{p}}}{{{q}}}", f"{sign}{2 * p}/{2 * q}"]
    if 10**6 % q == 0:
      digits = f"{float(v):.6f}".rstrip("0")
      out += [f"{sign}{digits}", f"{sign}{digits}0"]
  return [str(x) for x in out]


_WRAPPERS = [
  "{}",
  " {} ",
  "{}.",
  "\\boxed{{{}}}",
  "${}$",
  "$\\boxed{{{}}}$.",
  "\\({}\\)",
  "\\[ {} \\]",
  "x = {}",
  "\\boxed{{n = {}}}",
]
_CONTAINERS = [
  "<answer>{}</answer>",
  "<think>so</think>\n<answer>{}</answer>",
  "The answer is \\boxed{{{}}}.",
]


def _random_value(rng) -> Fraction:
  kind = rng.randrange(4)
  if kind == 0:
    return Fraction(rng.randrange(-50, 50))
  if kind == 1:
    return Fraction(rng.randrange(-(10**7), 10**7))
  if kind == 2:
    return Fraction(rng.randrange(-999, 999), rng.choice([2, 4, 5, 8, 10, 100]))
  return Fraction(rng.randrange(1, 30), rng.randrange(1, 30))


def test_accuracy_property_every_decoration():
  """Random right answers in every accepted decoration score 1; random
  wrong ones in the same decorations, and right digits split by spacing,
  never score."""
  rng = random.Random(0)
  for _ in range(60):
    gold = _random_value(rng)
    wrong = _random_value(rng)
    while wrong == gold:
      wrong = _random_value(rng)
    golds = _renderings(gold)
    gold_text = rng.choice(golds)
    cases = []
    for rendered, right in [(r, True) for r in golds] + [
      (r, False) for r in _renderings(wrong)
    ]:
      for wrap in _WRAPPERS:
        for box in _CONTAINERS:
          cases.append((box.format(wrap.format(rendered)), right))
    digits = golds[0].lstrip("-")
    for i in range(1, len(digits)):
      if not (digits[i - 1] + digits[i]).replace(".", "").isdigit():
        continue
      thousands = i <= 3 and re.fullmatch(r"\d{3}(\.\d*)?", digits[i:])
      for space in (" ", "\\,", "\\!", "\\;", "~", "\\ ", "\\quad ", ", "):
        if thousands and space == "\\,":
          continue  # `406\\,825` is 406825
        split = f"{golds[0][: -len(digits)]}{digits[:i]}{space}{digits[i:]}"
        cases.append((f"<answer>{split}</answer>", False))
    cases.append((f"<answer>{wrong} = {gold_text}</answer>", False))
    cases.append((f"<answer>{gold_text} = {wrong}</answer>", False))
    completions = [c for c, _ in cases]
    got = r1.accuracy_reward(
      None, completions, answer=[gold_text] * len(completions)
    )
    for (completion, right), score in zip(cases, got):
      assert score == float(right), (completion, gold_text)


@pytest.mark.parametrize(
  "text,expected",
  [
    ("0", Fraction(0)),
    ("-12", Fraction(-12)),
    ("0.50", Fraction(1, 2)),
    ("-.25", Fraction(-1, 4)),
    ("1,234,567.5", Fraction(2469135, 2)),
    ("3/4", Fraction(3, 4)),
    ("-6/-8", None),
    ("\\frac{-6}{8}", Fraction(-3, 4)),
    ("\\frac12", Fraction(1, 2)),
    ("9" * 1000, Fraction(int("9" * 1000))),
    ("9" * 1001, None),
    ("1/0", None),
    ("1e5", None),
    ("1_0", None),
    ("\u0661", None),
    ("inf", None),
    ("nan", None),
    ("0x10", None),
    ("", None),
  ],
)
def test_parse_number(text, expected):
  assert extract.parse_number(text) == expected


def test_extract_answer_prefers_last_tag_then_boxed():
  assert extract.extract_answer("<answer>1</answer><answer>2</answer>") == "2"
  assert extract.extract_answer("\\boxed{1} \\boxed{2}") == "2"
  assert extract.extract_answer("\\boxed 7$") == "7"
  assert extract.extract_answer("\\boxed{1") is None
  assert extract.extract_answer("nothing") is None


# --- format -----------------------------------------------------------------

FORMAT_CASES = [
  ("<think>a</think><answer>1</answer>", False, True),
  ("  \n<think>a\nb</think>\n<answer>1</answer>\n ", False, True),
  ("<think></think><answer>1</answer>", False, True),
  ("<think>a</think><answer> </answer>", False, False),
  ("<think>a</think>x<answer>1</answer>", False, False),
  ("<think>a</think><answer>1</answer>x", False, False),
  ("x<think>a</think><answer>1</answer>", False, False),
  ("<think>a<think>b</think><answer>1</answer>", False, False),
  ("<answer>1</answer><think>a</think>", False, False),
  ("<think>a</think><answer>1</answer><answer>2</answer>", False, False),
  ("<think>a</think><answer>1<answer></answer>", False, False),
  ("<think>a</think>", False, False),
  ("<answer>1</answer>", False, False),
  ("", False, False),
  ("a</think><answer>1</answer>", True, True),
  ("\na</think> <answer>1</answer>", True, True),
  ("<think>a</think><answer>1</answer>", True, False),
  ("a</think><answer>1</answer>", False, False),
]


@pytest.mark.parametrize("completion,prefilled,expected", FORMAT_CASES)
def test_format_cases(completion, prefilled, expected):
  got = r1.format_reward(["p"], [completion], think_prefilled=prefilled)
  assert got == [float(expected)]


def test_accuracy_if_format():
  completions = [
    "<think>t</think><answer>4</answer>",
    "<answer>4</answer>",
    "<think>t</think><answer>5</answer>",
  ]
  got = r1.accuracy_if_format_reward(["p"] * 3, completions, answer=["4"] * 3)
  assert got == [1.0, 0.0, 0.0]


# --- countdown --------------------------------------------------------------

COUNTDOWN_CASES = [
  ([44, 19, 35], 28, "<answer>44+19-35</answer>", 1.0),
  ([44, 19, 35], 28, "<answer> (44 + 19) - 35 </answer>", 1.0),
  ([44, 19, 35], 28, "<answer>44+19-35 = 28</answer>", 1.0),
  ([44, 19, 35], 28, "<answer>44+19-35=27</answer>", 0.1),
  ([44, 19, 35], 28, "<answer>44+19+35</answer>", 0.1),
  ([44, 19, 35], 28, "<answer>28</answer>", 0.1),
  ([44, 19, 35], 28, "<answer>44+19-35+0</answer>", 0.1),
  ([44, 19, 35], 28, "<answer>044+19-35</answer>", 0.1),
  ([44, 19, 35], 28, "44+19-35", 0.0),
  ([44, 19, 35], 28, "<answer>44+19-35", 0.0),
  ([1, 2, 3], 6, "<answer>1*2*3</answer>", 1.0),
  ([1, 2, 3], 6, "<answer>2*3</answer>", 0.1),
  ([2, 2, 3], 7, "<answer>3+2+2</answer>", 1.0),
  ([2, 2, 3], 7, "<answer>2*2+3</answer>", 1.0),
  ([2, 2, 3], 8, "<answer>2*3+2</answer>", 1.0),
  ([2, 3, 3], 8, "<answer>2*3+2</answer>", 0.1),
  ([6, 3, 2], 4, "<answer>6/3*2</answer>", 1.0),
  ([1, 3, 3], 1, "<answer>(1/3)*3</answer>", 1.0),
  ([6, 3, 3], 1, "<answer>6/(3-3)</answer>", 0.1),
  ([3, 5], 2, "<answer>5-3</answer>", 1.0),
  ([3, 5], 2, "<answer>-3+5</answer>", 0.1),
  ([3, 5], 2, "<answer>5+-3</answer>", 0.1),
  ([2, 3], 8, "<answer>2**3</answer>", 0.1),
  ([7, 2], 3, "<answer>7//2</answer>", 0.1),
  ([7, 2], 3, "<answer>7%2</answer>", 0.1),
  ([7, 2], 5, "<answer>7 2</answer>", 0.1),
  ([7, 2], 5, "<answer>7-2.0</answer>", 0.1),
  ([7, 2], 5, "<answer>\\boxed{7-2}</answer>", 1.0),
  ([7, 2], 5, "\\boxed{7-2}", 0.0),
]


@pytest.mark.parametrize("numbers,target,completion,expected", COUNTDOWN_CASES)
def test_countdown_cases(numbers, target, completion, expected):
  got = countdown.countdown_reward(
    ["p"], [completion], numbers=[numbers], target=[target]
  )
  assert got == [expected]


def test_countdown_strict_format_and_format_score():
  kw = dict(numbers=[[3, 5]] * 3, target=[2] * 3, strict_format=True)
  completions = [
    "<think>5-3=2</think><answer>5-3</answer>",
    "<answer>5-3</answer>",
    "<think>x</think><answer>5+3</answer>",
  ]
  got = countdown.countdown_reward(["p"] * 3, completions, **kw)
  assert got == [1.0, 0.0, 0.1]
  got = countdown.countdown_reward(
    ["p"], ["<answer>5+3</answer>"], numbers=[[3, 5]], target=[2],
    format_score=0.0,
  )  # fmt: skip
  assert got == [0.0]


def test_evaluate_equation_is_exact():
  assert countdown.evaluate_equation("1/3+2/3") == (Fraction(1), [1, 3, 2, 3])
  assert countdown.evaluate_equation("10-2-3") == (Fraction(5), [10, 2, 3])
  assert countdown.evaluate_equation("2*(3+4)") == (Fraction(14), [2, 3, 4])
  assert countdown.evaluate_equation("1/(2-2)") is None
  assert countdown.evaluate_equation("(" * 33 + "1" + ")" * 33) is None
  assert countdown.evaluate_equation("(" * 32 + "1" + ")" * 32) is not None


# --- length rewards ---------------------------------------------------------


def test_kimi_length_hand_computed():
  right = "<answer>1</answer>"
  wrong = "<answer>2</answer>"
  completions = [right, wrong, right, wrong, wrong, right, right, right, wrong]
  lengths = [10, 20, 30, 40, 10, 20, 5, 5, 5]
  got = length.kimi_length_reward(
    ["p"] * 9,
    completions,
    answer=["1"] * 9,
    completion_lengths=lengths,
    group_size=3,
  )
  # Group 1: lambda = [0.5, 0, -0.5]; group 2: lambda = [-0.5, 0.5, 1/6];
  # group 3: all lengths equal.
  expected = [0.5, 0.0, -0.5, -0.5, 0.0, 1 / 6, 0.0, 0.0, 0.0]
  np.testing.assert_allclose(got, expected)


def test_kimi_length_counts_characters_and_uses_countdown():
  completions = ["<answer>5-3</answer>", "<answer>5-3</answer>   ", "x" * 40]
  got = length.kimi_length_reward(
    ["p"] * 3,
    completions,
    numbers=[[3, 5]] * 3,
    target=[2] * 3,
    group_size=3,
    correct_fn="countdown",
  )
  # Lengths 20, 23, 40: lambda = [0.5, 0.35, -0.5].
  np.testing.assert_allclose(got, [0.5, 0.35, -0.5])


def test_kimi_length_rejects_bad_group_size():
  with pytest.raises(ValueError, match="group_size"):
    length.kimi_length_reward(["p"] * 3, ["a"] * 3, answer=["1"] * 3)
  with pytest.raises(ValueError, match="dividing"):
    length.kimi_length_reward(
      ["p"] * 3, ["a"] * 3, answer=["1"] * 3, group_size=2
    )


def test_overlong_hand_computed():
  lengths = [0, 50, 80, 85, 90, 100, 101, 10_000]
  got = length.overlong_reward(
    ["p"] * 8,
    ["x"] * 8,
    completion_lengths=lengths,
    max_len=100,
    cache_len=20,
  )
  np.testing.assert_allclose(got, [0, 0, 0, -0.25, -0.5, -1, -1, -1])


# --- adversarial inputs -----------------------------------------------------


def _adversarial(marker):
  deep = "(" * 100_000 + "1" + ")" * 100_000
  boxed = "\\boxed{" * 100_000 + "1" + "}" * 100_000
  return [
    f"<answer>__import__('os').system('touch {marker}')</answer>",
    f"<think>x</think><answer>exec(\"open('{marker}', 'w')\")</answer>",
    "<answer>().__class__.__bases__[0].__subclasses__()</answer>",
    "<answer>lambda: 0</answer>",
    "<answer>9**9**9**9</answer>",
    "<answer>9**9**9</answer>",
    f"<answer>{deep}</answer>",
    deep,
    "<answer>" + "9" * 1_000_000 + "</answer>",
    "<answer>" + "1" * 5_000 + "</answer>",
    "<answer>\\frac{" + "9" * 5_000 + "}{1}</answer>",
    "<answer>1e999999</answer>",
    "<answer>1" + "0" * 400 + ".5e-999999</answer>",
    "<answer>\u0661\u0662\u0663</answer>",
    "<answer>\uff11</answer>",
    boxed,
    f"<answer>{boxed}</answer>",
    "\\boxed{" * 100_000,
    "<answer>" + "{" * 100_000 + "</answer>",
    "<answer>" * 100_000 + "1" + "</answer>" * 100_000,
    "<answer>1</answer>" * 50_000,
    "<think>" * 100_000,
    "<answer>" + "-" * 100_000 + "1</answer>",
    "<answer>" + "1+" * 100_000 + "1</answer>",
    "<answer>" + "1+" * 490 + "1</answer>",
    "<answer>" + "(1+" * 30 + "1" + ")" * 30 + "</answer>",
    "<answer>1/(1-1)</answer>",
    "<answer>\x00\udcff\U0001f600</answer>",
    "",
  ]


def _run_all_builtins(completions):
  n = len(completions)
  fields = dict(
    answer=["1"] * n,
    numbers=[[1, 2, 3]] * n,
    target=[6] * n,
    completion_lengths=[len(c) for c in completions],
  )
  out = {}
  for name, fn in registry.BUILTIN_REWARDS.items():
    kwargs = dict(fields)
    if name == "kimi_length":
      kwargs["group_size"] = 1
    if name == "overlong":
      kwargs.update(max_len=1000, cache_len=100)
    out[name] = fn(["p"] * n, completions, **kwargs)
  return out


def test_adversarial_completions_are_contained(tmp_path):
  marker = tmp_path / "pwned"
  for completion in _adversarial(marker):
    start = time.monotonic()
    out = _run_all_builtins([completion])
    assert time.monotonic() - start < 2.0, completion[:40]
    for name, values in out.items():
      assert len(values) == 1 and math.isfinite(values[0]), name
    assert out["countdown"][0] in (0.0, 0.1)
    assert out["format"][0] in (0.0, 1.0)
  assert not marker.exists()


def test_adversarial_numbers_never_match_wrongly():
  big = "1" * 5_000
  assert r1.accuracy_reward(["p"], [f"<answer>{big}</answer>"], answer=[big])
  assert r1.accuracy_reward(
    ["p"], [f"<answer>{big}</answer>"], answer=[big + "1"]
  ) == [0.0]
  assert r1.accuracy_reward(
    ["p"], ["<answer>1e999999</answer>"], answer=["1" + "0" * 999999]
  ) == [0.0]
  assert r1.accuracy_reward(
    ["p"], ["\\boxed{" * 100_000 + "1" + "}" * 100_000], answer=["1"]
  ) == [1.0]


def test_adversarial_through_runner(runner, tmp_path):
  marker = tmp_path / "pwned"
  completions = _adversarial(marker)
  n = len(completions)
  specs = [
    ("format", 1.0, {}),
    ("accuracy", 1.0, {}),
    ("accuracy_if_format", 1.0, {}),
    ("countdown", 1.0, {}),
    ("kimi_length", 1.0, {}),
    ("overlong", 1.0, {"max_len": 1000, "cache_len": 100}),
  ]
  fields = dict(
    answer=["1"] * n,
    numbers=[[1, 2, 3]] * n,
    target=[6] * n,
    completion_lengths=[len(c) for c in completions],
    group_size=1,
  )
  start = time.monotonic()
  total, metrics = runner.compute(
    specs, ["p"] * n, completions, fields, timeout_s=20, fail_on_error=True
  )
  assert time.monotonic() - start < 20
  assert total.shape == (n,) and np.isfinite(total).all()
  assert all(metrics[f"reward_failures/{s[0]}"] == 0 for s in specs)
  assert not marker.exists()


# --- specs ------------------------------------------------------------------


def test_reward_spec_validation():
  with pytest.raises(ValueError, match="accuracy.*countdown.*format"):
    rewards.RewardSpec("acuracy")
  with pytest.raises(ValueError, match="module"):
    rewards.RewardSpec("os.system('x')")
  for weight in (math.nan, math.inf, "heavy", None):
    with pytest.raises(ValueError, match="weight"):
      rewards.RewardSpec("format", weight)
  with pytest.raises(TypeError, match="unknown parameters.*think_prefilled"):
    rewards.RewardSpec("format", 1.0, {"thinking": True})
  with pytest.raises(ValueError, match="max_len"):
    rewards.RewardSpec("overlong", 1.0, {"cache_len": 10})
  with pytest.raises(ValueError, match="cache_len <= max_len"):
    rewards.RewardSpec("overlong", 1.0, {"max_len": 10, "cache_len": 20})
  with pytest.raises(ValueError, match="unknown reward"):
    rewards.RewardSpec("kimi_length", 1.0, {"correct_fn": "nope"})
  with pytest.raises(TypeError, match="JSON"):
    rewards.RewardSpec(f"{FIX}:ones", 1.0, {"x": object()})
  spec = rewards.RewardSpec("overlong", 2, {"max_len": 10, "cache_len": 5})
  assert spec.weight == 2.0 and isinstance(spec.weight, float)
  assert rewards.RewardSpec.parse("format") == rewards.RewardSpec("format")
  assert rewards.RewardSpec.parse(("format", 0.5)).weight == 0.5
  assert rewards.RewardSpec.parse({"name": "format", "weight": 3}).weight == 3
  assert rewards.RewardSpec(f"{FIX}:anything").name.endswith(":anything")
  config = ml_collections.ConfigDict(
    {"name": "overlong", "kwargs": {"max_len": 10, "cache_len": 5}}
  )
  assert rewards.RewardSpec.parse(config).kwargs == {
    "max_len": 10,
    "cache_len": 5,
  }


# --- runner -----------------------------------------------------------------

NAN = float("nan")  # a sample no reward scored (TRL: left out of the stats)


def test_runner_weighted_total_and_metrics(runner):
  completions = [
    "<think>t</think><answer>4</answer>",
    "<answer>4</answer>",
    "<think>t</think><answer>5</answer>",
    "nothing",
  ]
  total, metrics = runner.compute(
    [("accuracy", 2.0), ("format", 0.5)],
    ["p"] * 4,
    completions,
    {"answer": ["4"] * 4},
  )
  assert total.dtype == np.float32
  np.testing.assert_allclose(total, [2.5, 2.0, 0.5, 0.0])
  assert metrics["reward/accuracy"] == 0.5
  assert metrics["reward/format"] == 0.5
  assert metrics["reward_failures/accuracy"] == 0
  assert metrics["reward/total"] == pytest.approx(1.25)


def test_runner_reuses_worker_and_passes_fields(runner):
  _, _ = runner.compute([f"{FIX}:ones"], ["p"], ["c"])
  pid = runner.pid
  total, _ = runner.compute(
    [(f"{FIX}:echo_fields", 1.0, {"scale": 3.0})],
    ["p", "q"],
    ["a", "b"],
    {"answer": np.array([1, 2]), "unused": (1, 2)},
  )
  np.testing.assert_allclose(total, [3.0, 6.0])
  assert runner.pid == pid


def test_runner_empty_batch(runner):
  total, metrics = runner.compute(["format"], [], [])
  assert total.shape == (0,) and metrics["reward/format"] == 0.0


def test_runner_checks_inputs(runner):
  with pytest.raises(ValueError, match="distinct"):
    runner.compute(["format", "format"], ["p"], ["c"])
  with pytest.raises(ValueError, match="prompts"):
    runner.compute(["format"], ["p", "q"], ["c"])
  with pytest.raises(TypeError, match="JSON"):
    runner.compute(["format"], ["p"], ["c"], {"answer": [object()]})


def test_runner_raising_reward_zeroes_samples(runner):
  total, metrics = runner.compute(
    [(f"{FIX}:raises", 1.0), ("format", 1.0)],
    ["p"] * 2,
    ["<think></think><answer>1</answer>", "x"],
  )
  np.testing.assert_allclose(total, [1.0, 0.0])
  assert metrics[f"reward_failures/{FIX}:raises"] == 2
  assert metrics["reward_failures/format"] == 0


def test_runner_retries_per_sample(runner):
  total, metrics = runner.compute(
    [f"{FIX}:raises_on_bad"], ["p"] * 3, ["ok", "bad", "ok"]
  )
  np.testing.assert_allclose(total, [1.0, np.nan, 1.0])
  assert metrics[f"reward_failures/{FIX}:raises_on_bad"] == 1


def test_runner_retries_per_group(runner):
  total, metrics = runner.compute(
    [f"{FIX}:raises_on_bad"],
    ["p"] * 4,
    ["ok", "ok", "bad", "ok"],
    {"group_size": 2},
  )
  np.testing.assert_allclose(total, [2.0, 2.0, np.nan, np.nan])
  assert metrics[f"reward_failures/{FIX}:raises_on_bad"] == 2


def test_runner_timeout_kills_and_recovers(runner):
  runner.compute(["format"], ["p"], ["c"])
  pid = runner.pid
  start = time.monotonic()
  total, metrics = runner.compute(
    [(f"{FIX}:sleeps_forever", 1.0), ("format", 1.0)],
    ["p"] * 3,
    ["<think></think><answer>1</answer>", "a", "b"],
    timeout_s=1.0,
  )
  assert time.monotonic() - start < 8.0
  np.testing.assert_allclose(total, [1.0, 0.0, 0.0])
  assert metrics[f"reward_failures/{FIX}:sleeps_forever"] == 3
  assert runner.pid is not None and runner.pid != pid
  total, _ = runner.compute([f"{FIX}:ones"], ["p"], ["c"])
  np.testing.assert_allclose(total, [1.0])


def test_runner_timeout_spares_good_samples(runner):
  total, metrics = runner.compute(
    [f"{FIX}:sleeps_on_hang"], ["p"] * 3, ["a", "b", "hang"], timeout_s=1.0
  )
  np.testing.assert_allclose(total, [1.0, 1.0, np.nan])
  assert metrics[f"reward_failures/{FIX}:sleeps_on_hang"] == 1


@pytest.mark.parametrize(
  "fn,completions,failures,expected",
  [
    ("returns_none", ["a", "b"], 2, [NAN, NAN]),
    ("wrong_length", ["a", "b"], 2, [NAN, NAN]),
    ("exits", ["a", "b"], 2, [NAN, NAN]),
    ("returns_invalid", ["none", "nan", "inf", "s", "ok"], 4, [NAN] * 4 + [1]),
    ("prints", ["a"], 0, [2]),
  ],
)
def test_runner_bad_outputs(runner, fn, completions, failures, expected):
  n = len(completions)
  total, metrics = runner.compute([f"{FIX}:{fn}"], ["p"] * n, completions)
  np.testing.assert_allclose(total, expected)
  assert metrics[f"reward_failures/{FIX}:{fn}"] == failures


def test_runner_unscored_samples_are_nan_per_reward(runner):
  """One reward failing for a sample leaves the others' weighted sum (TRL's
  nansum); a sample no reward scored is NaN; means skip unscored samples."""
  total, metrics = runner.compute(
    [(f"{FIX}:returns_invalid", 2.0), (f"{FIX}:raises_on_bad", 0.5)],
    ["p"] * 3,
    ["ok", "none", "bad"],
  )
  np.testing.assert_allclose(total, [2.0 + 0.5, 0.5, 2.0])
  assert metrics[f"reward/{FIX}:returns_invalid"] == 1.0
  assert metrics[f"reward_failures/{FIX}:returns_invalid"] == 1
  total, metrics = runner.compute(
    [f"{FIX}:returns_invalid"], ["p"] * 3, ["ok", "none", "ok"]
  )
  np.testing.assert_allclose(total, [1.0, NAN, 1.0])
  assert metrics["reward/total"] == 1.0


@pytest.mark.parametrize(
  "fn,match",
  [
    ("raises", "boom"),
    ("sleeps_forever", "timed out"),
    ("returns_none", "expected a list"),
    ("returns_invalid", "must be finite"),
    ("wrong_length", "3 values for 2"),
  ],
)
def test_runner_fail_on_error(runner, fn, match):
  completions = ["nan", "ok"] if fn == "returns_invalid" else ["a", "b"]
  with pytest.raises(rewards.RewardError, match=f"{fn}(.|\n)*{match}"):
    runner.compute(
      [f"{FIX}:{fn}"],
      ["p"] * 2,
      completions,
      timeout_s=1.0,
      fail_on_error=True,
    )


def test_runner_unresolvable_reward_always_raises(runner):
  for name in (f"{FIX}:missing", "no_such_module_xyz:fn"):
    with pytest.raises(rewards.RewardError, match="cannot import|has no"):
      runner.compute([name], ["p"], ["c"])


def test_compute_rewards_with_jax_imported():
  jax = pytest.importorskip("jax")
  assert float(jax.numpy.ones(3).sum()) == 3.0
  total, metrics = rewards.compute_rewards(
    [("accuracy", 1.0, {}), (f"{FIX}:ones", 0.5, {})],
    ["p"] * 2,
    ["<answer>1</answer>", "<answer>2</answer>"],
    {"answer": ["1", "1"]},
  )
  np.testing.assert_allclose(total, [1.5, 0.5])
  assert metrics["reward/accuracy"] == 0.5


_ORPHAN_SCRIPT = """
import sys
sys.path[:0] = {path!r}
from rlx.rewards import RewardRunner
runner = RewardRunner()
runner.compute(["format"], ["p"], ["c"])
print(runner.pid, flush=True)
runner.compute(["{fix}:sleeps_forever"], ["p"], ["c"], timeout_s=100)
"""


def _alive(pid):
  try:
    with open(f"/proc/{pid}/status") as f:
      return "\nState:\tZ" not in f.read()
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_worker_exits_when_parent_is_killed():
  script = _ORPHAN_SCRIPT.format(path=sys.path, fix=FIX)
  parent = subprocess.Popen(
    [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
  )
  try:
    worker = int(parent.stdout.readline())
    assert _alive(worker)
  finally:
    parent.kill()
    parent.wait()
    parent.stdout.close()
  deadline = time.monotonic() + 10
  while _alive(worker) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not _alive(worker)


# --- invalid values, imports, limits (issue 11) -----------------------------


def test_runner_counts_invalid_values_by_cause(runner, caplog):
  fn = f"{FIX}:returns_invalid"
  completions = ["none", "nan", "inf", "s", "ok", "none"]
  with caplog.at_level("WARNING"):
    total, metrics = runner.compute([fn], ["p"] * 6, completions)
  # Invalid values leave their samples unscored (NaN), as in TRL.
  nan = np.nan
  np.testing.assert_allclose(total, [nan, nan, nan, nan, 1, nan])
  assert metrics[f"reward_failures/{fn}"] == 5
  causes = {
    k.rpartition("/")[2]: v for k, v in metrics.items() if fn + "/" in k
  }
  assert causes == {
    "error": 0,
    "unscorable": 2,
    "nan": 1,
    "inf": 1,
    "out_of_bounds": 0,
    "not_a_number": 1,
  }
  assert "5 invalid values" in caplog.text and "unscorable: 2" in caplog.text


def test_runner_bounds_values_after_float32(runner):
  """1e300 is finite in float64 but inf in the float32 total; values over
  `max_abs` are invalid."""
  fn = f"{FIX}:returns_huge"
  completions = ["1e300", "1e39", "int", "2e6", "ok"]
  total, metrics = runner.compute([fn], ["p"] * 5, completions)
  assert not np.isinf(total).any()
  np.testing.assert_allclose(total, [np.nan] * 4 + [1])
  assert metrics[f"reward_failures/{fn}/out_of_bounds"] == 3
  assert metrics[f"reward_failures/{fn}/inf"] == 1
  total, metrics = runner.compute([fn], ["p"], ["2e6"], max_abs=1e7)
  np.testing.assert_allclose(total, [2e6])
  with pytest.raises(rewards.RewardError, match="1e\\+300.*out_of_bounds"):
    runner.compute([fn], ["p"] * 2, ["ok", "1e300"], fail_on_error=True)


def _write_module(path, name, body):
  (path / f"{name}.py").write_text(
    body + "\ndef fn(prompts, completions, **kw):\n  return [1.0]\n"
  )
  return f"{name}:fn"


def test_reward_imports_are_checked_up_front(tmp_path, monkeypatch):
  """A module that exits, hangs or raises at import, a missing one and a
  function of the wrong arity raise RewardError before any step, and so
  does the first compute: never a per-step retry."""
  monkeypatch.syspath_prepend(str(tmp_path))
  exits = _write_module(tmp_path, "rlx_t11_exits", "import sys; sys.exit(3)")
  dies = _write_module(tmp_path, "rlx_t11_dies", "import os; os._exit(3)")
  hangs = _write_module(
    tmp_path, "rlx_t11_hangs", "import time\ntime.sleep(99)"
  )
  raises = _write_module(tmp_path, "rlx_t11_raises", "1 / 0")
  bad = _write_module(tmp_path, "rlx_t11_bad", "raise ValueError('no key')")
  good = _write_module(tmp_path, "rlx_t11_good", "")
  cases = [
    (exits, "importing it raised(.|\n)*SystemExit"),
    (dies, "ended the reward worker"),
    (hangs, "took over 2s"),
    (raises, "ZeroDivisionError"),
    (bad, "importing it raised(.|\n)*ValueError: no key"),
    ("rlx_t11_missing:fn", "cannot import"),
    (f"{FIX}:takes_one_arg", "must take \\(prompts, completions\\)"),
  ]
  with rewards.RewardRunner(import_timeout_s=2.0) as runner:
    for name, match in cases:
      start = time.monotonic()
      with pytest.raises(rewards.RewardError, match=match):
        runner.check(name)
      with pytest.raises(rewards.RewardError, match=match):
        runner.compute([name], ["p"], ["c"])
      assert time.monotonic() - start < 10, name
    runner.check(good)
    np.testing.assert_allclose(runner.compute([good], ["p"], ["c"])[0], [1])
  specs = rewards.check_reward_specs(["format", (good, 2.0)], timeout_s=5)
  assert [s.weight for s in specs] == [1.0, 2.0]
  with pytest.raises(rewards.RewardError, match="SystemExit"):
    rewards.check_reward_specs(["format", exits], timeout_s=5)


def test_worker_memory_is_limited():
  with rewards.RewardRunner(memory_limit_mb=256) as runner:
    fn = f"{FIX}:allocates"
    total, metrics = runner.compute([fn], ["p"] * 2, ["16", "2048"])
    np.testing.assert_allclose(total, [1, np.nan])
    assert metrics[f"reward_failures/{fn}/error"] == 1
    with pytest.raises(rewards.RewardError, match="reward.memory_limit_mb"):
      runner.compute([fn], ["p"], ["2048"], fail_on_error=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp")
def test_worker_cannot_signal_the_trainer(runner):
  """Signal 0 only checks permission, so this is harmless even where the
  filter is missing; the worker's own children stay killable."""
  fn = f"{FIX}:can_signal"
  total, _ = runner.compute(
    [fn], ["p"] * 4, ["trainer", "group", "all", "child"]
  )
  np.testing.assert_allclose(total, [0, 0, 0, 1])


_KILLER_SCRIPT = """
import sys
sys.path[:0] = {path!r}
from rlx.rewards import RewardRunner
runner = RewardRunner()
total, metrics = runner.compute(["{fix}:kills_trainer"], ["p"], ["c"])
print("alive", metrics["reward_failures/{fix}:kills_trainer/error"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp")
def test_worker_sigkill_of_trainer_fails_its_batch():
  script = _KILLER_SCRIPT.format(path=sys.path, fix=FIX)
  out = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
  )
  assert out.returncode == 0 and out.stdout.split() == ["alive", "1.0"]


def test_runner_compute_each_gives_each_rewards_values(runner):
  """`compute_each`: the same total as `compute`, and each function's own
  unweighted values, NaN where that function did not score the sample."""
  specs = [(f"{FIX}:returns_invalid", 2.0), (f"{FIX}:raises_on_bad", 0.5)]
  args = (specs, ["p"] * 3, ["ok", "none", "bad"])
  total, table, metrics = runner.compute_each(*args)
  np.testing.assert_allclose(total, runner.compute(*args)[0])
  np.testing.assert_allclose(table, [[1.0, 1.0], [NAN, 1.0], [1.0, NAN]])
  assert metrics[f"reward_failures/{FIX}:raises_on_bad"] == 1
