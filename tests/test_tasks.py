"""Tests for rlx.data tasks, JSONL loading and the data iterator."""

import json

import numpy as np
import pytest

from rlx.data import jsonl, tasks
from rlx.data.iterator import DataIterator
from rlx.rewards import countdown, r1


def _prompts(examples):
  return [ex["prompt"] for ex in examples]


# --- arithmetic -------------------------------------------------------------


@pytest.mark.parametrize(
  "operands,ops,value,steps",
  [
    ([12, 7, 3], "+*", 33, ["7*3=21", "12+21=33"]),
    ([2, 3, 4], "-*", -10, ["3*4=12", "2-12=-10"]),
    ([3, 5, 4], "-+", 2, ["3-5=-2", "-2+4=2"]),
    ([2, 3, 4, 5], "*+*", 26, ["2*3=6", "4*5=20", "6+20=26"]),
    ([9, 0], "*", 0, ["9*0=0"]),
  ],
)
def test_solve_arithmetic(operands, ops, value, steps):
  assert tasks.solve_arithmetic(operands, ops) == (value, steps)


def test_arithmetic_examples_are_correct_and_well_formed():
  task = tasks.make_task(
    "arithmetic", num_train=200, num_eval=50, digits=3, num_operands=3
  )
  examples = task.train + task.eval
  assert len(task.train) == 200 and len(task.eval) == 50
  assert task.reward_fields == ("answer",)
  for ex in examples:
    value, literals = countdown.evaluate_equation(ex["expression"])
    assert value == int(ex["answer"])
    assert len(literals) == 3 and all(0 <= x < 1000 for x in literals)
    assert ex["prompt"].startswith(ex["expression"] + "=")
  solutions = [ex["solution"] for ex in examples]
  answers = [ex["answer"] for ex in examples]
  n = len(examples)
  assert r1.format_reward([""] * n, solutions) == [1.0] * n
  assert r1.accuracy_reward([""] * n, solutions, answer=answers) == [1.0] * n


def test_arithmetic_template_and_ops():
  task = tasks.make_task(
    "arithmetic", num_train=20, num_eval=0, ops="+", template="{expression}="
  )
  assert task.eval == []
  for ex in task.train:
    assert ex["prompt"] == ex["expression"] + "="
    assert "-" not in ex["expression"] and "*" not in ex["expression"]
  with pytest.raises(ValueError, match="unknown field 'question'"):
    tasks.make_task("arithmetic", num_train=1, template="{question}")
  with pytest.raises(ValueError, match="ops"):
    tasks.make_task("arithmetic", num_train=1, ops="/")


@pytest.mark.parametrize(
  "operands,ops,paths",
  [
    # 8+6 carries; 14+5 and 4+5 do not.
    ([8, 6, 5], "++", {9: 0.7, 19: 0.3}),
    # The dropped carry propagates through the next step.
    ([7, 8, 3], "+-", {2: 0.7, 12: 0.3}),
    # Whether the second step carries depends on what was written first.
    ([9, 9, 9], "++", {7: 0.49, 17: 0.21 + 0.21, 27: 0.09}),
    # Subtraction and carry-free additions are always right.
    ([3, 5, 4], "-+", {2: 1.0}),
    # Products are exact; the sum 6+20 carries nothing (6+0).
    ([2, 3, 4, 5], "*+*", {26: 1.0}),
    ([5, 3, 9], "*+", {14: 0.7, 24: 0.3}),
  ],
)
def test_carry_teacher_solutions(operands, ops, paths):
  got = {}
  for p, value, steps in tasks.teacher_solutions(operands, ops, "carry", 0.7):
    got[value] = got.get(value, 0.0) + p
    # Each step follows from the previous written value.
    assert steps[-1].endswith(f"={value}")
  assert got.keys() == paths.keys()
  for value, p in paths.items():
    assert got[value] == pytest.approx(p)


def test_random_teacher_slips_each_step_at_its_rate():
  paths = tasks.teacher_solutions([4, 3, 2], "+-", "random", 0.2)
  assert sum(p for p, _, _ in paths) == pytest.approx(1.0)
  exact = [p for p, v, s in paths if s == ["4+3=7", "7-2=5"]]
  assert exact == [pytest.approx(0.8**2)]
  assert {v for _, v, _ in paths} == set(range(1, 10))


