"""Comparison: numbers, structures, words and sympy, cheapest first."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

from rewards.boxes import last_box as _from_boxed
from rewards.math.latex import _FUNCS, _parse, _sympy
from rewards.math.limits import MAX_ANSWER_CHARS, MAX_DEPTH, MAX_OPS
from rewards.math.limits import Refused as _Refused
from rewards.math.normalise import (
    _TEXT_CMD,
    KNOWN_UNICODE,
    _normalize,
    _unwrap_text,
    render_fonts,
)
from rewards.math.numbers import _Num, _numbers_match, _parse_number
from rewards.math.units import QUALIFIER, Unit, magnitude, split_unit, units_agree


def _numerically_nonzero(sp, d) -> bool:
    """True when ``d`` is shown to be nonzero by evaluating it (used only to *reject*)."""
    subs = {}
    for k, sym in enumerate(sorted(d.free_symbols, key=str)):
        subs[sym] = sp.Rational(7 + 4 * k, 13 + 2 * k)  # arbitrary, avoids 0, 1 and poles of tan
    try:
        v = (d.subs(subs) if subs else d).evalf(40)
    except Exception:
        return False
    if not v.is_number or v.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return False
    try:
        mag = abs(complex(v))
    except (TypeError, ValueError, OverflowError):
        return False
    return mag > 1e-25 or (v.is_Float and v != 0 and v._prec > 50 and mag > 0)


def _sym_equal(a, b) -> bool:
    """Exact symbolic equality; numbers may reject quickly but only algebra accepts."""
    sp = _sympy()
    if a == b:
        return True
    if a.has(sp.oo, -sp.oo, sp.zoo, sp.nan) or b.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return False
    d = a - b
    if d == 0:
        return True
    if d.is_Rational:
        return False
    if _numerically_nonzero(sp, d):
        return False
    if sp.count_ops(d) > MAX_OPS:
        return False
    for simplify in (sp.expand, sp.radsimp, sp.simplify):
        try:
            if simplify(d) == 0:
                return True
        except Exception:
            continue
    return False


_OPEN, _CLOSE = "([{", ")]}"
_REL = re.compile(r"\\(?:le|ge|ne|lt|gt)(?![a-zA-Z])|<=|>=|!=|=|<|>")
_REL_NAMES = {"\\le": "<=", "\\ge": ">=", "\\ne": "!=", "\\lt": "<", "\\gt": ">"}
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


def _depth_ok(s: str) -> bool:
    depth = 0
    for c in s:
        if c in _OPEN:
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif c in _CLOSE:
            depth -= 1
    return True


def _split_at_top(s: str, find_sep) -> list[str]:
    """Split ``s`` where ``find_sep(s, i)`` finds a separator outside every bracket.

    ``find_sep`` returns None or ``(end, kept)``: the separator ends at ``end``; ``kept`` (when
    not None) goes into the result between the two parts.
    """
    out, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0:
            hit = find_sep(s, i)
            if hit:
                end, kept = hit
                out.append(s[start:i].strip())
                if kept is not None:
                    out.append(kept)
                i = start = end
                continue
        i += 1
    out.append(s[start:].strip())
    return out


def _split_top(s: str, sep: str) -> list[str]:
    """Split at ``sep`` where it is outside every bracket."""
    return _split_at_top(s, lambda t, i: (i + len(sep), None) if t.startswith(sep, i) else None)


def _relation_at(s: str, i: int) -> Optional[tuple[int, str]]:
    m = _REL.match(s, i)
    if m and not (s[i] == "\\" and s[i - 1 : i] == "\\"):
        return m.end(), _REL_NAMES.get(m.group(0), m.group(0))
    return None


def _split_relations(s: str) -> list[str]:
    """``-4 < m \\le 0`` -> ['-4', '<', 'm', '<=', '0'] (top level only)."""
    return _split_at_top(s, _relation_at)


def _outer_brackets(s: str) -> Optional[tuple[str, str, str]]:
    """(open, inner, close) when one bracket pair encloses all of ``s``."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "{", s[2:-2], "}"
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return s[0], s[1:-1], s[-1]


