"""Normalisation: spelling variants of the same answer reduced to one text."""

from __future__ import annotations

import functools
import re

_UNICODE = {
    "≥": r"\ge ",
    "≤": r"\le ",
    "≠": r"\ne ",
    "×": r"\times ",
    "·": r"\cdot ",
    "÷": "/",
    "π": r"\pi ",
    "−": "-",
    "–": "-",
    "∞": r"\infty ",
    "∪": r"\cup ",
    "±": r"\pm ",
    "°": r"^\circ",
    "⋅": r"\cdot ",
    "√": r"\sqrt",
    "∈": r"\in ",
}
_SUPERSCRIPTS = {"²": "^2", "³": "^3"}
_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅛": "1/8"}
# every non-ASCII character the normaliser knows; any other in a prediction refuses it
KNOWN_UNICODE = frozenset("≥≤≠×·÷π−–∞∪±°⋅√∈²³½⅓⅔¼¾⅕⅛∅")
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
    for k, v in _VULGAR.items():
        if k in s:  # 5½ is five and a half; ½ alone is a half
            s = re.sub(r"(\d)\s*" + k, lambda m, v=v: m.group(1) + " " + v, s).replace(
                k, "\\frac{" + v.replace("/", "}{") + "}"
            )
    return s.replace("∅", "\\emptyset ")


@functools.lru_cache(maxsize=16384)
def _basic_clean(s: str) -> str:
    """Spacing, delimiters and spelling variants that never change the value (cached: golds repeat)."""
    s = s.strip() if s.isascii() else _replace_unicode(s.strip())
    s = (
        s.replace("\\$", "")
        .replace("$", "")
        .replace("\\(", "")
        .replace("\\)", "")
        .replace("\\[", "")
        .replace("\\]", "")
    )
    s = s.replace("{,}", ",")  # 1{,}000
    if "\\" in s:  # most answers are plain numbers: skip the LaTeX rewrites for them
        s = re.sub(r"\\(?:displaystyle|textstyle|limits)", "", s)
        s = re.sub(r",\s*\\!\s*(?=\d{3})", ",", s)  # 10,\! 080: a thousands separator
        s = re.sub(r"\\left\s*\.|\\right\s*\.", "", s)
        s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
        s = re.sub(r"(?<!\\)\\[!,;: ]|~", lambda m: "" if m.group(0) in ("\\!", "\\,") else " ", s)
        s = re.sub(r"\\[dtc]frac", r"\\frac", s)
        s = re.sub(r"\\dbinom|\\tbinom", r"\\binom", s)
        s = re.sub(r"\\(?:leqslant|leq)(?![a-zA-Z])", r"\\le", s)
        s = re.sub(r"\\(?:geqslant|geq)(?![a-zA-Z])", r"\\ge", s)
        s = re.sub(r"\\neq(?![a-zA-Z])", r"\\ne", s)
        s = re.sub(r"\\varnothing|\\\{\s*\\\}|\\O(?![a-zA-Z])", r"\\emptyset", s)
        s = re.sub(r"\\mathbb\s*\{?R\}?|\\R(?![a-zA-Z])", r"(-\\infty,\\infty)", s)
        s = re.sub(r"\\(?:mid|vert)(?![a-zA-Z])", "|", s)
        s = re.sub(
            r"^\\\{\s*[A-Za-z]\s*(?:\\in\s*\(-\\infty,\\infty\)\s*)?(?:\||:)\s*(.*)\\\}$", r"\1", s
        )  # set-builder
        s = re.sub(r"(\d*)\.(\d*)\\overline\s*\{(\d+)\}", _repeating, s)
        s = s.replace("\\%", "%").replace("\\$", "")
        s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|\\circ", "", s)
    elif "~" in s:
        s = s.replace("~", " ")
    if "_{" in s:
        s = re.sub(r"_\{\s*([A-Za-z0-9]+)\s*\}", r"_\1", s)
    s = " ".join(s.split())
    return s.rstrip(".").strip()


def _repeating(m: re.Match) -> str:
    """``0.1\\overline{6}`` -> ``\\frac{1}{6}`` (exact)."""
    from fractions import Fraction

    whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    if len(fixed) + len(rep) > 30:
        return m.group(0)
    v = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    v += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    return f"\\frac{{{v.numerator}}}{{{v.denominator}}}" if v.denominator != 1 else str(v.numerator)


_FONT_CMD = (
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|mbox|hbox|mathrm|mathbf|mathit|"
    r"mathsf|mathtt|mathnormal|boldsymbol|bm|pmb|rm|bf|it)"
)


@functools.lru_cache(maxsize=16384)
def render_fonts(s: str) -> str:
    """Font and text commands replaced by what they render: ``3\\mathbf{4}`` is ``34``,
    ``\\text{3}`` is ``3``, ``7^{\\text{th}}`` is ``7`` (an ordinal), ``5 percent`` is ``5%``."""
    for _ in range(8):
        new = re.sub(_FONT_CMD + r"\s*\{([^{}]*)\}", r"\1", s)
        if new == s:
            break
        s = new
    s = re.sub(r"(\d)\s*\^?\s*\{?\s*(?:st|nd|rd|th)\b\s*\}?", r"\1 ", s)
    s = re.sub(r"(\d)\s*(?:percent|per cent)\b", r"\1%", s, flags=re.I)
    return re.sub(r"\s+", " ", s).strip()


def _unwrap_text(s: str) -> str:
    """``\\text{abc}`` -> ``abc`` (all such wrappers)."""
    for _ in range(8):
        new = re.sub(_TEXT_CMD + r"\s*\{([^{}]*)\}", r"\1", s)
        if new == s:
            break
        s = new
    return s


def _normalize(s: str) -> str:
    return _basic_clean(s)
