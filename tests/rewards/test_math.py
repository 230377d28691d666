"""rewards.math: extraction, equivalence (table-driven, both directions), safety, timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rewards import RewardResult, resolve
from rewards.math import equivalent, extract_answer, math_answer
from rewards.runner import CheckerSpec, Scorer
from tests.rewards import math_pairs

CLASSES = {
    name: getattr(math_pairs, name)
    for name in (
        "INTEGERS",
        "DECIMALS",
        "FRACTIONS",
        "MIXED_AND_SCI",
        "PERCENT",
        "UNITS_DEGREES",
        "LATEX",
        "ALGEBRA",
        "COMPLEX",
        "EQUATIONS",
        "INTERVALS",
        "TUPLES",
        "LISTS_SETS",
        "MATRICES",
        "RATIOS",
        "TEXT",
        "CHOICES",
        "UNICODE",
        "BASES",
    )
}


def _cases():
    for cls, pairs in CLASSES.items():
        for k, (gold, pred, expected) in enumerate(pairs):
            yield pytest.param(gold, pred, expected, id=f"{cls.lower()}-{k}-{'eq' if expected else 'ne'}")


# ----------------------------------------------------------------------------- the table


def test_table_is_big_and_two_sided():
    assert len(math_pairs.ALL) >= 300
    for cls, pairs in CLASSES.items():
        labels = {expected for _, _, expected in pairs}
        assert labels == {True, False}, f"{cls} needs both equivalent pairs and near misses"


@pytest.mark.parametrize("gold,pred,expected", list(_cases()))
def test_equivalent_table(gold, pred, expected):
    assert equivalent(gold, pred) is expected


@pytest.mark.parametrize(
    "gold,pred",
    [
        ("1-\\frac{1}{e}", "1+\\frac{1}{e}"),
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
        ("4", "4\\sqrt{2}"),
        ("0.5", "50"),
        ("3.14", "\\pi"),
    ],
)
def test_named_near_misses_fail_both_ways(gold, pred):
    assert not equivalent(gold, pred)
    assert not equivalent(pred, gold)


def test_non_strings_and_empty_are_not_equivalent():
    assert equivalent("1", None) is False  # type: ignore[arg-type]
    assert equivalent("1", "") is False
    assert equivalent("", "") is False


# ----------------------------------------------------------------------------- extraction


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


# ----------------------------------------------------------------------------- the checker


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


# ----------------------------------------------------------------------------- safety

PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "\\boxed{__import__('os').system('touch {marker}')}",
    "exec(\"open('{marker}', 'w')\")",
    'eval(\'__import__("os").system("touch {marker}")\')',
    "lambda: __import__('os').system('touch {marker}')",
    "Symbol('x').__class__.__init__.__globals__['os'].system('touch {marker}')",
    "().__class__.__base__.__subclasses__()",
    "x = __import__('os').system('touch {marker}')",
    "(__import__('os').system('touch {marker}'), 1)",
    "\\frac{__import__('os')}{1}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_in_answers_is_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    text = payload.replace("{marker}", str(marker))
    assert equivalent("0", text) is False
    assert equivalent(text, "0") is False
    r = math_answer(f"\\boxed{{{text}}}", {"answer": "0"})
    assert r.correct is False
    assert not marker.exists()


def test_pathological_inputs_are_refused_cheaply():
    t0 = time.perf_counter()
    for pred in [
        "10^{10^{10}}",
        "2^{2^{2^{2^{2^{2}}}}}",
        "1000000!",
        "(x+1)^{100000}",
        "(" * 500 + "1" + ")" * 500,
        "{" * 300 + "1" + "}" * 300,
        "1" * 100_000,
        "\\sqrt{" * 200 + "2" + "}" * 200,
        "9^{9^{9}}",
    ]:
        assert equivalent("5", pred) is False
        assert equivalent(pred, "5") is False
    assert time.perf_counter() - t0 < 5.0


def test_pathological_answers_through_the_runner_are_not_correct_quickly():
    comps = ["\\boxed{10^{10^{10}}}", "\\boxed{1000!}", "\\boxed{4}", "\\boxed{5}"]
    fields = [{"answer": "5"}] * 4
    with Scorer([CheckerSpec("math_answer")], timeout_s=2.0, workers=2) as scorer:
        t0 = time.perf_counter()
        b = scorer.score(comps, fields)
        wall = time.perf_counter() - t0
    assert b.correct == [False, False, False, True]
    assert b.scores["math_answer"] == [0.0, 0.0, 0.0, 1.0]
    assert b.errors["math_answer"] == 0
    assert wall < 4.0


def test_module_imports_neither_torch_nor_rl_reason():
    code = (
        "import sys, rewards.math; assert 'torch' not in sys.modules; assert 'rl_reason' not in sys.modules"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


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