_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*?)\\end\{\1\}", re.S)


def _structure(s: str):
    """Classify a normalised answer: ('matrix', rows) | ('set', items) | ('seq', o, c, items) |
    ('union', parts) | ('rel', parts) | ('expr', s)."""
    s = re.sub(r"^[A-Za-z]\s*\\in\s*", "", s)
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        return ("matrix", [[c.strip() for c in r.split("&")] for r in rows])
    union = _split_top(s, "\\cup")
    if len(union) > 1:
        return ("union", union)
    br = _outer_brackets(s)
    if br:
        o, inner, c = br
        items = _split_top(inner, ",")
        if o == "{":
            return ("set", items)
        if len(items) > 1:
            return ("seq", o, c, items)
    items = _split_top(s, ",")
    if len(items) > 1:
        return ("set", items)
    if s.count("\\pm") + s.count("\\mp") == 1:
        return (
            "set",
            [s.replace("\\pm", "+").replace("\\mp", "-"), s.replace("\\pm", "-").replace("\\mp", "+")],
        )
    parts = _split_relations(s)
    if len(parts) > 1:
        return ("rel", parts)
    return ("expr", s)


def _as_intervals(parts: list[str]) -> Optional[list[tuple]]:
    """An inequality (chain) in one variable -> [('seq', open, close, [lo, hi])]."""
    var = re.compile(r"[A-Za-z](?:_\w+)?")
    if len(parts) == 3:
        a, op, b = parts
        if var.fullmatch(b) and not var.fullmatch(a):
            a, op, b = b, _FLIP[op], a
        if not var.fullmatch(a) or op in ("=", "!="):
            return None
        closed = "=" in op
        if op.startswith("<"):
            return [("seq", "(", "]" if closed else ")", ["-\\infty", b])]
        return [("seq", "[" if closed else "(", ")", [b, "\\infty"])]
    if len(parts) == 5:
        lo, op1, x, op2, hi = parts
        if not var.fullmatch(x) or op1[0] != op2[0] or op1[0] not in "<>":
            return None
        if op1[0] == ">":
            lo, op1, hi, op2 = hi, _FLIP[op2], lo, _FLIP[op1]
        return [("seq", "[" if "=" in op1 else "(", "]" if "=" in op2 else ")", [lo, hi])]
    return None


def _intervals(st) -> Optional[list[tuple]]:
    if st[0] == "seq" and len(st[3]) == 2:
        return [st]
    if st[0] == "rel":
        return _as_intervals(st[1])
    if st[0] == "union":
        out = []
        for part in st[1]:
            sub = _structure(part)
            got = _intervals(sub)
            if got is None:
                return None
            out += got
        return out
    return None


def _unordered_match(golds: list, preds: list, eq) -> bool:
    if len(golds) != len(preds):
        return False
    left = list(preds)
    for g in golds:
        for k, p in enumerate(left):
            if eq(g, p):
                del left[k]
                break
        else:
            return False
    return True


def _seq_equal(g, p) -> bool:
    _, go, gc, gitems = g
    _, po, pc, pitems = p
    if len(gitems) != len(pitems):
        return False
    if len(gitems) == 2 and (go, gc) != (po, pc):
        return False  # (a, b] is not (a, b)
    return all(_match(a, b) for a, b in zip(gitems, pitems))


def _single_var_rhs(parts: list[str]) -> Optional[str]:
    if len(parts) == 3 and parts[1] == "=" and re.fullmatch(r"[A-Za-z](?:_\w+)?", parts[0]):
        return parts[2]
    return None


