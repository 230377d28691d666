"""rewards.math.numbers: plain numbers as exact fractions, and the rounding rule."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rewards.math.numbers import _numbers_match, _parse_number, _rounds_to


@pytest.mark.parametrize(
    "text,value,places,percent",
    [
        ("42", Fraction(42), None, False),
        ("-3.50", Fraction(-7, 2), 2, False),
        ("1,234", Fraction(1234), None, False),
        ("\\frac{3}{4}", Fraction(3, 4), None, False),
        ("6\\frac{1}{64}", Fraction(385, 64), None, False),
        ("2e-3", Fraction(1, 500), None, False),
        ("12.5%", Fraction(25, 2), 1, True),
        ("7/8", Fraction(7, 8), None, False),
    ],
)
def test_parse_number(text, value, places, percent):
    n = _parse_number(text)
    assert (n.value, n.places, n.percent) == (value, places, percent)


def test_strict_reading_keeps_spaces_inside_numbers():
    assert _parse_number("1 2", strict=True) is None and _parse_number("1, 100", strict=True) is None
    assert _parse_number("1 2").value == 12  # a gold may carry such spaces
    assert _parse_number("x") is None and _parse_number("1/0") is None and _parse_number("1e999") is None


def test_rounding_half_away_from_zero():
    assert _rounds_to(Fraction("3.205"), Fraction("3.21"), 2)
    assert _rounds_to(Fraction(1, 3), Fraction("0.33"), 2)
    assert not _rounds_to(Fraction("3.2049"), Fraction("3.21"), 2)
    assert _rounds_to(Fraction("-2.345"), Fraction("-2.35"), 2)


def test_only_golds_stated_to_two_places_are_rounded_values():
    match = lambda g, p: _numbers_match(_parse_number(g), _parse_number(p))  # noqa: E731
    assert match("3.21", "3.214") and not match("0.5", "0.54") and not match("0.1", "0.05")
    assert match("50%", "0.5") and match("50", "50%") and not match("50", "0.5")
