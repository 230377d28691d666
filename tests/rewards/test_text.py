"""rewards.text: the regex checker."""

from __future__ import annotations

import pytest

from rewards import resolve
from rewards.text import regex


def test_modes():
    assert resolve("regex") is regex
    assert regex("the answer is 42", {}, pattern=r"\d+").score == 1.0
    assert regex("no digits", {}, pattern=r"\d+").score == 0.0
    assert regex("  <a>1</a> ", {}, pattern=r"<a>\d</a>", mode="fullmatch").score == 1.0
    assert regex("x <a>1</a>", {}, pattern=r"<a>\d</a>", mode="fullmatch").score == 0.0
    assert regex("ab12", {}, pattern="[0-9]", mode="fraction").score == 0.5
    assert regex("", {}, pattern="[0-9]", mode="fraction").score == 0.0
    assert regex("a\nb", {}, pattern="a.b").score == 1.0  # DOTALL


def test_bad_params_raise():
    with pytest.raises(ValueError, match="needs params.pattern"):
        regex("x", {})
    with pytest.raises(ValueError, match="mode must be search, fullmatch or fraction, not 'all'"):
        regex("x", {}, pattern="x", mode="all")
