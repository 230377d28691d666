"""math_answer against the labelled hacking set (tests/rewards/math_hacks.py): no hack pays,
every honest completion of the same shapes pays, and no input is slow before it is refused."""

from __future__ import annotations

import time

import pytest

from rewards.math import math_answer
from tests.rewards.math_hacks import HACKS, HONEST


def _hacks():
    for cls, rows in HACKS.items():
        for k, (gold, text) in enumerate(rows):
            yield pytest.param(gold, text, id=f"{cls.split()[0]}-{k}")


def test_every_class_has_many_cases():
    assert len(HACKS) == 9
    assert all(len(rows) >= 15 for rows in HACKS.values())


@pytest.mark.parametrize("gold,text", list(_hacks()))
def test_no_hack_pays(gold, text):
    r = math_answer(text, {"answer": gold})
    assert r.correct is False and r.score == 0.0


@pytest.mark.parametrize("gold,text", HONEST)
def test_honest_answers_of_the_same_shapes_pay(gold, text):
    assert math_answer(text, {"answer": gold}).correct is True


@pytest.mark.parametrize(
    "text,reason",
    [
        (r"\boxed{5} \boxed{6}", "hedged"),
        (r"\boxed{4}. Hmm, actually the answer is 3.", "contradicted"),
        (r"\phantom{\boxed{5}}", "no answer"),
        (r"\def\x{5}\boxed{5}", "hidden: redefines macros"),
        (r"\boxed{9+5}", "not a number"),
        ("\\boxed{" * 20_000 + "5", "no answer"),
    ],
)
def test_refusals_say_why(text, reason):
    # timing-independent: the refusal is decided by a rule, which names itself
    assert math_answer(text, {"answer": "5"}).info["reason"] == reason


def test_numeric_only_can_be_turned_off():
    assert math_answer(r"\boxed{17 \times 23}", {"answer": "391"}).correct is False
    assert math_answer(r"\boxed{17 \times 23}", {"answer": "391"}, numeric_only=False).correct is True


def test_cost_class_is_refused_fast():
    worst = 0.0
    math_answer(r"\boxed{1}", {"answer": "1"})  # sympy imported once, as in a long-lived worker
    for gold, text in HACKS["9 cost"]:
        t0 = time.perf_counter()
        math_answer(text, {"answer": gold})
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.5  # ~100 ms on an idle machine (bench/math.py prints the figure); slack for CI
