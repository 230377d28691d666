"""Extraction: the final answer of a completion, read by :mod:`rewards.boxes` (the one box reader),
with the math checker's equivalence telling a restated answer from a hedge."""

from __future__ import annotations

from typing import Optional, Sequence

from rewards.boxes import (
    DEFAULT_ORDER,
    FinalAnswer,
    _drop_full_stop,
    _tidy,
    final_answer,
    last_box,
)

__all__ = ["DEFAULT_ORDER", "extract_answer", "read_final"]


def _from_boxed(text: str) -> Optional[str]:
    return last_box(text)


def _tidy_extracted(ans: str) -> str:
    ans = _tidy(ans)
    if "\\boxed" in ans or "\\fbox" in ans:
        ans = _from_boxed(ans) or ans
    return _drop_full_stop(ans)


def _same_answer(a: str, b: str) -> bool:
    from rewards.math.compare import equivalent

    return equivalent(a, b) and equivalent(b, a)


def read_final(text: str, order: Optional[Sequence[str]] = None) -> FinalAnswer:
    """:func:`rewards.boxes.final_answer` with tidied answers and math equivalence for restatements."""
    got = final_answer(text, order, same=_same_answer)
    if got.answer is None:
        return got
    ans = _tidy_extracted(got.answer)
    if not ans:
        return FinalAnswer(None, "no answer", got.strategy, got.candidates)
    return FinalAnswer(ans, got.reason, got.strategy, got.candidates)


def extract_answer(text: str, order: Optional[Sequence[str]] = None) -> Optional[str]:
    """The final answer in ``text``, or None (hedged, contradicted, hidden or absent).

    ``order`` names the strategies tried in turn (default: ``boxed`` = last ``\\boxed{}`` /
    ``\\fbox{}``, ``hash`` = GSM8K ``#### n``, ``answer_is`` = "The answer is ...",
    ``answer_colon`` = "Answer: ..."). When a ``<think>`` block is present only the text after
    ``</think>`` is searched. The rules are in :mod:`rewards.boxes`.
    """
    if not isinstance(text, str):
        return None
    return read_final(text, order).answer
