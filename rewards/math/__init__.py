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

Layers, one module each: ``extract`` (the final answer), ``normalise``, ``numbers`` (the Fraction
fast path), ``units``, ``latex`` (the parser), ``compare`` (structures, words, sympy), ``checker``
(``math_answer``), ``judge`` (``math_judge``). Boxes are read by :mod:`rewards.boxes`.

Why our own parser and not latex2sympy2_extended (what math-verify parses with): on the 7,880
gold/rewrite/near-miss pairs of ``bench/math.py`` this module agreed with the labels on all of
them at well over 10x math-verify's checks per second (bench/math.py), where math-verify missed 4; and our parser can only
build a fixed set of sympy objects, so no path leads from model text to ``parse_expr``.

Safety: model text is never handed to ``eval``, ``exec``, ``sympify`` or ``parse_expr``; the parser
only builds sympy numbers, symbols and a fixed set of functions. Huge powers and factorials,
deep nesting and very long strings are refused cheaply (not equivalent). The hard per-check
timeout is the runner's job (worker processes), so nothing here uses signals.

Decimals are read as exact rationals, so ``3.14`` is never equal to ``\\pi``; a decimal gold
written to k >= 2 places also accepts a prediction that rounds to it at k places; a gold with one
place or none is exact (0.54 is not 0.5). Units are compared (rewards.math.units), and the
hacking classes a policy could use are refused (docs/REWARDS.md, tests/rewards/math_hacks.py).
"""

from __future__ import annotations

from rewards.math.checker import gold_answer, math_answer
from rewards.math.compare import equivalent
from rewards.math.extract import DEFAULT_ORDER, extract_answer

__all__ = ["DEFAULT_ORDER", "extract_answer", "equivalent", "gold_answer", "math_answer"]
