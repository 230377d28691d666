"""rewards.code: extraction, HumanEval / assert tests, io cases, scoring through the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rewards
from rewards import RewardResult
from rewards.code import code_tests, extract_code, outputs_match

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "humaneval.jsonl"
PICK = (
    "HumanEval/0",
    "HumanEval/2",
    "HumanEval/12",
    "HumanEval/32",
    "HumanEval/53",
    "HumanEval/107",
    "HumanEval/160",
)


def humaneval() -> dict:
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    with open(DATA) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return {r["task_id"]: r for r in rows}


def fields(row: dict) -> dict:
    return {"tests": row["test"], "entry_point": row["entry_point"], "prompt": row["prompt"]}


# ---------------------------------------------------------------- extraction


def test_extract_last_python_block_by_default():
    text = (
        "Try this:\n```python\ndef f():\n    return 1\n```\nBetter:\n"
        "```py\ndef f():\n    return 2\n```\nand shell:\n```bash\nls\n```\n"
    )
    assert extract_code(text) == "def f():\n    return 2\n"
    assert extract_code(text, "first") == "def f():\n    return 1\n"
    assert extract_code(text, "all") == "def f():\n    return 1\n\n\ndef f():\n    return 2\n"
    assert extract_code(text, "none") == text
    with pytest.raises(ValueError):
        extract_code(text, "middle")


def test_extract_whole_completion_untagged_think_and_truncated():
    assert extract_code("def f():\n    return 3\n") == "def f():\n    return 3\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    think = "<think>\n```python\nwrong = 1\n```\n</think>\n```python\nright = 2\n```"
    assert extract_code(think) == "right = 2\n"
    assert extract_code("ok\n```python\ndef f():\n    return 4") == "def f():\n    return 4"
    assert extract_code("```bash\nls\n```") == ""


def test_outputs_match_modes():
    assert outputs_match("1 2\n3  \n\n", "1 2\n3")
    assert not outputs_match("1 2\n3\n", "1 2 3")
    assert outputs_match("1 2\n3\n", "1 2 3", "tokens")
    assert not outputs_match("1\n", "1", "exact")


# ---------------------------------------------------------------- tests mode


def test_registry_name_resolves_to_code_tests():
    assert rewards.resolve("code_tests") is code_tests


def test_canonical_humaneval_solutions_pass_and_broken_ones_fail():
    rows = humaneval()
    for tid in PICK:
        row = rows[tid]
        full = row["prompt"] + row["canonical_solution"]
        fenced = f"Here you go:\n```python\n{full}```\n"
        res = code_tests(fenced, fields(row))
        assert isinstance(res, RewardResult)
        assert (res.score, res.correct) == (1.0, True), (tid, res.info)
        # a base-model style completion: only the body, the prompt is prepended (prefix=auto)
        body = code_tests(row["canonical_solution"], fields(row))
        assert (body.score, body.correct) == (1.0, True), (tid, body.info)
        for broken in (
            row["prompt"] + "    return None\n",
            row["prompt"] + "    raise ValueError('no')\n",
            "import sys\nsys.exit(0)\n" + full,
            "print('PASSED')\n" + row["prompt"] + "    return None\n",
        ):
            res = code_tests(broken, fields(row))
            assert (res.score, res.correct) == (0.0, False), (tid, broken[-60:], res.info)


def test_prefix_never_does_not_prepend_the_prompt():
    row = humaneval()["HumanEval/53"]
    res = code_tests(row["canonical_solution"], fields(row), prefix="never")
    assert (res.score, res.correct) == (0.0, False)


def test_plain_assert_tests_and_lists():
    sol = "```python\ndef sq(x):\n    return x * x\n```"
    assert code_tests(sol, {"tests": "assert sq(3) == 9\nassert sq(-2) == 4\n"}).correct is True
    assert code_tests(sol, {"tests": ["assert sq(3) == 9", "assert sq(0) == 0"]}).score == 1.0
    wrong = code_tests(sol, {"tests": "assert sq(3) == 10\n"})
    assert (wrong.score, wrong.correct) == (0.0, False)
    assert wrong.info["status"] == "failed"
    # test_imports / test_setup_code (MBPP fields) are honoured
    res = code_tests(
        "def r(x):\n    return math.floor(x)\nimport math\n",
        {"tests": "assert r(2.5) == math.floor(2.5)", "test_imports": ["import math"]},
    )
    assert res.correct is True


def test_not_applicable_and_no_code():
    assert code_tests("def f(): pass", {}) is None
    assert code_tests("def f(): pass", {"tests": "   "}) is None
    res = code_tests("```bash\nls\n```", {"tests": "assert f() == 1"})
    assert (res.score, res.correct, res.info["status"]) == (0.0, False, "no_code")


def test_timeout_param_is_applied():
    res = code_tests("def f():\n    while True:\n        pass\n", {"tests": "assert f() == 1"}, timeout_s=1.0)
    assert (res.score, res.correct, res.info["status"]) == (0.0, False, "timeout")
    assert res.info["duration_s"] < 5


# ---------------------------------------------------------------- io mode

SQUARE = "```python\nn = int(input())\nprint(n * n)\n```"
CASES = [
    {"input": "3\n", "output": "9\n"},
    {"input": "12", "output": "144"},
    {"input": "-4\n", "output": "16\n"},
]


def test_io_cases_all_pass():
    res = code_tests(SQUARE, {"io_cases": CASES})
    assert (res.score, res.correct) == (1.0, True)
    assert res.info["cases_passed"] == 3
    # the {"inputs": [...], "outputs": [...]} form
    res = code_tests(SQUARE, {"io_cases": {"inputs": ["2"], "outputs": ["4"]}})
    assert res.correct is True


def test_io_cases_wrong_output_fails_and_partial_credit():
    wrong = "n = int(input())\nprint(n * n if n > 0 else 0)\n"
    res = code_tests(wrong, {"io_cases": CASES})
    assert (res.score, res.correct) == (0.0, False)
    assert res.info["first_failure"]["case"] == 2
    part = code_tests(wrong, {"io_cases": CASES}, partial=True)
    assert part.correct is False and part.score == pytest.approx(2 / 3)


def test_io_exit_status_and_exit_tricks():
    # correct output but a failing exit status is a failure
    bad_exit = "n = int(input())\nprint(n * n)\nimport sys\nsys.exit(3)\n"
    res = code_tests(bad_exit, {"io_cases": CASES})
    assert res.correct is False and res.info["first_failure"]["why"] == "exit 3"
    # exiting 0 before doing the work is a failure (no output)
    early = "import sys\nsys.exit(0)\nn = int(input())\nprint(n * n)\n"
    assert code_tests(early, {"io_cases": CASES}).correct is False
    # printing a "pass" marker is just wrong output
    fake = "print('PASSED')\nprint('All tests passed')\n"
    assert code_tests(fake, {"io_cases": CASES}).score == 0.0


def test_io_timeout_and_output_cap():
    loop = code_tests("while True:\n    pass\n", {"io_cases": CASES[:1]}, timeout_s=1.0)
    assert loop.correct is False and loop.info["first_failure"]["why"] == "timeout"
    spam = code_tests("print('9\\n' * (4 << 20))\n", {"io_cases": CASES[:1]}, output_bytes=1 << 16)
    assert spam.correct is False and spam.info["first_failure"]["why"] == "output_limit"


def test_io_program_cannot_read_expected_output_or_env(monkeypatch):
    monkeypatch.setenv("RL_EXPECTED", "9")
    cheat = "import os\nprint(os.environ.get('RL_EXPECTED', 'none'))\n"
    assert code_tests(cheat, {"io_cases": CASES[:1]}).correct is False
