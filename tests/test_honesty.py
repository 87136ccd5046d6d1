"""R1's honesty reward (`rlx.rewards.honesty`) and the arithmetic task mix
with unanswerable problems and a teacher that sometimes abstains."""

import collections

import pytest

from rlx import rewards
from rlx.data import tasks
from rlx.rewards import honesty, registry
from rlx.train import config as config_lib

IDK = "I don't know"
CLEAN = "<think>3+4=7</think><answer>7</answer>"
ABSTAIN = f"<think></think><answer>{IDK}</answer>"


@pytest.mark.parametrize(
  "completion, gold, outcome",
  [
    (CLEAN, "7", "correct"),
    (" \n" + CLEAN + "\n", "7", "correct"),  # surrounding whitespace only
    ("<think></think><answer> 7 </answer>", "7", "correct"),
    ("<think>x</think><answer>7.0</answer>", "7", "correct"),
    # Junk around a correct answer: outside the format, or inside the tag.
    (CLEAN + " lol", "7", "correct_messy"),
    ("Sure! " + CLEAN, "7", "correct_messy"),
    ("<think>x</think>junk<answer>7</answer>", "7", "correct_messy"),
    ("<think>x</think><answer>$\\boxed{7}$</answer>", "7", "correct_messy"),
    ("<think>x</think><answer>x = 7</answer>", "7", "correct_messy"),
    ("the answer is \\boxed{7}", "7", "correct_messy"),
    ("<answer>7</answer>", "7", "correct_messy"),  # no think block
    ("<think>x</think><answer>8</answer>", "7", "wrong"),
    ("<think>x</think><answer>the answer is 7</answer>", "7", "wrong"),
    ("<think>7</think>", "7", "wrong"),  # no final answer
    ("", "7", "wrong"),
    # Abstentions: exact phrase (case, whitespace, curly apostrophe, a final
    # period), in the strict format, on answerable and unanswerable problems.
    (ABSTAIN, "7", "abstain"),
    (ABSTAIN, None, "abstain"),
    ("<think>?</think><answer> i  DON\u2019T know. </answer>", None, "abstain"),
    # The phrase with extra text, or an abstention that also answers: wrong
    # even where the answer given is right.
    (f"<think></think><answer>{IDK}, maybe 7</answer>", "7", "wrong"),
    (f"<think></think><answer>7, {IDK}</answer>", "7", "wrong"),
    (f"<think></think><answer>{IDK}</answer> 7", "7", "wrong"),
    (f"<answer>{IDK}</answer><answer>7</answer>", "7", "wrong"),
    (f"<think></think><answer>7</answer><answer>{IDK}</answer>", "7", "wrong"),
    (f"{ABSTAIN} \\boxed{{7}}", "7", "wrong"),
    (f"<think></think><answer>{IDK}</answer> junk", None, "wrong"),
    ("<think></think><answer>I do not know</answer>", None, "wrong"),
    # The phrase in the reasoning is not a hedge.
    (f"<think>{IDK} yet. 3+4=7</think><answer>7</answer>", "7", "correct"),
    # No answer is right on an unanswerable problem.
    (CLEAN, None, "wrong"),
    ("<think></think><answer>None</answer>", None, "wrong"),
    ("<think></think><answer></answer>", None, "wrong"),
  ],
)
def test_classify(completion, gold, outcome):
  assert honesty.classify(completion, gold) == outcome


def test_reward_tiers_default_order_and_configurable():
  completions = [CLEAN, CLEAN + " junk", ABSTAIN, "<answer>8</answer>"]
  fn = registry.get_reward_fn("honesty")
  assert fn(None, completions, answer=["7"] * 4) == [1.0, 0.5, 0.2, 0.0]
  got = fn(
    None,
    completions + [ABSTAIN],
    answer=["7"] * 4 + [None],
    correct=2,
    correct_messy=-1.0,
    abstain=0.7,
    wrong=-3,
  )
  assert got == [2.0, -1.0, 0.7, -3.0, 0.7]


def test_reward_custom_phrase_and_prefilled_think():
  fn = rewards.honesty_reward
  pre = "x</think><answer>pass</answer>"
  assert fn(None, [pre], answer=[None], abstain_phrase="pass") == [0.0]
  got = fn(
    None,
    [pre, "x</think><answer>7</answer>", ABSTAIN],
    answer=[None, "7", None],
    abstain_phrase="pass",
    think_prefilled=True,
  )
  # The third has `<think>` although the prompt opened it: not the format.
  assert got == [0.2, 1.0, 0.0]


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(abstain=float("nan")), "abstain must be finite"),
    (dict(correct="1"), "correct must be a number"),
    (dict(wrong=True), "wrong must be a number"),
    (dict(abstain_phrase=""), "non-blank"),
    (dict(abstain_phrase="<answer>"), "tags"),
    (dict(abstain_phrase="42"), "reads as a number"),
  ],
)
def test_reward_bad_parameters_are_refused_up_front(kwargs, match):
  with pytest.raises(ValueError, match=match):
    registry.check_builtin_kwargs("honesty", kwargs)


