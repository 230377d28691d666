"""Format checkers: a think block followed by an answer, and a final boxed answer.

Both are *shaping* rewards: they return ``RewardResult(score, correct=None)`` so that accuracy is
never inflated by format credit. Keep their weight small next to a correctness checker: a format
reward that pays for any ``\\boxed{}`` was gamed within a few GRPO steps (the policy learned to box
anything while boxed-and-correct stayed at 0%). ``boxed_format`` therefore pays, by default, only
when the box holds a well-formed number.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping, Optional

from rewards import RewardResult, boxes

__all__ = ["think_format", "boxed_format", "last_boxed", "find_boxes", "is_number_answer"]

_OPEN, _CLOSE = "<think>", "</think>"


def _ok(reason: str, **info) -> RewardResult:
    return RewardResult(1.0, None, {"reason": reason, **info})


def _fail(reason: str, **info) -> RewardResult:
    return RewardResult(0.0, None, {"reason": reason, **info})


def think_format(
    completion: str,
    fields: Mapping[str, Any],
    *,
    open_in_prompt: bool = False,
    answer_tags: bool = False,
    min_think_chars: int = 1,
) -> RewardResult:
    """1.0 when the completion is one ``<think>...</think>`` block followed by a non-empty answer.

    - The block must open the completion (leading whitespace allowed). With
      ``open_in_prompt=True`` the chat template already wrote ``<think>``, so the completion must
      *not* open another one and starts inside the block.
    - Exactly one ``</think>`` (and at most one ``<think>``); the thinking holds at least
      ``min_think_chars`` non-space characters; the text after ``</think>`` is not blank.
    - ``answer_tags=True`` additionally requires the answer to be ``<answer>...</answer>`` with
      non-blank content and nothing but whitespace around it (the R1-Zero template).
    Newlines are allowed anywhere. ``correct`` is always None.
    """
    text = completion
    n_open, n_close = text.count(_OPEN), text.count(_CLOSE)
    if n_close != 1:
        return _fail("no </think>" if n_close == 0 else "several </think>")
    if open_in_prompt:
        if n_open:
            return _fail("<think> repeated (template already opened it)")
        thinking, _, answer = text.partition(_CLOSE)
    else:
        if n_open != 1:
            return _fail("no <think>" if n_open == 0 else "several <think>")
        stripped = text.lstrip()
        if not stripped.startswith(_OPEN):
            return _fail("text before <think>")
        body = stripped[len(_OPEN) :]
        thinking, sep, answer = body.partition(_CLOSE)
        if not sep:  # </think> came before <think>
            return _fail("</think> before <think>")
    if len("".join(thinking.split())) < max(0, int(min_think_chars)):
        return _fail("empty thinking")
    if not answer.strip():
        return _fail("no answer after </think>")
    if answer_tags:
        m = re.fullmatch(r"\s*<answer>(.*?)</answer>\s*", answer, re.DOTALL)
        if not m or not m.group(1).strip() or "<answer>" in m.group(1):
            return _fail("answer not in <answer>...</answer>")
    return _ok("ok", answer_chars=len(answer.strip()))


# ----------------------------------------------------------------------------- boxes


def find_boxes(text: str) -> list[str]:
    """Contents of every complete ``\\boxed{...}`` / ``\\fbox{...}``, in order, as
    :func:`rewards.boxes.find_boxes` reads them (the one box reader every checker uses)."""
    return [b.content for b in boxes.find_boxes(text)]


def last_boxed(text: str) -> Optional[str]:
    """The content of the last complete box, or None."""
    return boxes.last_box(text)


_SIGN = r"(?:[+\-\u2212]\s*)?"
_UINT = r"(?:\d{1,3}(?:,\d{3})+|\d+)"  # 1234 or 1,234
_UDEC = rf"(?:{_UINT}(?:\.\d+)?|\.\d+)"
_FRAC = r"(?:\\[dt]?frac\s*\{\s*\d+\s*\}\s*\{\s*\d+\s*\}|\\[dt]?frac\s*\d\s*\d)"
_NUMBER_RE = re.compile(
    r"\s*(?:[A-Za-z]\s*=\s*)?"  # an optional "x = "
    r"(?:\\\$\s*|\$\s*)?"  # currency
    rf"{_SIGN}(?:{_UDEC}\s*/\s*{_UINT}|{_FRAC}|{_UDEC}(?:\s*\\?%)?|{_UINT}\s*{_FRAC})"
    r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)?"  # degrees
    r"\s*",
)


def _unwrap(content: str) -> str:
    s = content.strip()
    for _ in range(3):  # \text{5}, \mathbf{5}, {5}
        m = re.fullmatch(r"\\(?:text|textbf|mathbf|mathrm)\s*\{(.*)\}", s, re.DOTALL) or re.fullmatch(
            r"\{(.*)\}", s, re.DOTALL
        )
        if not m:
            break
        s = m.group(1).strip()
    return s


def is_number_answer(content: str) -> bool:
    """True when a box's content is a well-formed number: integer, decimal, ``1,234``, a fraction
    (``3/4``, ``\\frac{3}{4}``, mixed ``2\\frac{1}{2}``), optionally signed, with an optional
    ``x =`` prefix, ``$`` prefix, ``%`` or degree suffix."""
    return _NUMBER_RE.fullmatch(_unwrap(content)) is not None


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def boxed_format(
    completion: str,
    fields: Mapping[str, Any],
    *,
    require_number: bool = True,
    pattern: Optional[str] = None,
    after_think: bool = True,
    max_boxes: Optional[int] = None,
) -> RewardResult:
    """1.0 when the completion ends its answer with a boxed, well-formed answer.

    - The *last* ``\\boxed{...}`` (or ``\\fbox{...}``) is the answer; with ``after_think=True``
      and a ``</think>`` in the completion, only boxes after it count (a box inside the thinking
      is not a final answer).
    - ``require_number=True`` (default): the box must hold a number (see
      :func:`is_number_answer`); ``False``: any non-blank content.
    - ``pattern``: a regular expression the box content must fully match instead (for example
      ``[A-E]`` for multiple choice); overrides ``require_number``.
    - ``max_boxes``: pay nothing when more boxes than this appear (hedging across several boxed
      candidates); None = no limit.
    ``correct`` is always None: a well-formed box says nothing about a right answer.
    """
    text = completion
    if after_think and _CLOSE in text:
        text = text.rsplit(_CLOSE, 1)[1]
    hidden = boxes.hidden_reason(text)
    if hidden:
        return _fail(hidden)
    found = find_boxes(boxes.visible_text(text))  # a box the reader cannot see is no box
    if not found:
        return _fail("no box")
    if max_boxes is not None and len(found) > int(max_boxes):
        return _fail("too many boxes", boxes=len(found))
    content = found[-1]
    if not content.strip():
        return _fail("empty box")
    if pattern is not None:
        if _compile(pattern).fullmatch(_unwrap(content)) is None:
            return _fail("box does not match pattern", boxed=content[:200])
    elif require_number and not is_number_answer(content):
        return _fail("box holds no number", boxed=content[:200])
    return _ok("ok", boxed=content[:200])