def test_teacher_draws_solutions_and_labels_classes():
  def make(teacher, rate):
    return tasks.make_task(
      "arithmetic",
      num_train=3000,
      num_eval=256,
      digits=1,
      num_operands=3,
      ops="+-",
      teacher=teacher,
      teacher_rate=rate,
    )

  exact, carry = make("exact", 0.0), make("carry", 0.7)
  # The problems, answers and classes do not depend on the teacher.
  for a, b in zip(exact.train + exact.eval, carry.train + carry.eval):
    assert (a["prompt"], a["answer"]) == (b["prompt"], b["answer"])
    assert a["category"] == b["category"]
    assert a["teacher_accuracy"] == 1.0 and a["teacher_majority"]
  for ex in carry.train + carry.eval:
    value, steps = tasks.solve_arithmetic(
      [int(x) for x in ex["expression"].replace("-", "+").split("+")],
      [c for c in ex["expression"] if c in "+-"],
    )
    sums = [
      [int(x) for x in s.split("=")[0].split("+")] for s in steps if "+" in s
    ]
    # A carry: two non-negative numbers whose units digits make ten or more.
    has_carry = any(min(x) >= 0 and sum(x) % 10 < x[0] % 10 for x in sums)
    assert ex["category"] == ("carry" if has_carry else "no_carry")
    if not has_carry:
      assert ex["teacher_accuracy"] == 1.0 and ex["teacher_majority"]
      assert ex["solution"] == exact_solution(steps, value)
    else:  # at rate 0.7 the teacher's most likely answer is wrong
      assert ex["teacher_accuracy"] <= 0.3 + 1e-9
      assert not ex["teacher_majority"]
  # The drawn solutions are right as often as the teacher's probabilities
  # say (binomial, 4 standard errors).
  right = [
    ex["solution"].endswith(f"<answer>{ex['answer']}</answer>")
    for ex in carry.train
  ]
  p = np.array([ex["teacher_accuracy"] for ex in carry.train])
  assert abs(np.sum(right) - p.sum()) < 4 * np.sqrt(np.sum(p * (1 - p)))
  assert 0.25 < np.mean([ex["category"] == "carry" for ex in carry.eval])
  with pytest.raises(ValueError, match="teacher must be one of"):
    make("sloppy", 0.5)
  with pytest.raises(ValueError, match="teacher_rate"):
    make("carry", 1.5)


def test_draw_solution_follows_the_teacher():
  task = tasks.make_task(
    "arithmetic",
    num_train=200,
    num_eval=0,
    digits=1,
    num_operands=3,
    ops="+",
    teacher="carry",
    teacher_rate=0.7,
  )
  ex = next(e for e in task.train if len(e.get("teacher_solutions", [])) == 2)
  options = ex["teacher_solutions"]
  assert sum(p for p, _ in options) == pytest.approx(1.0)
  assert ex["solution"] in [text for _, text in options]
  rng = np.random.default_rng(0)
  draws = [tasks.draw_solution(ex, rng) for _ in range(4000)]
  for p, text in options:  # 5 standard errors
    assert abs(draws.count(text) / 4000 - p) < 5 * np.sqrt(p * (1 - p) / 4000)
  exact = next(e for e in task.train if "teacher_solutions" not in e)
  assert exact["teacher_accuracy"] == 1.0
  assert tasks.draw_solution(exact, rng) == exact["solution"]


def exact_solution(steps, value):
  return f"<think>{', '.join(steps)}</think><answer>{value}</answer>"


def test_synthetic_splits_disjoint_and_deterministic():
  a = tasks.make_task("arithmetic", num_train=300, num_eval=100, seed=3)
  b = tasks.make_task("arithmetic", num_train=300, num_eval=100, seed=3)
  c = tasks.make_task("arithmetic", num_train=50, num_eval=100, seed=3)
  d = tasks.make_task("arithmetic", num_train=300, num_eval=100, seed=4)
  assert a == b
  assert not set(_prompts(a.train)) & set(_prompts(a.eval))
  assert len(set(_prompts(a.train + a.eval))) == 400
  assert c.eval == a.eval
  assert d.eval != a.eval