def _relations_equal(gp: list[str], pp: list[str]) -> bool:
    gi, pi = _as_intervals(gp), _as_intervals(pp)
    if gi is not None and pi is not None:
        return _unordered_match(gi, pi, _seq_equal)
    if len(gp) != 3 or len(pp) != 3:
        return False
    gop, pop = gp[1], pp[1]
    if gop not in (pop, _FLIP[pop]):
        return False
    grhs, prhs = _single_var_rhs(gp), _single_var_rhs(pp)
    if grhs is not None and prhs is not None and gp[0] == pp[0]:
        return _match(grhs, prhs)
    sp = _sympy()
    ge = _parse(gp[0]) - _parse(gp[2])
    pe = _parse(pp[0]) - _parse(pp[2])
    if pe == 0 or ge == 0:
        return False
    ratio = sp.cancel(ge / pe)
    if ratio.free_symbols or ratio == 0 or not ratio.is_number:
        ratio = sp.simplify(ratio)
        if ratio.free_symbols or ratio == 0 or not ratio.is_number:
            return False
    if gop in ("=", "!="):
        return gop == pop
    sign = ratio.is_positive
    if sign is None:
        return False
    return pop == (gop if sign else _FLIP[gop])


def _flat_items(items: list) -> list:
    """Set members as structures, with ``a \\pm b`` members expanded into two."""
    out = []
    for x in items:
        st = x if isinstance(x, tuple) else _structure(x)
        out += [_structure(y) for y in st[1]] if st[0] == "set" and not isinstance(x, tuple) else [st]
    return out


def _struct_equal(g, p) -> bool:
    gk, pk = g[0], p[0]
    if gk == "expr" and pk == "expr":
        return _scalar_equal(g[1], p[1])
    if gk == "set" or pk == "set":
        gitems = g[1] if gk == "set" else [g]
        pitems = p[1] if pk == "set" else [p]
        gitems, pitems = _flat_items(gitems), _flat_items(pitems)
        return _unordered_match(gitems, pitems, _struct_equal)
    if gk == "matrix" or pk == "matrix":
        return _matrix_equal(g, p)
    if gk == "seq" and pk == "seq":
        return _seq_equal(g, p)
    if gk == "rel" and pk == "rel":
        return _relations_equal(g[1], p[1])
    if gk == "rel" and pk == "expr" and _single_var_rhs(g[1]) is not None:
        return _match(_single_var_rhs(g[1]), p[1])
    if pk == "rel" and gk == "expr" and _single_var_rhs(p[1]) is not None:
        return _match(g[1], _single_var_rhs(p[1]))
    gi, pi = _intervals(g), _intervals(p)
    if gi is not None and pi is not None:
        return _unordered_match(gi, pi, _seq_equal)
    return False


def _matrix_cells(st) -> Optional[list[list[str]]]:
    if st[0] == "matrix":
        return st[1]
    if st[0] == "seq" and st[1] == "(":
        return [[x] for x in st[3]]  # a tuple read as a column vector
    return None


def _matrix_equal(g, p) -> bool:
    gm, pm = _matrix_cells(g), _matrix_cells(p)
    if gm is None or pm is None:
        return False
    if len(gm) == 1 and len(pm) == len(gm[0]) and all(len(r) == 1 for r in pm):
        gm = [[x] for x in gm[0]]  # row vs column vector of the same entries
    if len(gm) != len(pm) or any(len(a) != len(b) for a, b in zip(gm, pm)):
        return False
    return all(_match(a, b) for ra, rb in zip(gm, pm) for a, b in zip(ra, rb))


