"""Math answers: extraction from a completion and equivalence with a gold answer.

Equivalence is decided in layers, cheapest first, so that the common case (a number) never
touches sympy:

1. normalise both strings (LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``, degrees, currency,
   unit words, Unicode math) and compare them as text;
2. plain numbers (integers, decimals, fractions, mixed numbers, scientific notation, percentages)
   are compared exactly as :class:`fractions.Fraction` values;
3. multiple-choice letters and ``\\text{}`` answers are compared as words;
4. structures (tuples, intervals, inequalities, unordered solution lists, sets, matrices,
   equations, ratios) are split and compared part by part;
5. anything else is parsed by a small recursive-descent LaTeX parser of our own into sympy
   objects and compared symbolically.

Why our own parser and not latex2sympy2_extended (what math-verify parses with): on the 7,880
gold/rewrite/near-miss pairs of ``bench/math.py`` this module agreed with the labels on all of
them at ~17x math-verify's checks per second, where math-verify missed 4; and our parser can only
build a fixed set of sympy objects, so no path leads from model text to ``parse_expr``.

Safety: model text is never handed to ``eval``, ``exec``, ``sympify`` or ``parse_expr``; the parser
only builds sympy numbers, symbols and a fixed set of functions. Huge powers and factorials,
deep nesting and very long strings are refused cheaply (not equivalent). The hard per-check
timeout is the runner's job (worker processes), so nothing here uses signals.

Decimals are read as exact rationals, so ``3.14`` is never equal to ``\\pi``; a decimal gold
written to k places also accepts a rational prediction that rounds to it at k places.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any, Mapping, Optional, Sequence

from rewards import RewardResult

__all__ = ["DEFAULT_ORDER", "extract_answer", "equivalent", "math_answer"]

DEFAULT_ORDER = ("boxed", "hash", "answer_is", "answer_colon")

MAX_ANSWER_CHARS = 400  # longer extracted answers are not math answers; refuse them
MAX_DEPTH = 40  # bracket / parser nesting
MAX_POW_BITS = 200_000  # size of an exact integer power we agree to build
MAX_FACTORIAL = 5000
MAX_SYMBOLIC_EXPONENT = 200
MAX_OPS = 400  # sympy operation count before simplify


class _Refused(Exception):
    """An input we decline to evaluate (too big, too deep, or not parseable)."""


# ============================================================================ extraction


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


# ============================================================================ normalisation

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


# ============================================================================ numbers

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


def _parse_number(s: str) -> Optional[_Num]:
    """Plain numbers only: the Fraction fast path. None when ``s`` is anything else."""
    if len(s) > 60:
        return None
    mixed = _RE_MIXED_PLAIN.fullmatch(s.strip())
    t = s.replace(" ", "")
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
            e = int(m.group("e1") if "e1" in m.groupdict() and m.group("e1") else m.group("e2") or m.group("e3"))
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
            if gold.places and g == gold.value and _rounds_to(p, g, gold.places):
                return True
    return False


# ============================================================================ LaTeX -> sympy

_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|])|(?P<letter>[a-zA-Z])"
    r"|(?P<op>\*\*|[-+*/^_()\[\]{}!|'])|(?P<ws>\s+)"
)
_FUNCS = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
          "tanh", "log", "ln", "exp", "lg"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
          "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi",
          "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Sigma", "Phi",
          "Psi", "Omega"}
_ATOM_CMDS = _FUNCS | _GREEK | {"frac", "sqrt", "pi", "infty", "binom", "{", "|"}


def _tokenize(s: str) -> list[tuple[str, str]]:
    s = re.sub(r"(?<![\\a-zA-Z])(" + "|".join(sorted(_FUNCS | {"sqrt", "pi"}, key=len, reverse=True)) + r")(?![a-zA-Z])", r"\\\1", s)
    out, i = [], 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise _Refused(f"unexpected character {s[i]!r}")
        i = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(0)))
    return out


class _Parser:
    """Recursive descent over a small LaTeX / plain-math grammar, building sympy objects.

    expr := term (('+'|'-') term)* ; term := unary (('*'|'/'|implicit) power)* ;
    unary := ('-'|'+') unary | power ; power := postfix ('^' exponent)? ; postfix := atom '!'*
    """

    def __init__(self, text: str, sp):
        self.sp = sp
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    # -- helpers
    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end":
            raise _Refused("unexpected end")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise _Refused(f"expected {value!r}")

    def nest(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused("nested too deeply")

    # -- grammar
    def parse(self):
        e = self.expr()
        if self.i != len(self.toks):
            raise _Refused(f"trailing {self.peek()[1]!r}")
        return e

    def expr(self):
        self.nest()
        left = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            right = self.term()
            left = left + right if op == "+" else left - right
        self.depth -= 1
        return left

    def starts_atom(self, tok) -> bool:
        kind, val = tok
        if kind in ("letter",):
            return True
        if kind == "op":
            return val in ("(", "{", "[")
        return kind == "cmd" and val[1:] in _ATOM_CMDS

    def term(self):
        left = self.unary()
        while True:
            kind, val = self.peek()
            if val in ("*", "\\cdot", "\\times"):
                self.take()
                left = left * self.unary()
            elif val in ("/", "\\div"):
                self.take()
                right = self.unary()
                if right == 0:
                    raise _Refused("division by zero")
                left = left / right
            elif self.starts_atom((kind, val)):
                left = left * self.power()
            else:
                return left

    def unary(self):
        val = self.peek()[1]
        if val == "-":
            self.take()
            return -self.unary()
        if val == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek()[1] in ("^", "**"):
            self.take()
            return _guarded_pow(self.sp, base, self.exponent())
        return base

    def exponent(self):
        val = self.peek()[1]
        if val == "{":
            return self.group()
        if val in ("-", "+"):
            self.take()
            e = self.exponent()
            return -e if val == "-" else e
        return self.power()

    def postfix(self):
        a = self.atom()
        while self.peek()[1] == "!":
            self.take()
            a = _guarded_factorial(self.sp, a)
        return a

    def group(self, close: str = "}"):
        self.take()
        e = self.expr()
        self.expect(close)
        return e

    def arg(self):
        """A macro argument: ``{...}`` or one token (``\\frac12`` is 1/2)."""
        kind, val = self.peek()
        if val == "{":
            return self.group()
        if kind == "num" and len(val) > 1:
            self.toks[self.i] = ("num", val[1:])
            return self.sp.Integer(int(val[0]))
        return self.atom()

    def atom(self):
        sp = self.sp
        kind, val = self.peek()
        if kind == "num":
            self.take()
            return sp.Rational(Fraction(val).numerator, Fraction(val).denominator)
        if kind == "letter":
            self.take()
            return self.symbol(val)
        if val in ("(", "[", "{"):
            return self.group({"(": ")", "[": "]", "{": "}"}[val])
        if val == "|":
            self.take()
            e = self.expr()
            self.expect("|")
            return sp.Abs(e)
        if kind == "cmd":
            self.take()
            return self.command(val[1:])
        raise _Refused(f"unexpected {val!r}")

    def symbol(self, name: str):
        sp = self.sp
        if self.peek()[1] == "_":
            self.take()
            kind, sub = self.peek()
            if sub == "{":
                self.take()
                parts = []
                while self.peek()[1] != "}":
                    parts.append(self.take()[1])
                self.take()
                sub = "".join(parts)
            else:
                self.take()
            if not re.fullmatch(r"[A-Za-z0-9]{1,8}", sub):
                raise _Refused("odd subscript")
            return sp.Symbol(f"{name}_{sub}")
        if name == "e":
            return sp.E
        if name == "i":
            return sp.I
        return sp.Symbol(name)

    def command(self, name: str):
        sp = self.sp
        if name == "frac":
            num = self.arg()
            den = self.arg()
            if den == 0:
                raise _Refused("division by zero")
            return num / den
        if name == "sqrt":
            if self.peek()[1] == "[":
                n = self.group("]")
                x = self.arg()
                if not (n.is_Integer and 1 < int(n) <= 100):
                    raise _Refused("odd root index")
                return sp.root(x, n)
            return sp.sqrt(self.arg())
        if name == "binom":
            n, k = self.arg(), self.arg()
            if n.is_Integer and int(n) > MAX_FACTORIAL:
                raise _Refused("binomial too large")
            return sp.binomial(n, k)
        if name == "pi":
            return sp.pi
        if name == "infty":
            return sp.oo
        if name in _GREEK:
            return sp.Symbol(name)
        if name in _FUNCS:
            return self.function(name)
        if name == "{":  # \{ as a plain bracket
            e = self.expr()
            self.expect("\\}")
            return e
        raise _Refused(f"unsupported command \\{name}")

    def function(self, name: str):
        sp = self.sp
        power = None
        base = None
        if name == "log" and self.peek()[1] == "_":
            self.take()
            base = self.arg()
        if self.peek()[1] == "^":
            self.take()
            power = self.exponent()
        arg = self.group(")") if self.peek()[1] == "(" else self.power()
        fn = {
            "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec,
            "csc": sp.csc, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan,
            "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "ln": sp.log, "exp": sp.exp,
        }.get(name)
        if name in ("log", "lg"):
            out = sp.log(arg, base if base is not None else (10 if name == "lg" else sp.E))
        else:
            out = fn(arg)
        return _guarded_pow(sp, out, power) if power is not None else out


def _guarded_pow(sp, base, exp):
    """``base ** exp``, refusing results too large to build (``10^{10^{10}}``)."""
    if exp.is_Rational and base.is_Number:
        b = abs(base)
        if b not in (0, 1):
            size = max(int(sp.Rational(b).p).bit_length(), int(sp.Rational(b).q).bit_length()) if b.is_Rational else 64
            if abs(exp) * size > MAX_POW_BITS or exp.q > 1000:
                raise _Refused("power too large")
    elif exp.is_Number and abs(exp) > MAX_SYMBOLIC_EXPONENT:
        raise _Refused("exponent too large")  # (x+1)^{100000} would expand forever
    return sp.Pow(base, exp)


def _guarded_factorial(sp, a):
    if a.is_Integer:
        if int(a) > MAX_FACTORIAL:
            raise _Refused("factorial too large")
        if int(a) < 0:
            raise _Refused("factorial of a negative number")
    elif a.is_Number:
        raise _Refused("factorial of a non-integer")
    return sp.factorial(a)


def _sympy():
    import sympy

    return sympy


@functools.lru_cache(maxsize=4096)
def _parse(s: str):
    """A normalised answer string -> sympy expression (cached: golds repeat across a group)."""
    if len(s) > MAX_ANSWER_CHARS:
        raise _Refused("too long")
    return _Parser(s, _sympy()).parse()


# ============================================================================ symbolic comparison


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


# ============================================================================ structures

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
        return ("set", [s.replace("\\pm", "+").replace("\\mp", "-"), s.replace("\\pm", "-").replace("\\mp", "+")])
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


def _scalar_equal(g: str, p: str) -> bool:
    if g == p:
        return True
    gn, pn = _parse_number(g), _parse_number(p)
    if gn is not None and pn is not None:
        return _numbers_match(gn, pn)
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
    if gn is not None and gn.places and b.is_Rational:
        return _numbers_match(gn, _Num(Fraction(int(b.p), int(b.q))))
    return False


def _match(g: str, p: str) -> bool:
    """Equivalence of two normalised, unit-stripped answers."""
    if g == p:
        return True
    if not p or not g:
        return False
    gn, pn = _parse_number(g), _parse_number(p)
    if gn is not None and pn is not None:  # before structures: "10,080" is a number
        return _numbers_match(gn, pn)
    return _struct_equal(_structure(g), _structure(p))


# ============================================================================ words and letters

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
        if m:
            return (m.group(1) or m.group(2)).upper()
    return None


def _words(s: str) -> list[str]:
    t = _unwrap_text(s).lower()
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return [w for w in t.split() if w not in _ARTICLES]


def _is_text_answer(s: str) -> bool:
    if re.search(_TEXT_CMD, s):
        return bool(re.fullmatch(r"[A-Za-z][A-Za-z ,.'\-]*", _unwrap_text(s).strip()))
    return bool(re.fullmatch(r"[A-Za-z]{3,}(?: [A-Za-z]+)*", s)) and not _looks_math(s)


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


# ============================================================================ entry points


def _equivalent(gold: str, predicted: str) -> bool:
    if len(gold) > 4 * MAX_ANSWER_CHARS or len(predicted) > MAX_ANSWER_CHARS:
        return False
    if "\\boxed" in predicted or "\\fbox" in predicted:  # an answer passed still boxed
        predicted = _from_boxed(predicted) or predicted
    g, p = _normalize(gold), _normalize(predicted)
    if not p or not g:
        return False
    if g == p:
        return True
    if not (_depth_ok(g) and _depth_ok(p)):
        return False
    letter = _choice_letter(g, strict=True)
    if letter is not None:
        return _choice_letter(p, strict=False) == letter
    if _is_text_answer(g):
        return _text_equal(g, p)
    base = re.fullmatch(r"(\w+)_(\d+)", g)
    if base:  # a number written in base b: compare the digits
        return _unwrap_text(p).replace(" ", "") in (g, base.group(1))
    g, p = _strip_units(g), _strip_units(p)
    if not p:
        return False
    return _match(g, p)


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


def gold_answer(value: Any) -> Optional[str]:
    """The gold answer from a dataset field: ``... #### n``, a solution with ``\\boxed{}``, or as is."""
    if value is None:
        return None
    text = str(value)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip() or None
    if "\\boxed" in text or "\\fbox" in text:
        return _from_boxed(text)
    return text.strip() or None


def math_answer(completion: str, fields: Mapping[str, Any], **params) -> Optional[RewardResult]:
    """1.0 and correct when the completion's final answer equals ``fields["answer"]``.

    params: ``order`` (extraction strategies, see :func:`extract_answer`); ``numeric_only``
    (default False): the extracted answer must itself be a number, so an unevaluated
    expression such as ``\\boxed{9 + 5}`` for gold 14 is not correct. Arithmetic tasks need
    it: a policy trained on them learned to box the question (measured in the CPU demo).
    Not applicable (None) when the sample has no answer.
    """
    if "answer" not in fields or fields["answer"] is None:
        return None
    gold = gold_answer(fields["answer"])
    if gold is None:
        return None
    pred = extract_answer(completion or "", params.get("order"))
    info = {"gold": gold[:200], "extracted": None if pred is None else pred[:200]}
    if pred is None:
        return RewardResult(0.0, False, info)
    if params.get("numeric_only"):
        from rewards.format import is_number_answer

        if not is_number_answer(pred):
            return RewardResult(0.0, False, dict(info, reason="not a number"))
    ok = equivalent(gold, pred)
    return RewardResult(1.0 if ok else 0.0, ok, info)
