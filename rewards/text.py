"""Plain-text checkers: regular-expression rewards.

Useful for format rules a recipe wants to state directly, and for the tiny test recipe, whose
random model never answers arithmetic right but does vary in how many digits it emits.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from rewards import RewardResult


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def regex(
    completion: str, fields: Mapping[str, Any], pattern: str = "", mode: str = "search"
) -> RewardResult:
    """Score a completion by a regular expression.

    mode="search": 1.0 if the pattern occurs anywhere, else 0.0.
    mode="fullmatch": 1.0 if the whole completion (stripped) matches.
    mode="fraction": the share of characters covered by non-overlapping matches (0..1).
    """
    if not pattern:
        raise ValueError("regex checker needs params.pattern")
    rx = _compile(pattern)
    if mode == "search":
        return RewardResult(1.0 if rx.search(completion) else 0.0)
    if mode == "fullmatch":
        return RewardResult(1.0 if rx.fullmatch(completion.strip()) else 0.0)
    if mode == "fraction":
        if not completion:
            return RewardResult(0.0)
        covered = sum(m.end() - m.start() for m in rx.finditer(completion))
        return RewardResult(covered / len(completion))
    raise ValueError(f"regex checker: mode must be search, fullmatch or fraction, not {mode!r}")
