"""rewards.math.limits: the caps on what the parser agrees to build, each refused cheaply."""

from __future__ import annotations

import time

import pytest

from rewards.math import limits
from rewards.math.latex import _parse
from rewards.math.limits import MAX_ANSWER_CHARS, Refused


@pytest.mark.parametrize(
    "text",
    [
        "10^{10^{10}}",  # MAX_POW_BITS
        f"{limits.MAX_FACTORIAL + 1}!",  # MAX_FACTORIAL
        "x^{" + str(limits.MAX_SYMBOLIC_EXPONENT + 1) + "}",  # MAX_SYMBOLIC_EXPONENT
        "(" * (limits.MAX_DEPTH + 1) + "1" + ")" * (limits.MAX_DEPTH + 1),  # MAX_DEPTH
        "1" * (MAX_ANSWER_CHARS + 1),  # MAX_ANSWER_CHARS
    ],
)
def test_each_cap_refuses_quickly(text):
    t0 = time.perf_counter()
    with pytest.raises(Refused):
        _parse(text)
    assert time.perf_counter() - t0 < 0.5


def test_just_under_the_caps_is_built():
    assert _parse(f"{limits.MAX_FACTORIAL - 4900}!") > 0
    assert _parse("(" * 10 + "1" + ")" * 10) == 1