def test_synthetic_splits_too_small_space():
  # 10 * 10 one-digit sums exist.
  task = tasks.make_task(
    "arithmetic", num_train=90, num_eval=10, digits=1, ops="+"
  )
  assert len(set(_prompts(task.train + task.eval))) == 100
  with pytest.raises(ValueError, match="distinct problems"):
    tasks.make_task("arithmetic", num_train=101, num_eval=0, digits=1, ops="+")


# --- countdown --------------------------------------------------------------


def test_countdown_examples_are_solvable():
  task = tasks.make_task("countdown", num_train=300, num_eval=50, seed=1)
  assert task.reward_fields == ("numbers", "target")
  examples = task.train + task.eval
  for ex in examples:
    assert len(ex["numbers"]) in (3, 4)
    assert all(1 <= x <= 99 for x in ex["numbers"])
    assert 1 <= ex["target"] <= 100
    assert countdown.check_countdown(ex["answer"], ex["numbers"], ex["target"])
  n = len(examples)
  fields = tasks.collate_fields(examples, task.reward_fields)
  solutions = [ex["solution"] for ex in examples]
  assert countdown.countdown_reward([""] * n, solutions, **fields) == [1.0] * n
  assert r1.format_reward([""] * n, solutions) == [1.0] * n
  keys = lambda exs: {(tuple(sorted(e["numbers"])), e["target"]) for e in exs}
  assert not keys(task.train) & keys(task.eval)
  counts = {len(ex["numbers"]) for ex in examples}
  assert counts == {3, 4}


def test_countdown_fixed_count_and_template():
  task = tasks.make_task(
    "countdown",
    num_train=10,
    num_eval=2,
    num_numbers=3,
    max_target=50,
    template="{numbers}|{target}",
  )
  for ex in task.train + task.eval:
    assert len(ex["numbers"]) == 3 and ex["target"] <= 50
    assert ex["prompt"] == " ".join(map(str, ex["numbers"])) + "|" + str(
      ex["target"]
    )


# --- make_task and collate_fields ------------------------------------------


def test_make_task_errors():
  with pytest.raises(ValueError, match="arithmetic.*countdown.*jsonl"):
    tasks.make_task("gsm9k")
  with pytest.raises(TypeError, match="num_digits"):
    tasks.make_task("arithmetic", num_digits=3)


def test_collate_fields_repeats_for_groups():
  examples = [{"answer": "1", "target": 5}, {"answer": "2", "target": 6}]
  got = tasks.collate_fields(examples, ("answer", "target"), repeat=2)
  assert got == {"answer": ["1", "1", "2", "2"], "target": [5, 5, 6, 6]}
  with pytest.raises(KeyError, match="numbers"):
    tasks.collate_fields(examples, ("numbers",))


# --- JSONL ------------------------------------------------------------------


def _write(path, rows):
  path.write_text(
    "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
  )
  return str(path)


GSM8K_ROWS = [
  {
    "question": "Natalia sold 48 clips and half as many more. Total?",
    "answer": "Half is 48/2 = <<48/2=24>>24.\nTotal 48+24 = <<48+24=72>>72.\n"
    "#### 72",
  },
  {"question": "Big?", "answer": "Count.\n#### 1,234"},
  {"question": "Negative?", "answer": "#### -5"},
]


def test_jsonl_gsm8k(tmp_path):
  path = _write(tmp_path / "gsm.jsonl", GSM8K_ROWS)
  task = tasks.make_task(
    "jsonl",
    path=path,
    prompt_field="question",
    answer_format="gsm8k",
    template="Q: {prompt}\nA:",
    eval_fraction=0.0,
  )
  assert task.eval == [] and task.reward_fields == ("answer",)
  first, big, neg = task.train
  assert first["prompt"] == "Q: " + GSM8K_ROWS[0]["question"] + "\nA:"
  assert first["answer"] == "72"
  assert first["solution"] == (
    "<think>Half is 48/2 = 24.\nTotal 48+24 = 72.</think><answer>72</answer>"
  )
  assert big["answer"] == "1234" and neg["answer"] == "-5"
  solutions = [ex["solution"] for ex in task.train]
  answers = [ex["answer"] for ex in task.train]
  assert r1.format_reward([""] * 3, solutions) == [1.0] * 3
  assert r1.accuracy_reward([""] * 3, solutions, answer=answers) == [1.0] * 3


