"""rewards.math.units: units split off a number and compared by dimension and exact scale."""

from __future__ import annotations

from fractions import Fraction

from rewards.math.units import magnitude, split_unit, units_agree


def test_split_unit_takes_known_units_and_nouns_but_not_variables():
    head, unit = split_unit("5 km")
    assert head == "5" and unit.dim == "length" and unit.scale == 1000
    head, unit = split_unit("864 inches^2")
    assert head == "864" and unit.power == 2 and unit.dim == "length"
    head, unit = split_unit("18 apples")
    assert head == "18" and unit.dim == "noun:apple"  # an unknown word is compared as a noun
    assert split_unit("2x") == ("2x", None)  # one letter: a variable
    assert split_unit("120 m") == ("120 m", None)  # so is a single letter after a number
    assert split_unit("x + y") == ("x + y", None)


def test_units_agree_gives_the_factor_or_none():
    km, m = split_unit("5 km")[1], split_unit("5000 meters")[1]
    assert units_agree(m, km) == Fraction(1000)  # 5 km in the gold's meters
    assert units_agree(km, split_unit("5 cm")[1]) == Fraction(1, 100000)
    assert units_agree(split_unit("2 hours")[1], split_unit("2 minutes")[1]) == Fraction(1, 60)
    assert units_agree(km, split_unit("3 dollars")[1]) is None  # other dimensions
    assert units_agree(None, km) == 1 and units_agree(km, None) == 1  # a unit on one side only
    apples, pears = split_unit("3 apples")[1], split_unit("3 pears")[1]
    assert units_agree(apples, apples) == 1 and units_agree(apples, pears) is None


def test_magnitude_words_scale():
    assert magnitude(split_unit("5 thousand")[1]) == 1000
    assert magnitude(split_unit("12 dozen")[1]) == 12
    assert magnitude(split_unit("5 km")[1]) is None and magnitude(None) is None
