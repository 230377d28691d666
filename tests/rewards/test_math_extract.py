"""rewards.math.extract: which final answer a completion gives."""

from __future__ import annotations

import pytest

from rewards.math import extract_answer


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so the result is \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", None),  # a run of different boxes hedges
        ("first \\boxed{1}. Wait, that is wrong: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # retracted
        ("\\boxed{\\frac{1}{2}} so again \\boxed{0.5}", "0.5"),  # one answer written twice
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("nested \\boxed{\\frac{\\sqrt{3}}{\\{2\\}}}", "\\frac{\\sqrt{3}}{\\{2\\}}"),
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$", "5"),
        ("Natalia sold 48+24 = 72 clips.\n#### 72", "72"),
        ("#### 1,234\n", "1,234"),
        ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("blah. The final answer is: 3.5. Done", "3.5"),
        ("Work...\nAnswer: 12", "12"),
        ("**Answer:** x = 3", "x = 3"),
        ("<think>maybe \\boxed{1}</think> so \\boxed{2}", "2"),
        ("<think>maybe \\boxed{1}</think> no final answer", None),
        ("<think>still thinking \\boxed{1}", None),
        ("no answer here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_order_is_configurable():
    text = "The answer is 3. Later: \\boxed{4}"
    assert extract_answer(text) == "4"
    assert extract_answer(text, order=["answer_is", "boxed"]) == "3"
    assert extract_answer(text, order=["hash"]) is None
    with pytest.raises(ValueError):
        extract_answer(text, order=["nope"])


def test_extract_answer_on_math_solution_as_data_py_uses_it():
    solution = "... so $\\boxed{\\frac{14}{3}}$.The answer is: \\frac{14}{3}"
    assert extract_answer(solution) == "\\frac{14}{3}"