def test_jsonl_plain_with_extra_fields(tmp_path):
  rows = [
    {"q": "a", "ans": 3, "nums": [1, 2], "why": "1+2"},
    {"q": "b", "ans": "7", "nums": [3, 4], "why": "3+4"},
  ]
  path = _write(tmp_path / "d.jsonl", rows + [""])
  examples = jsonl.load_jsonl(
    path,
    prompt_field="q",
    answer_field="ans",
    solution_field="why",
    extra_fields={"numbers": "nums"},
    template="{prompt} ({why})",
  )
  assert examples[0] == {
    "prompt": "a (1+2)",
    "answer": "3",
    "solution": "<think>1+2</think><answer>3</answer>",
    "numbers": [1, 2],
  }
  assert len(jsonl.load_jsonl(path, prompt_field="q", answer_field="ans")) == 2
  assert (
    len(
      jsonl.load_jsonl(
        path, prompt_field="q", answer_field="ans", max_examples=1
      )
    )
    == 1
  )
  task = tasks.make_task(
    "jsonl",
    path=path,
    prompt_field="q",
    answer_field="ans",
    extra_fields=["nums"],
    eval_fraction=0.0,
  )
  assert task.reward_fields == ("answer", "nums")


@pytest.mark.parametrize(
  "rows,kwargs,match",
  [
    ([{"q": 1, "a": 1}, "{oops"], {}, r"d\.jsonl:2: invalid JSON"),
    ([{"q": 1, "a": 1}, [1, 2]], {}, r"d\.jsonl:2: expected a JSON object"),
    (
      [{"q": 1, "a": 1}, {"q": 2, "a": 2}, {"q": 3}],
      {},
      r"d\.jsonl:3: missing field 'a'",
    ),
    ([{"q": 1, "a": "no mark"}], {"answer_format": "gsm8k"}, r":1: .*####"),
    ([{"q": 1, "a": 1}], {"template": "{nope}"}, r"d\.jsonl:1: .*template"),
    ([{"q": 1, "a": 1}], {"answer_format": "latex"}, "answer_format"),
    ([""], {}, "no examples"),
    (
      [{"q": 1, "a": 1}, {"q": 2, "a": None}],
      {},
      r"d\.jsonl:2: field 'a' is null; it must be a string or a number",
    ),
    ([{"q": None, "a": 1}], {}, r"d\.jsonl:1: field 'q' is null"),
    ([{"q": 1, "a": float("nan")}], {}, r"d\.jsonl:1: field 'a' is NaN"),
    ([{"q": 1, "a": float("inf")}], {}, r"d\.jsonl:1: field 'a' is Infinity"),
    ([{"q": 1, "a": [4]}], {}, r"d\.jsonl:1: field 'a' is \[4\]"),
    ([{"q": 1, "a": "  "}], {}, r"d\.jsonl:1: field 'a' is empty"),
  ],
)
def test_jsonl_errors(tmp_path, rows, kwargs, match):
  path = _write(tmp_path / "d.jsonl", rows)
  with pytest.raises(ValueError, match=match):
    jsonl.load_jsonl(path, prompt_field="q", answer_field="a", **kwargs)


def test_jsonl_missing_or_non_utf8_file_names_the_path(tmp_path):
  missing = str(tmp_path / "nope.jsonl")
  with pytest.raises(ValueError, match=r"nope\.jsonl: cannot open"):
    jsonl.load_jsonl(missing)
  path = tmp_path / "latin1.jsonl"
  path.write_bytes(
    b'{"prompt": "a", "answer": "1"}\n{"prompt": "caf\xe9", "answer": "2"}\n'
  )
  with pytest.raises(ValueError, match=r"latin1\.jsonl:2: not UTF-8 text"):
    jsonl.load_jsonl(str(path))
  from rlx.train import config as config_lib
  from rlx.train import loop

  c = config_lib.default_config()
  c.task.name = "jsonl"
  c.task.options = {"path": missing}
  with pytest.raises(ValueError, match=r"config.task.options.*nope\.jsonl"):
    loop.Trainer(c, str(tmp_path / "run"))


