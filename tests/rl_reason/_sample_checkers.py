"""A checker the tiny random model passes some of the time, for tests/rl_reason/test_sample.py."""

from __future__ import annotations

from rewards import RewardResult


def has_digit(completion, fields):
    """Correct when the completion holds a digit (the random model emits one now and then)."""
    ok = any(c.isdigit() for c in completion)
    return RewardResult(score=float(ok) + 0.01 * len(completion), correct=ok)
