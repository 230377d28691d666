"""Caps on what the math verifier agrees to evaluate, and the refusal they raise."""

MAX_ANSWER_CHARS = 400  # longer extracted answers are not math answers; refuse them
MAX_DEPTH = 40  # bracket / parser nesting
MAX_POW_BITS = 200_000  # size of an exact integer power we agree to build
MAX_FACTORIAL = 5000
MAX_SYMBOLIC_EXPONENT = 200
MAX_OPS = 400  # sympy operation count before simplify


class Refused(Exception):
    """An input we decline to evaluate (too big, too deep, or not parseable)."""
