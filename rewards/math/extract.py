"""Extraction: the final answer of a completion."""

from __future__ import annotations

import re
from typing import Optional, Sequence

__all__ = ["DEFAULT_ORDER", "extract_answer"]

DEFAULT_ORDER = ("boxed", "hash", "answer_is", "answer_colon")


def _strip_think(text: str) -> Optional[str]:
    """Only the text after the reasoning block counts; an unfinished block has no answer."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


def _braced(text: str, i: int) -> Optional[tuple[str, int]]:
    """(contents, index after the closing brace) for the group opening at ``text[i] == '{'``."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def _from_boxed(text: str) -> Optional[str]:
    for m in reversed(list(_BOXED.finditer(text))):
        i = m.end()
        if i < len(text) and text[i] == "{":
            got = _braced(text, i)
            if got is not None:
                return got[0]
        else:  # "\boxed 5"
            tok = re.match(r"[^\s$]+", text[i:])
            if tok:
                return tok.group(0)
    return None


def _line_after(pattern: re.Pattern, text: str) -> Optional[str]:
    found = None
    for m in pattern.finditer(text):
        found = m
    if found is None:
        return None
    rest = text[found.end() :].split("\n", 1)[0]
    rest = re.split(r"\.(?:\s|$)", rest, 1)[0]  # end of sentence, not a decimal point
    return rest


def _from_hash(text: str) -> Optional[str]:
    return _line_after(re.compile(r"####"), text)


def _from_answer_is(text: str) -> Optional[str]:
    return _line_after(re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?", re.I), text)


def _from_answer_colon(text: str) -> Optional[str]:
    return _line_after(re.compile(r"(?:^|\s|\*)answer\s*\**\s*:\**", re.I), text)


_EXTRACTORS = {
    "boxed": _from_boxed,
    "hash": _from_hash,
    "answer_is": _from_answer_is,
    "answer_colon": _from_answer_colon,
}


def _tidy_extracted(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    ans = re.sub(r"^\$+|\$+$", "", ans).strip()
    ans = re.sub(r"^\\[(\[]|\\[)\]]$", "", ans).strip()
    if "\\boxed" in ans or "\\fbox" in ans:
        ans = _from_boxed(ans) or ans
    return ans.rstrip(".").strip()


def extract_answer(text: str, order: Optional[Sequence[str]] = None) -> Optional[str]:
    """The final answer in ``text``, or None.

    ``order`` names the strategies tried in turn (default: ``boxed`` = last ``\\boxed{}`` /
    ``\\fbox{}``, ``hash`` = GSM8K ``#### n``, ``answer_is`` = "The answer is ...",
    ``answer_colon`` = "Answer: ..."). When a ``<think>`` block is present only the text after
    ``</think>`` is searched.
    """
    if not isinstance(text, str):
        return None
    body = _strip_think(text)
    if body is None:
        return None
    for name in order or DEFAULT_ORDER:
        try:
            fn = _EXTRACTORS[name]
        except KeyError:
            raise ValueError(f"unknown extraction strategy {name!r}; known: {sorted(_EXTRACTORS)}")
        got = fn(body)
        if got is not None:
            got = _tidy_extracted(got)
            if got:
                return got
    return None
