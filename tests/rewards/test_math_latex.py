"""rewards.math.latex: our LaTeX parser builds sympy numbers, symbols and known functions."""

from __future__ import annotations

import pytest
import sympy

from rewards.math.latex import _parse


@pytest.mark.parametrize(
    "text,expected",
    [
        ("\\frac{1}{2}", sympy.Rational(1, 2)),
        ("2^{10}", sympy.Integer(1024)),
        ("\\sqrt{16}", sympy.Integer(4)),
        ("5!", sympy.Integer(120)),
        ("\\binom{5}{2}", sympy.Integer(10)),
        ("|-3|", sympy.Integer(3)),
    ],
)
def test_values(text, expected):
    assert sympy.simplify(_parse(text) - expected) == 0


def test_symbols_and_functions():
    x = sympy.Symbol("x")
    assert sympy.expand(_parse("(x+1)^2") - (x**2 + 2 * x + 1)) == 0
    assert _parse("\\sin(\\pi)") == 0
    assert _parse("\\pi") == sympy.pi
