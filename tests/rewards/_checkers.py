"""Checkers for the runner tests. Importable by worker processes (tests.rewards._checkers:...)."""

from __future__ import annotations

import os
import time

from rewards import RewardResult


def const(completion, fields, value=1.0):
    return float(value)


def length(completion, fields):
    return float(len(completion))


def echo_answer(completion, fields):
    """1.0 and correct when the completion equals fields['answer'], else 0.0 and not correct."""
    ok = completion.strip() == str(fields.get("answer", ""))
    return RewardResult(1.0 if ok else 0.0, correct=ok, info={"seen": completion})


def only_if_answer(completion, fields):
    """Not applicable (None) when the sample has no answer field."""
    if "answer" not in fields:
        return None
    return 0.5


def boom(completion, fields):
    if "boom" in completion:
        raise ValueError("kaboom: " + completion)
    return 1.0


def spin(completion, fields):
    """Burns CPU forever on 'spin', else returns 1.0."""
    if completion == "spin":
        while True:
            pass
    return 1.0


def sleepy(completion, fields):
    if completion == "sleep":
        time.sleep(1e6)
    return 1.0


def nap(completion, fields, seconds=0.2):
    time.sleep(seconds)
    return 1.0


def die(completion, fields):
    if completion == "die":
        os._exit(3)
    return 1.0


def nan(completion, fields):
    return float("nan")


def exits(completion, fields):
    raise SystemExit(0)


def pid(completion, fields):
    return float(os.getpid())


def bad_type(completion, fields):
    return "1.0"