def _ratio(s: str) -> Optional[tuple[str, str]]:
    parts = _split_top(s, ":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


_TIME = re.compile(r"(\d{1,2}):(\d{2})")


def _scalar_equal(g: str, p: str) -> bool:
    if g == p:
        return True
    gn, pn = _parse_number(g), _parse_number(p, strict=True)
    if gn is not None and pn is not None:
        return _numbers_match(gn, pn)
    gt = _TIME.fullmatch(g)
    if gt:  # a time of day is not a ratio: 3:30 is not 1:10
        pt = _TIME.fullmatch(p)
        return bool(pt) and tuple(map(int, gt.groups())) == tuple(map(int, pt.groups()))
    gr, pr = _ratio(g), _ratio(p)
    if gr or pr:
        ga = _parse(gr[0]) / _parse(gr[1]) if gr else _parse(g)
        pa = _parse(pr[0]) / _parse(pr[1]) if pr else _parse(p)
        return _sym_equal(ga, pa)
    if g.endswith("%") or p.endswith("%"):
        return False
    a, b = _parse(g), _parse(p)
    if _sym_equal(a, b):
        return True
    # a decimal gold also accepts a rational that rounds to it (an unevaluated 3/8, say)
    if gn is not None and gn.places and gn.places >= 2 and b.is_Rational:
        return _numbers_match(gn, _Num(Fraction(int(b.p), int(b.q))))
    return False


def _match(g: str, p: str) -> bool:
    """Equivalence of two normalised, unit-stripped answers."""
    if g == p:
        return True
    if not p or not g:
        return False
    gn, pn = _parse_number(g), _parse_number(p, strict=True)
    if gn is not None and pn is not None:  # before structures: "10,080" is a number
        return _numbers_match(gn, pn)
    return _struct_equal(_structure(g), _structure(p))


_CHOICE = re.compile(r"\(?\s*([A-Ea-e])\s*\)?")
_ARTICLES = {"a", "an", "the"}
_FILLER = {"day", "is", "it", "answer", "final", "option", "choice", "on", "at", "of"}


def _choice_letter(s: str, strict: bool) -> Optional[str]:
    """``(C)``, ``C``, ``\\text{(C)}``; with strict=False also ``(C) 42`` or ``option C``."""
    t = _unwrap_text(s).strip()
    m = _CHOICE.fullmatch(t)
    if m and (strict is False or t.startswith("(") or t.isupper()):
        return m.group(1).upper()
    if not strict:
        m = re.match(r"(?:option|choice|answer)?\s*\(([A-Ea-e])\)|(?:option|choice)\s+([A-Ea-e])\b", t, re.I)
        rest = t[m.end() :] if m else ""
        if m and not re.search(r"\(\s*[A-Ea-e]\s*\)|(?<![A-Za-z\\])[A-E](?![A-Za-z])|[/,]", rest):
            return (m.group(1) or m.group(2)).upper()  # "(C) 12", never "(C) or (D)"
    return None


def _words(s: str) -> list[str]:
    t = _unwrap_text(s).lower()
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return [w for w in t.split() if w not in _ARTICLES]


def _is_text_answer(s: str) -> bool:
    if re.search(_TEXT_CMD, s):
        return bool(re.fullmatch(r"[A-Za-z][A-Za-z ,.'\-]*", _unwrap_text(s).strip()))
    # two letters are a word ("no"), never a product of two symbols
    return bool(re.fullmatch(r"[A-Za-z]{2,}(?: [A-Za-z]+)*", s)) and not _looks_math(s)


def _looks_math(s: str) -> bool:
    return bool(re.fullmatch(r"(?:" + "|".join(_FUNCS | {"sqrt", "pi"}) + r")\b.*", s))


def _text_equal(g: str, p: str) -> bool:
    """Words compared case-insensitively without articles; a few filler words ("Day", "the
    answer is") around the gold words are ignored, nothing else is."""
    gw, pw = _words(g), _words(p)
    if not gw:
        return False
    if gw == pw:
        return True
    n = len(gw)
    for k in range(len(pw) - n + 1):
        if pw[k : k + n] == gw and all(w in _FILLER for w in pw[:k] + pw[k + n :]):
            return True
    return False


_NAME = r"[A-Za-z](?:_\{?\\?[A-Za-z0-9]+\}?)?(?:\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])*\s*\))?"
_BARE_LIST = re.compile(r"[^()\[\]{}]+(?:,[^()\[\]{}]+){2,}")
_CALL = re.compile(r"([A-Za-z])\(\s*([A-Za-z])\s*\)")
_CURRENCY = re.compile(r"\\\$|^\s*\$\s*(?=[\d.])|(?<=[\d.])\s*\\?\$\s*$")
_INVISIBLE = re.compile("[\u2063\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u0300-\u036f]")


def _readable(gold: str, pred: str) -> bool:
    """Refusals that come before any comparison (docs/REWARDS.md, "what cannot be gamed")."""
    if _INVISIBLE.search(pred):
        return False  # zero-width, bidirectional or combining characters change what renders
    for c in pred:
        if ord(c) > 127 and c not in KNOWN_UNICODE and c not in gold:
            return False  # lookalikes: Cyrillic letters, other scripts' digits, sub/superscripts
    return True


def _qualified(gold: str, pred: str) -> bool:
    """True when the prediction holds a word that changes the claim and the gold does not."""
    pw = _unwrap_text(pred)
    return bool(QUALIFIER.search(pw)) and not QUALIFIER.search(_unwrap_text(gold))


def _and_list(s: str) -> str:
    """``2 \\text{ and } 3`` / ``2, and 3`` -> ``2, 3`` (a list written in words)."""
    return re.sub(r"\s*,?\s+and\s+", ", ", s)


def _labels(s: str) -> str:
    """``Smallest: 2, Largest: 9`` -> ``2, 9``."""
    return re.sub(r"(?:(?<=^)|(?<=,))\s*[A-Za-z][A-Za-z _]*?\s*:\s*(?=\S)", " ", s).strip()


def _drop_names(g: str, p: str) -> tuple[str, str]:
    """A name on the left of a side that the other side lacks: ``h(t)=t^2+3`` vs ``t^2+3``,
    ``k_{min} = 5``, chains ``x = y = 7``; ``h(t)=2t`` vs ``h(s)=2s`` renames the bound variable."""

    def strip(s: str) -> str:
        parts = _split_top(s, "=")
        if len(parts) < 2 or any(re.search(r"[<>]|\\[lg]e\b", x) for x in parts):
            return s
        if all(re.fullmatch(_NAME, x.strip()) for x in parts[:-1]):
            return parts[-1].strip()
        if re.fullmatch(_NAME, parts[0].strip()) and all(_match(x, parts[-1]) for x in parts[1:-1]):
            return parts[-1].strip()  # x = 5 + 7 = 12: the working, then the value
        return s

    gh, ph = "=" in g, "=" in p
    if gh and not ph:
        return strip(g), p
    if ph and not gh:
        return g, strip(p)
    if gh and ph:
        gc, pc = _CALL.match(g), _CALL.match(p)
        if gc and pc and gc.group(1) == pc.group(1) and gc.group(2) != pc.group(2):
            v, w = pc.group(2), gc.group(2)
            if not re.search(rf"(?<![A-Za-z\\]){w}(?![A-Za-z])", p[pc.end() :]):
                p = re.sub(rf"(?<![A-Za-z\\]){v}(?![A-Za-z])", w, p)
    return g, p


def _with_unit(raw: str, s: str) -> tuple[str, Optional[Unit], bool]:
    """(head, unit, ok): the number or expression and its unit; ok False for a refused unit."""
    head, unit = split_unit(s)
    if unit is None and _CURRENCY.search(raw):
        unit = Unit("money")
    if unit is not None and unit.dim.startswith("noun:") and QUALIFIER.search(unit.dim[5:]):
        return s, None, False
    if unit is not None and not unit.dim.startswith("noun:") and not re.search(r"\d", head):
        return s, None, True  # "x cm"? not a quantity: leave it whole
    if (
        unit is not None
        and unit.dim.startswith("noun:")
        and _parse_number(head) is None
        and magnitude(unit) is None
    ):
        return s, None, True  # words after an expression stay (they may be variables)
    s = re.sub(r"^\s*(?:dollars?|usd)\s+", "", head, flags=re.I)
    return s, unit, True


def _scaled(s: str, factor) -> Optional[str]:
    n = _parse_number(s, strict=True)
    if n is None:
        return None
    v = n.value * factor
    return f"{v.numerator}/{v.denominator}" if v.denominator != 1 else str(v.numerator)


def _equivalent(gold: str, predicted: str) -> bool:
    if len(gold) > 4 * MAX_ANSWER_CHARS or len(predicted) > MAX_ANSWER_CHARS:
        return False
    if "\\boxed" in predicted or "\\fbox" in predicted:  # an answer passed still boxed
        predicted = _from_boxed(predicted) or predicted
    if not _readable(gold, predicted):
        return False
    g, p = _normalize(gold), _normalize(predicted)
    if not p or not g:
        return False
    if g == p:
        return True
    if not (_depth_ok(g) and _depth_ok(p)):
        return False
    if " and " not in _unwrap_text(g):
        p = _and_list(_unwrap_text(p))
    if _qualified(g, p):
        return False  # "not 3", "at least 3", "3 or more", "5 (or 6)", "5 thousand"
    letter = _choice_letter(g, strict=True)
    if letter is not None:
        return _choice_letter(p, strict=False) == letter
    if _is_text_answer(g):
        return _text_equal(g, p)
    base = re.fullmatch(r"(\w+)_(\d+)", g)
    if base:  # a number written in base b: compare the digits
        return _unwrap_text(p).replace(" ", "") in (g, base.group(1))
    g, p = render_fonts(g), render_fonts(p)
    if ":" not in g:
        p = _labels(p)
    g, p = _drop_names(g, p)
    if _BARE_LIST.fullmatch(g) and p.startswith("(") and p.endswith(")"):
        inner = p[1:-1]
        if len(_split_top(inner, ",")) == len(_split_top(g, ",")) >= 3:
            p = inner  # a tuple for an unordered list of three or more (never an interval)
    g, gu, gok = _with_unit(gold, g)
    p, pu, pok = _with_unit(predicted, p)
    if not (gok and pok) or not p:
        return False
    factor = units_agree(gu, pu)
    mag = magnitude(pu)
    if mag is not None and gu != pu:
        factor = Fraction(mag)
    elif factor is None:
        return False
    if factor != 1:
        p = _scaled(p, factor)
        if p is None:
            return False
    return _match(g, p)


def is_number_answer(pred: str, gold: str) -> bool:
    """True when ``pred`` is a number as an answer to a numeric ``gold`` (``numeric_only``): not
    ``9+5``, ``17 \\times 23``, ``2^{10}`` or ``5!``; for a whole-number gold not a fraction."""
    if not _readable(gold, pred):
        return False
    p = render_fonts(_normalize(pred))
    p = re.sub(r"\((-?\d+)\)", r"\1", _drop_names("", p)[1])  # (1)/(2) is a fraction as written
    p, unit, ok = _with_unit(pred, p)
    n = _parse_number(p, strict=True) if ok else None
    if n is None:
        return False
    gn = gold_number(gold)
    if gn is not None and gn.value.denominator == 1 and re.search(r"\\frac|/", p):
        return False  # 28/2 for 14 is unevaluated
    return True


def gold_number(gold: str) -> Optional[_Num]:
    """The gold as a plain number (units allowed), or None when it is anything else."""
    g = render_fonts(_normalize(gold))
    g, _, ok = _with_unit(gold, g)
    return _parse_number(g) if ok else None


def equivalent(gold: str, predicted: str) -> bool:
    """True when ``predicted`` is the same answer as ``gold`` (see the module docstring).

    Never raises: an answer that cannot be read, or that we refuse to evaluate, is not
    equivalent.
    """
    if not isinstance(gold, str) or not isinstance(predicted, str):
        return False
    try:
        return bool(_equivalent(gold, predicted))
    except (_Refused, RecursionError, ValueError, TypeError, ZeroDivisionError, OverflowError, MemoryError):
        return False
    except Exception:  # sympy raises many kinds of errors on odd inputs
        return False
