"""Normalisation: spelling variants of the same answer reduced to one text."""

from __future__ import annotations

import re


_UNICODE = {
    "≥": r"\ge ", "≤": r"\le ", "≠": r"\ne ", "×": r"\times ", "·": r"\cdot ", "÷": "/",
    "π": r"\pi ", "−": "-", "–": "-", "∞": r"\infty ", "∪": r"\cup ", "±": r"\pm ",
    "°": r"^\circ", "⋅": r"\cdot ", "√": r"\sqrt", "∈": r"\in ",
}
_SUPERSCRIPTS = {"²": "^2", "³": "^3"}
_CURRENCY_WORDS = r"dollars?|cents?|euros?|pounds?|rupees?|yuan|usd"
_TEXT_CMD = r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|mathit|operatorname|textnormal|rm)"


def _replace_unicode(s: str) -> str:
    # √13 means the square root of 13 (in LaTeX, \sqrt 13 is √1 times 3)
    s = re.sub(r"√\s*(\d+(?:\.\d+)?)", r"\\sqrt{\1}", s)
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    for k, v in _SUPERSCRIPTS.items():
        s = s.replace(k, v)
    return s


def _basic_clean(s: str) -> str:
    """Spacing, delimiters and spelling variants that never change the value."""
    s = _replace_unicode(s.strip())
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = re.sub(r"\\(?:displaystyle|textstyle|limits)", "", s)
    s = re.sub(r"\\left\s*\.|\\right\s*\.", "", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<!\\)\\[!,;: ]|~", lambda m: "" if m.group(0) in ("\\!", "\\,") else " ", s)
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\dbinom|\\tbinom", r"\\binom", s)
    s = re.sub(r"\\(?:leqslant|leq)(?![a-zA-Z])", r"\\le", s)
    s = re.sub(r"\\(?:geqslant|geq)(?![a-zA-Z])", r"\\ge", s)
    s = re.sub(r"\\neq(?![a-zA-Z])", r"\\ne", s)
    s = s.replace("\\%", "%").replace("\\$", "")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|\\circ", "", s)
    s = re.sub(r"_\{\s*([A-Za-z0-9]+)\s*\}", r"_\1", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    return s


def _unwrap_text(s: str) -> str:
    """``\\text{abc}`` -> ``abc`` (all such wrappers)."""
    for _ in range(8):
        new = re.sub(_TEXT_CMD + r"\s*\{([^{}]*)\}", r"\1", s)
        if new == s:
            break
        s = new
    return s


_UNIT_WORD = re.compile(r"\s*[A-Za-z][A-Za-z.]+(?:\s*\^\s*\{?[23]\}?)?\s*$")


def _strip_units(s: str) -> str:
    """Drop trailing unit / currency words after a mathematical answer.

    ``\\text{..}`` groups after some math are units (``5.4 \\text{ cents}``, ``864 \\mbox{
    inches}^2``); plain trailing words are dropped only after a plain number, so variables in
    expressions stay.
    """
    s = re.sub(r"^\s*(?:" + _CURRENCY_WORDS + r")\s+", "", s, flags=re.I)
    head = re.sub(_TEXT_CMD + r"\s*\{[^{}]*\}(?:\s*\^\s*\{?[23]\}?)?", " ", s).strip()
    if head and head != s and re.search(r"[0-9A-Za-z}]", head):
        s = head
    if re.fullmatch(r"[-+]?[\d.,/%]+\s+(?:[A-Za-z][A-Za-z.]+\s*(?:\^\s*\{?[23]\}?)?\s*)+", s):
        while True:
            new = _UNIT_WORD.sub("", s)
            if new == s or not new:
                break
            s = new
    s = re.sub(r"^\s*(?:" + _CURRENCY_WORDS + r")\s*$", "", s, flags=re.I)
    return re.sub(r"\s+", " ", s).strip()


def _normalize(s: str) -> str:
    return _basic_clean(s)