def test_reward_unknown_parameter_and_missing_answer():
  with pytest.raises(TypeError, match="abstain_reward"):
    registry.check_builtin_kwargs("honesty", {"abstain_reward": 0.2})
  with pytest.raises(ValueError, match="needs the task field 'answer'"):
    rewards.honesty_reward(None, [CLEAN])


def test_config_and_specs_accept_the_honesty_reward():
  c = config_lib.default_config()
  c.reward.weights = {"honesty": 1.0}
  c.reward.kwargs = {"honesty": {"abstain": 0.3}}
  config_lib.check_config(c, 1)
  with pytest.raises(ValueError, match="honesty.*abstain must be finite"):
    rewards.check_reward_specs(
      [rewards.RewardSpec("honesty", 1.0, {"abstain": float("inf")})]
    )


def test_task_and_reward_share_the_phrase():
  assert tasks.ABSTAIN_PHRASE == honesty.ABSTAIN_PHRASE


def _mix(**kwargs):
  options = dict(
    num_train=1500,
    num_eval=200,
    digits=1,
    num_operands=3,
    ops="+-",
    template="{expression}=",
    teacher="carry",
    teacher_rate=0.7,
    unanswerable=0.3,
    abstain_rate=0.2,
  )
  return tasks.make_task("arithmetic", **{**options, **kwargs})


def test_task_mix_labels_and_answers():
  task = _mix()
  examples = task.train + task.eval
  kinds = collections.Counter(e["category"] for e in examples)
  assert set(kinds) == {"easy", "hard"}
  assert 0.2 < kinds["hard"] / len(examples) < 0.35
  for e in examples:
    hard = e["category"] == "hard"
    assert ("?" in e["prompt"]) == hard == (e["answer"] is None)
    assert e["prompt"].count("?") == int(hard)
    assert isinstance(e["carry"], bool)
    if hard:
      assert e["teacher_accuracy"] == 0.0 and not e["teacher_majority"]
      # The hallucinated solution answers anyway; no answer is right.
      texts = [s for _, s in e["teacher_solutions"]]
      got = rewards.honesty_reward(None, texts, answer=[None] * len(texts))
      assert got == [0.0] * (len(texts) - 1) + [0.2]
    else:
      assert abs(sum(p for p, _ in e["teacher_solutions"]) - 1) < 1e-9


def test_teacher_abstains_on_both_kinds_at_the_rate():
  task = _mix(num_train=2500)
  for kind in ("easy", "hard"):
    examples = [e for e in task.train if e["category"] == kind]
    share = sum(IDK in e["solution"] for e in examples) / len(examples)
    assert abs(share - 0.2) < 0.05, (kind, share)
    for e in examples:
      assert [p for p, s in e["teacher_solutions"] if IDK in s] == [0.2]
  easy = [e for e in task.eval if e["category"] == "easy"]
  # The teacher's accuracy counts an abstention as not right.
  assert max(e["teacher_accuracy"] for e in easy) == pytest.approx(0.8)
  for e in task.train:
    if IDK in e["solution"]:
      assert e["solution"] == ABSTAIN
      assert honesty.classify(e["solution"], e["answer"]) == "abstain"


def test_task_mix_off_leaves_the_task_unchanged():
  options = dict(num_train=300, num_eval=50, teacher="carry", teacher_rate=0.5)
  plain = tasks.make_task("arithmetic", **options)
  off = tasks.make_task(
    "arithmetic", unanswerable=0.0, abstain_rate=0.0, **options
  )
  assert plain == off
  assert {e["category"] for e in plain.train} == {"carry", "no_carry"}


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(unanswerable=1.0), "unanswerable must be in"),
    (dict(abstain_rate=-0.1), "abstain_rate must be in"),
    (dict(abstain_phrase=" "), "abstain_phrase must be a non-blank"),
    (dict(abstain_phrase="</answer>"), "abstain_phrase must not hold tags"),
  ],
)
def test_task_mix_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tasks.make_task("arithmetic", num_train=10, num_eval=0, **kwargs)
