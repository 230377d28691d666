"""A small recursive-descent LaTeX parser building a fixed set of sympy objects."""

from __future__ import annotations

import functools
import re
from fractions import Fraction

from rewards.math.limits import (
    MAX_ANSWER_CHARS,
    MAX_DEPTH,
    MAX_FACTORIAL,
    MAX_POW_BITS,
    MAX_SYMBOLIC_EXPONENT,
)
from rewards.math.limits import Refused as _Refused

_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|])|(?P<letter>[a-zA-Z])"
    r"|(?P<op>\*\*|[-+*/^_()\[\]{}!|'])|(?P<ws>\s+)"
)
_FUNCS = {
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "log",
    "ln",
    "exp",
    "lg",
}
_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
_ATOM_CMDS = _FUNCS | _GREEK | {"frac", "sqrt", "pi", "infty", "binom", "{", "|", "lfloor", "lceil"}


def _tokenize(s: str) -> list[tuple[str, str]]:
    s = re.sub(
        r"(?<![\\a-zA-Z])("
        + "|".join(sorted(_FUNCS | {"sqrt", "pi"}, key=len, reverse=True))
        + r")(?![a-zA-Z])",
        r"\\\1",
        s,
    )
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
        if name in ("lfloor", "lceil"):
            e = self.expr()
            self.expect("\\rfloor" if name == "lfloor" else "\\rceil")
            return sp.floor(e) if name == "lfloor" else sp.ceiling(e)
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
            "sin": sp.sin,
            "cos": sp.cos,
            "tan": sp.tan,
            "cot": sp.cot,
            "sec": sp.sec,
            "csc": sp.csc,
            "arcsin": sp.asin,
            "arccos": sp.acos,
            "arctan": sp.atan,
            "sinh": sp.sinh,
            "cosh": sp.cosh,
            "tanh": sp.tanh,
            "ln": sp.log,
            "exp": sp.exp,
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
            size = (
                max(int(sp.Rational(b).p).bit_length(), int(sp.Rational(b).q).bit_length())
                if b.is_Rational
                else 64
            )
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
