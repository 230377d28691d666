"""rewards.math as a package: model text never runs, pathological inputs are refused cheaply,
the runner keeps them from hanging, no torch. (Per module: test_math_<module>.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rewards.math import equivalent, math_answer
from rewards.runner import CheckerSpec, Scorer

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
