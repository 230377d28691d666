"""Checkers that misbehave, for tests/rl_reason/test_bad_input.py (importable by workers)."""

from __future__ import annotations

import os
from pathlib import Path


def huge_after(completion, fields, after: int = 0, counter: str = ""):
    """1e200 (finite, but no float32 holds it) from the ``after``-th call on; the calls are
    counted in the file ``counter`` (workers=1 keeps them in order)."""
    n = 0
    if counter:
        p = Path(counter)
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
    return 1e200 if n >= after else float(len(completion) % 3)


def always_raises(completion, fields):
    raise RuntimeError("this checker is broken")


def needs_threshold(completion, fields, *, threshold):
    return float(len(completion) > threshold)


def chatty(completion, fields):
    for i in range(500):
        print("debug line", i)
    os.write(1, b"a line from the C level\n")
    return 1.0


def hang(completion, fields):
    import time

    time.sleep(1e6)


def zero(completion, fields):
    return 0.0
