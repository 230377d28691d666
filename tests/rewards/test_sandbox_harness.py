"""rewards.sandbox.inside.harness: which asserts must run for a pass, and how a failure reads."""

from __future__ import annotations

import ast

from rewards.sandbox.inside.harness import AssertCounter, describe

TESTS = """
assert 1 == 1
def check(candidate):
    assert candidate(1) == 1
    for x in range(3):
        assert x >= 0
    if candidate(2):
        assert candidate(2) == 2
    try:
        assert candidate(3) == 3
    except ValueError:
        pass
def helper():
    assert False
"""


def test_straight_path_asserts_are_required_branches_are_not():
    counter = AssertCounter()
    tree = counter.run(ast.parse(TESTS), check=True)
    assert counter.total == 6
    lines = {i: counter.lines[i] for i in counter.required}
    assert sorted(lines.values()) == [2, 4, 6]  # module body, check's body, the loop body
    ran = []
    ns = {AssertCounter.HOOK: ran.append}
    exec(compile(tree, "<tests>", "exec"), ns)
    ns["check"](lambda v: v)
    assert set(ran) == set(range(5)) and counter.required <= set(ran)  # helper never ran


def test_describe_names_the_tests_line():
    try:
        exec(compile("x = 1\nassert x == 2, 'x is wrong'\n", "<tests>", "exec"), {})
    except AssertionError as exc:
        text = describe(exc)
    assert text == "AssertionError: x is wrong (tests line 2)"
    assert describe(ValueError()) == "ValueError"
