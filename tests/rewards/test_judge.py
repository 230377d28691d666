"""math_judge: asked only after the rules reject, verdicts parsed strictly and cached."""

from __future__ import annotations

import pytest

from rewards import resolve
from rewards.math import judge
from rewards.math.judge import NoJudgeError, math_judge, parse_verdict, set_judge

WORDS = r"\boxed{\text{a squared minus b squared}}"
GOLD = {"answer": "a^2 - b^2"}


class Recorder:
    def __init__(self, reply="yes"):
        self.reply, self.prompts = reply, []

    def __call__(self, prompts):
        self.prompts += list(prompts)
        return [self.reply for _ in prompts]


@pytest.fixture(autouse=True)
def _no_backend():
    yield
    set_judge(None)


@pytest.mark.parametrize(
    "reply,verdict",
    [
        ("yes", True),
        ("Yes.", True),
        ("  NO, they differ", False),
        ("<think>hmm</think> yes", True),
        ("maybe", None),
        ("the answer is yes", None),
        ("", None),
        (None, None),
        ("yesterday", None),
        ("__import__('os').system('echo hi')", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_asked_only_after_the_rule_check_rejects_and_cached():
    rec = Recorder("yes")
    set_judge(rec)
    assert resolve("math_judge") is math_judge
    assert math_judge(r"\boxed{\frac{1}{2}}", {"answer": "0.5"}).correct is True
    assert rec.prompts == []  # the rules said yes: nobody asked
    r = math_judge(WORDS, GOLD)
    assert r.correct is True and r.info["judge"] == "yes" and r.info["judge_cached"] is False
    assert len(rec.prompts) == 1 and "a squared" in rec.prompts[0]
    r = math_judge(WORDS, GOLD)
    assert r.info["judge_cached"] is True and len(rec.prompts) == 1


def test_rule_refusals_never_reach_the_judge():
    rec = Recorder("yes")
    set_judge(rec)
    for text in [r"\boxed{5} \boxed{6}", r"\phantom{\boxed{5}}", r"\boxed{9+5}", "no answer"]:
        assert math_judge(text, {"answer": "14"}).correct is False
    assert rec.prompts == []


def test_no_and_undecided_do_not_pay():
    set_judge(Recorder("no"))
    assert math_judge(WORDS, GOLD).correct is False
    set_judge(Recorder("I think so"))
    r = math_judge(WORDS, GOLD)
    assert r.correct is False and r.info["judge"] == "undecided"


def test_without_a_backend_it_says_how_to_set_one():
    set_judge(None)
    with pytest.raises(NoJudgeError, match="set_judge"):
        math_judge(WORDS, GOLD)
    assert judge._BACKEND is None
