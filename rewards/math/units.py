"""Units, magnitude words and qualifiers after a number: compared, never silently dropped.

``split_unit`` reads ``<head> <unit words>`` into the head and a :class:`Unit`. Known units carry
a dimension and an exact scale (``5 km`` = ``5000 m``); other trailing nouns (``18 apples``) are
kept as a noun. Words that change the claim (``not``, ``at least``, ``or more``) or its magnitude
(``thousand``, ``dozen``, ``squared``, ``halves``) are never units: such an answer is refused or,
for plain magnitude words, scaled.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

__all__ = ["Unit", "QUALIFIER", "split_unit", "magnitude", "units_agree"]

# words that change what a number claims: an answer holding one (and a gold without it) is wrong
QUALIFIER = re.compile(
    r"(?<![\\A-Za-z])(?:not|no|never|none|least|most|more|fewer|less|than|except|but|anything|"
    r"approx\w*|about|around|roughly|nearly|almost|over|under|above|below|up|between|plus|minus|"
    r"times|impossible|wrong|false|incorrect|or|either|squared|cubed|half|halves|thirds?|"
    r"quarters?|fourths?|fifths?|sixths?|eighths?|tenths?|and|neither|nor|unknown|undefined|"
    r"infinite|infinitely|many|some|any|all)(?![A-Za-z])"
    r"|\\(?:neg|lnot|lor|vee|land|wedge|not|approx|sim)(?![A-Za-z])|and/or",
    re.I,
)
_MAGNITUDE = {
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
    "gross": 144,
    "k": 1000,
}


@dataclass(frozen=True)
class Unit:
    dim: str  # "length", "money", ... or "noun:<word>" for a word we do not know as a unit
    scale: Fraction = Fraction(1)
    power: int = 1


def _table() -> dict[str, tuple[str, Fraction]]:
    t: dict[str, tuple[str, Fraction]] = {}

    def add(dim: str, scale, *names: str) -> None:
        for n in names:
            t[n] = (dim, Fraction(scale))

    add("length", Fraction(1, 1000), "mm", "millimeter", "millimetre")
    add("length", Fraction(1, 100), "cm", "centimeter", "centimetre")
    add("length", 1, "m", "meter", "metre")
    add("length", 1000, "km", "kilometer", "kilometre")
    add("length", Fraction(254, 10000), "in", "inch", "inche")
    add("length", Fraction(3048, 10000), "ft", "foot", "feet")
    add("length", Fraction(9144, 10000), "yd", "yard")
    add("length", Fraction(1609344, 1000), "mi", "mile")
    add("mass", Fraction(1, 1000), "mg", "milligram")
    add("mass", 1, "g", "gram", "gm")
    add("mass", 1000, "kg", "kilogram", "kilo")
    add("mass", Fraction(45359237, 100000), "lb", "lbs")
    add("mass", Fraction(28349523125, 10**9), "oz", "ounce")
    add("time", 1, "s", "sec", "second")
    add("time", 60, "min", "minute")
    add("time", 3600, "h", "hr", "hour")
    add("time", 86400, "day")
    add("time", 604800, "week", "wk")
    add("volume", Fraction(1, 1000), "ml", "milliliter", "millilitre")
    add("volume", 1, "l", "liter", "litre")
    add("money", 1, "dollar", "usd", "buck")
    add("money", Fraction(1, 100), "cent", "penny", "pennie")
    add("eur", 1, "euro")
    add("angle", 1, "degree", "deg")
    add("speed", 1, "mph")
    add("percent", 1, "percent")
    return t


_UNITS = _table()
_WORDS = re.compile(
    r"(?P<words>[A-Za-z][A-Za-z.]*(?: [A-Za-z][A-Za-z.]*){0,3})\s*(?:\^\s*\{?\s*(?P<pow>[23])\s*\}?)?"
)


def _one_unit(words: str, power: Optional[str]) -> Optional[Unit]:
    ws = words.lower().replace(".", " ").split()
    p = int(power) if power else 1
    if ws and ws[0] in ("square", "sq"):
        ws, p = ws[1:], 2
    elif ws and ws[0] == "cubic":
        ws, p = ws[1:], 3
    if len(ws) == 2 and ws[1] in ("squared", "cubed"):
        ws, p = ws[:1], 2 if ws[1] == "squared" else 3
    if not ws:
        return None
    w = ws[0] if len(ws) == 1 else None
    if w is not None:
        for cand in (w, w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w):
            if cand in _UNITS:
                dim, scale = _UNITS[cand]
                return Unit(dim, scale, p)
    return Unit("noun:" + " ".join(x.rstrip("s") for x in ws), Fraction(1), p)


@functools.lru_cache(maxsize=16384)
def split_unit(s: str) -> tuple[str, Optional[Unit]]:
    """(head, unit) for ``<head> <unit>``: 1-4 words after the last digit, brace or percent sign.

    (s, None) when ``s`` does not end in such words. A word of one letter is a variable, never a
    unit (``2x``); a word written against the number (``5cm``) must be a known unit. The caller
    decides whether the head is a number.
    """
    pm = re.search(r"(?<=[A-Za-z])\s*\^\s*\{?\s*([23])\s*\}?\s*$", s)
    core = s[: pm.start()] if pm else s
    k = max(core.rfind(c) for c in "0123456789}%")
    if k < 0 or k + 1 >= len(core):
        return s, None
    rest = core[k + 1 :]
    m = _WORDS.fullmatch(rest.strip())
    if m is None or len(m.group("words")) < 2:
        return s, None
    unit = _one_unit(m.group("words"), pm.group(1) if pm else m.group("pow"))
    if unit is None or (not rest[0].isspace() and unit.dim.startswith("noun:")):
        return s, None
    return s[: k + 1].strip(), unit


def magnitude(unit: Optional[Unit]) -> Optional[int]:
    """The factor of a magnitude word used as a unit (``thousand``), or None."""
    if unit is None or not unit.dim.startswith("noun:"):
        return None
    return _MAGNITUDE.get(unit.dim[5:])


def units_agree(g: Optional[Unit], p: Optional[Unit]) -> Optional[Fraction]:
    """The factor turning the prediction's number into the gold's unit, or None when the units
    disagree. A unit on one side only agrees (factor 1); two nouns agree when they are one word."""
    if g is None or p is None:
        return Fraction(1)
    if g.dim.startswith("noun:") or p.dim.startswith("noun:"):
        return Fraction(1) if g.dim == p.dim and g.power == p.power else None
    if g.dim != p.dim or g.power != p.power:
        return None
    return (p.scale / g.scale) ** g.power
