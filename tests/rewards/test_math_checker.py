"""rewards.math.checker: ``math_answer`` (gold forms, the result it reports, numeric_only)."""

from __future__ import annotations

from rewards import RewardResult, resolve
from rewards.math import math_answer


def test_math_answer_checker():
    assert resolve("math_answer") is math_answer
    r = math_answer("We get \\boxed{\\dfrac{1}{2}}", {"answer": "0.5"})
    assert isinstance(r, RewardResult) and r.score == 1.0 and r.correct is True
    assert r.info["extracted"] == "\\dfrac{1}{2}"
    r = math_answer("\\boxed{3}", {"answer": "0.5"})
    assert (r.score, r.correct) == (0.0, False)
    r = math_answer("I don't know", {"answer": "0.5"})
    assert (r.score, r.correct) == (0.0, False) and r.info["extracted"] is None
    assert math_answer("\\boxed{3}", {}) is None
    assert math_answer("\\boxed{3}", {"answer": None}) is None


def test_math_answer_reads_gsm8k_and_boxed_gold():
    gsm = {"answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"}
    assert math_answer("so she has \\boxed{7} apples", gsm).correct is True
    assert math_answer("#### 7", gsm).correct is True
    assert math_answer("#### 8", gsm).correct is False
    boxed = {"answer": "so $\\boxed{\\frac{14}{3}}$.The answer is: \\frac{14}{3}"}
    assert math_answer("The answer is 14/3.", boxed).correct is True
    assert math_answer("<think>\\boxed{14/3}</think>", boxed).correct is False


def test_numeric_only_refuses_an_unevaluated_expression():
    # a policy trained on sums learned to box the question itself ("\boxed{9 + 5}")
    from rewards.math import math_answer

    fields = {"answer": "14"}
    assert math_answer(r"\boxed{9 + 5}", fields).correct is False  # the default for a numeric gold
    assert math_answer(r"\boxed{9 + 5}", fields).info["reason"] == "not a number"
    assert math_answer(r"\boxed{9 + 5}", fields, numeric_only=False).correct is True  # equal as mathematics
    assert math_answer(r"\boxed{9 + 5}", fields, numeric_only=True).correct is False
    assert math_answer(r"\boxed{14}", fields, numeric_only=True).correct is True
    assert math_answer(r"\boxed{15}", fields, numeric_only=True).correct is False
    # a non-numeric gold keeps comparing expressions
    assert math_answer(r"\boxed{(x+1)^2}", {"answer": "x^2+2x+1"}).correct is True
