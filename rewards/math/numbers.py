"""Plain numbers as exact Fractions: the fast path that never touches sympy."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_FRAC = r"\\frac(?:\{(?P<a>[+-]?\d+)\}|(?P<a1>\d))(?:\{(?P<b>\d+)\}|(?P<b1>\d))"
_RE_PLAIN = re.compile(_NUM)
_RE_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_RE_SCI = re.compile(
    rf"(?P<m>{_NUM})(?:[eE](?P<e1>[+-]?\d+)|(?:\\times|\\cdot|\*|x)10\^(?:\{{(?P<e2>[+-]?\d+)\}}|(?P<e3>[+-]?\d+)))"
)
_RE_POW10 = re.compile(r"10\^(?:\{(?P<e2>[+-]?\d+)\}|(?P<e3>[+-]?\d+))")
_RE_FRAC = re.compile(rf"(?P<sign>[+-]?){_FRAC}")
_RE_SLASH = re.compile(rf"(?P<p>{_NUM})/(?P<q>{_NUM})")
_RE_MIXED = re.compile(rf"(?P<sign>[+-]?)(?P<w>\d+){_FRAC}")
_RE_MIXED_PLAIN = re.compile(r"(?P<sign>[+-]?)(?P<w>\d+) (?P<a>\d+)/(?P<b>\d+)")


class _Num:
    """An exact number as written: value, decimal places of a written decimal, percent sign."""

    __slots__ = ("value", "places", "percent")

    def __init__(self, value: Fraction, places: Optional[int] = None, percent: bool = False):
        self.value, self.places, self.percent = value, places, percent


def _frac_parts(m: re.Match) -> Fraction:
    a = int(m.group("a") or m.group("a1"))
    b = int(m.group("b") or m.group("b1"))
    return Fraction(a, b)


def _parse_number(s: str, strict: bool = False) -> Optional[_Num]:
    """Plain numbers only: the Fraction fast path. None when ``s`` is anything else.

    ``strict`` (how predictions are read): a space inside a number is not ignored, so ``1 2`` is
    not 12 and ``1, 100`` is a list, not 1100 (a gold such as ``11,\\! 111`` may have them).
    """
    if len(s) > 60:
        return None
    mixed = _RE_MIXED_PLAIN.fullmatch(s.strip())
    t = s.strip() if strict else s.replace(" ", "")
    if strict and not mixed:
        if re.search(r"[\d.,]\s+[\d.,]", t):
            return None
        t = t.replace(" ", "")
    percent = t.endswith("%")
    if percent:
        t = t[:-1]
    try:
        if mixed:
            sign = -1 if mixed.group("sign") == "-" else 1
            v = int(mixed.group("w")) + Fraction(int(mixed.group("a")), int(mixed.group("b")))
            return _Num(sign * v, None, percent)
        if _RE_THOUSANDS.fullmatch(t):
            t = t.replace(",", "")
        if _RE_PLAIN.fullmatch(t):
            places = len(t.split(".", 1)[1]) if "." in t else None
            return _Num(Fraction(t), places or None, percent)
        m = _RE_SCI.fullmatch(t) or _RE_POW10.fullmatch(t)
        if m:
            e = int(
                m.group("e1") if "e1" in m.groupdict() and m.group("e1") else m.group("e2") or m.group("e3")
            )
            if abs(e) > 400:
                return None
            mant = Fraction(m.group("m")) if "m" in m.groupdict() else Fraction(1)
            return _Num(mant * Fraction(10) ** e, None, percent)
        m = _RE_FRAC.fullmatch(t)
        if m:
            return _Num((-1 if m.group("sign") == "-" else 1) * _frac_parts(m), None, percent)
        m = _RE_MIXED.fullmatch(t)
        if m:
            v = int(m.group("w")) + _frac_parts(m)
            return _Num((-1 if m.group("sign") == "-" else 1) * v, None, percent)
        m = _RE_SLASH.fullmatch(t)
        if m:
            return _Num(Fraction(m.group("p")) / Fraction(m.group("q")), None, percent)
    except (ZeroDivisionError, ValueError):
        return None
    return None


def _rounds_to(pred: Fraction, gold: Fraction, places: int) -> bool:
    """True when ``pred`` rounded half away from zero at ``places`` decimals equals ``gold``."""
    scale = 10**places
    q = abs(pred) * scale
    rounded = (q.numerator * 2 + q.denominator) // (2 * q.denominator)
    return Fraction(rounded if pred >= 0 else -rounded, scale) == gold


def _numbers_match(gold: _Num, pred: _Num) -> bool:
    """Exact comparison; percent and rounding rules as documented in the module docstring."""
    golds = [gold.value]
    if gold.percent and not pred.percent:
        golds.append(gold.value / 100)  # gold 50%: 50 and 0.5 are both right
    preds = [pred.value]
    if pred.percent and not gold.percent:
        preds.append(pred.value / 100)  # pred 50% for gold 50 (unit written) or gold 0.5
    for g in golds:
        for p in preds:
            if p == g:
                return True
            # a gold stated to 2+ places is a rounded value; 0.5 or 2.5 is exact (0.54 is not 0.5)
            if gold.places and gold.places >= 2 and g == gold.value and _rounds_to(p, g, gold.places):
                return True
    return False
