"""rewards.math.normalise: what fonts and text commands render as."""

from __future__ import annotations

import pytest

from rewards.math.normalise import render_fonts


@pytest.mark.parametrize(
    "text,rendered",
    [
        ("3\\mathbf{4}", "34"),
        ("\\text{3}", "3"),
        ("\\mathrm{\\mathbf{7}}", "7"),
        ("7^{\\text{th}}", "7"),
        ("the 20th minute", "the 20 minute"),
        ("5 percent", "5%"),
        ("5 per cent", "5%"),
        ("a   b", "a b"),
    ],
)
def test_render_fonts(text, rendered):
    assert render_fonts(text) == rendered
