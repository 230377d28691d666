"""rewards.math.compare: ``equivalent`` over the labelled table (tests/rewards/math_pairs.py),
both ways round."""

from __future__ import annotations

import pytest

from rewards.math import equivalent
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