def test_jsonl_hash_split(tmp_path):
  rows = [{"prompt": f"question {i}", "answer": str(i)} for i in range(400)]
  path = _write(tmp_path / "a.jsonl", rows + rows[:50])
  reversed_path = _write(tmp_path / "b.jsonl", rows[::-1])
  task = tasks.make_task("jsonl", path=path, eval_fraction=0.25)
  other = tasks.make_task("jsonl", path=reversed_path, eval_fraction=0.25)
  train, eval_ = set(_prompts(task.train)), set(_prompts(task.eval))
  assert not train & eval_
  assert len(train | eval_) == 400
  assert 60 < len(eval_) < 140
  assert eval_ == set(_prompts(other.eval))


def test_jsonl_eval_file_removes_overlap(tmp_path):
  rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(10)]
  path = _write(tmp_path / "train.jsonl", rows)
  eval_path = _write(tmp_path / "eval.jsonl", rows[8:] + [rows[0]])
  task = tasks.make_task("jsonl", path=path, eval_path=eval_path)
  assert _prompts(task.train) == [f"q{i}" for i in range(1, 8)]
  assert _prompts(task.eval) == ["q8", "q9", "q0"]


# --- iterator ---------------------------------------------------------------


def _take(it, k):
  return [next(it) for _ in range(k)]


def test_iterator_deterministic_and_epochs_are_permutations():
  examples = list(range(10))
  a = _take(DataIterator(examples, 4, seed=7), 5)
  b = _take(DataIterator(examples, 4, seed=7), 5)
  c = _take(DataIterator(examples, 4, seed=8), 5)
  assert a == b and a != c
  assert all(len(batch) == 4 for batch in a)
  stream = [x for batch in a for x in batch]
  assert sorted(stream[:10]) == examples and sorted(stream[10:20]) == examples
  expected = np.random.default_rng((7, 1)).permutation(10).tolist()
  assert stream[10:20] == expected


def test_iterator_restore_gives_same_continuation():
  examples = [{"id": i} for i in range(13)]
  it = DataIterator(examples, 5, seed=0)
  _take(it, 4)  # Ends mid-epoch 1.
  state = json.loads(json.dumps(it.state()))
  assert state == {"epoch": 1, "index": 7}
  expected = _take(it, 6)
  resumed = DataIterator(examples, 5, seed=0)
  resumed.restore(state)
  assert _take(resumed, 6) == expected


def test_iterator_batch_larger_than_dataset():
  it = DataIterator(["a", "b"], 5, seed=1)
  batch = next(it)
  assert len(batch) == 5 and sorted(batch[:2]) == ["a", "b"]
  assert it.state() == {"epoch": 2, "index": 1}


def test_iterator_errors():
  with pytest.raises(ValueError, match="at least one"):
    DataIterator([], 2)
  with pytest.raises(ValueError, match="batch_size"):
    DataIterator([1], 0)
  with pytest.raises(ValueError, match="seed"):
    DataIterator([1], 1, seed=-1)
  it = DataIterator([1, 2, 3], 2)
  for bad in ({"epoch": 0, "index": 3}, {"epoch": -1, "index": 0}, {}):
    with pytest.raises(ValueError, match="iterator state"):
      it.restore(bad)


def test_write_jsonl_round_trips_through_load_jsonl(tmp_path):
  rows = [
    {"prompt": "1+2=", "answer": "3", "why": "sum"},
    {"prompt": "5-4=", "answer": "1", "why": "difference"},
  ]
  path = jsonl.write_jsonl(str(tmp_path / "rows.jsonl"), rows)
  examples = jsonl.load_jsonl(path, extra_fields=["why"])
  assert [(e["prompt"], e["answer"], e["why"]) for e in examples] == [
    (r["prompt"], r["answer"], r["why"]) for r in rows
  ]
