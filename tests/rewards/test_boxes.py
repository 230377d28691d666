"""rewards.boxes: the one box reader (math_answer, boxed_format and data.py agree on it)."""

from __future__ import annotations

import time

import pytest

from rewards.boxes import (
    brace_matches,
    final_answer,
    find_boxes,
    last_box,
    visible_text,
)
from rewards.format import boxed_format
from rewards.math import extract_answer, math_answer
from rl_reason.data import parse_answer

PIECEWISE = r"\left\{ \begin{array}{ll} x & x > 0 \\ -x & x \le 0 \end{array} \right."


def test_piecewise_box_is_read_alike_by_every_checker():
    text = rf"So $f(x) = \boxed{{{PIECEWISE}}}$."
    assert last_box(text) == PIECEWISE
    assert extract_answer(text) == PIECEWISE
    assert boxed_format(text, {}, require_number=False).score == 1.0
    assert math_answer(text, {"answer": PIECEWISE}).correct is True
    assert parse_answer(f"solution ... $\\boxed{{{PIECEWISE}}}$", "boxed") == PIECEWISE


@pytest.mark.parametrize(
    "text,contents",
    [
        (r"\boxed{1} and \boxed{a{b}c}", ["1", "a{b}c"]),
        (r"\boxed{\{1, 2\}}", [r"\{1, 2\}"]),
        (r"\boxed 5 and \boxed 12", ["5", "1"]),  # TeX: one character is the argument
        (r"\boxed{\boxed{3}}", [r"\boxed{3}"]),
        (r"\boxed{unclosed \boxed{4}", ["4"]),
        (r"\boxedfoo{3}", []),
        (r"line \\{\boxed{2}}", ["2"]),
    ],
)
def test_find_boxes(text, contents):
    assert [b.content for b in find_boxes(text)] == contents


def test_many_unclosed_boxes_are_linear():
    text = "\\boxed{" * 50_000 + "1"
    t0 = time.perf_counter()
    assert find_boxes(text) == []
    assert final_answer(text).answer is None
    assert time.perf_counter() - t0 < 1.0
    assert brace_matches("{" * 10 + "}") == {9: 10}


@pytest.mark.parametrize(
    "text",
    [
        "<!-- \\boxed{5} -->",
        "% \\boxed{5}",
        "\\phantom{\\boxed{5}}",
        "\\iffalse \\boxed{5} \\fi",
        "\\cancel{\\boxed{5}}",
        "~~\\boxed{5}~~",
    ],
)
def test_invisible_boxes_are_not_boxes(text):
    assert find_boxes(visible_text(text)) == []
    assert final_answer(text).answer is None
    assert boxed_format(text, {}).score == 0.0


def test_percent_after_a_number_is_not_a_comment():
    assert visible_text("50% of \\boxed{5}") == "50% of \\boxed{5}"


@pytest.mark.parametrize(
    "text,reason",
    [
        ("\\def\\boxed#1{} \\boxed{5}", "hidden: redefines macros"),
        ("\\renewcommand{\\boxed}[1]{6} \\boxed{5}", "hidden: redefines macros"),
        ("{\\color{white} \\boxed{5}}", "hidden: invisible text"),
        ('<span style="display:none">\\boxed{5}</span>', "hidden: invisible text"),
        ("\\boxed{4} \\boxed{5}", "hedged"),
        ("\\boxed{4}. Hmm, actually the answer is 3.", "contradicted"),
        ("\\boxed{4} or maybe 5", "contradicted"),
        ("\\boxed{4}. The answer is 3.", "contradicted"),
        ("<think>\\boxed{4}", "unfinished think"),
    ],
)
def test_final_answer_refusals(text, reason):
    got = final_answer(text)
    assert got.answer is None and got.reason == reason


def test_retraction_before_the_box_pays_the_box():
    got = final_answer("I get 5. Wait, no: 2 + 4 = 6, so \\boxed{6}")
    assert (got.answer, got.reason) == ("6", "ok")
    got = final_answer("\\boxed{4}. The answer is 4.")
    assert got.answer == "4"
