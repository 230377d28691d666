"""Answer-speed metrics of an evaluation, as pure functions of its graded samples.

Every figure here is recomputed from the rows of ``samples.jsonl`` (``tokens``, ``correct``,
``seconds``, ``budget``), so a reader can check eval.json against the samples it came from.

- ``tokens_per_correct``: mean completion tokens of the *correct* answers (None when none is
  correct): what a right answer costs to read and to generate.
- ``accuracy_per_1k_tokens``: correct answers per 1,000 generated tokens over all samples
  (``1000 * n_correct / total_tokens``): accuracy bought per unit of generation.
- ``seconds_per_answer_p50`` / ``_p95``: percentiles of each answer's wall-clock seconds.

Per-answer seconds
------------------
An engine decodes a batch in lockstep: every sequence advances one token per decoding step, and
a sequence's answer is complete at the step that produced its last token. So an answer of ``L``
tokens in a batch whose longest answer has ``L_max`` tokens and which took ``T`` seconds is
complete after about ``T * L / L_max`` seconds (:func:`answer_seconds`; prompt prefill is spread
over the steps). With ``--batch-size 1`` (one prompt, one sample per batch) this is the exact
wall-clock time of that answer; eval.json records the engine and the batch size beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SPEED_KEYS",
    "answer_seconds",
    "budget_row",
    "percentile",
    "read_samples",
    "speed_metrics",
]

SPEED_KEYS = (
    "tokens_per_correct",
    "accuracy_per_1k_tokens",
    "seconds_per_answer_p50",
    "seconds_per_answer_p95",
)


def answer_seconds(batch_s: float, lengths: Sequence[int]) -> list[float]:
    """Each answer's completion time in a lockstep-decoded batch: ``batch_s * L / max(L)``."""
    if not lengths:
        return []
    longest = max(lengths)
    if longest <= 0:
        return [float(batch_s)] * len(lengths)
    return [float(batch_s) * L / longest for L in lengths]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between order statistics
    (numpy's default method); None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile needs 0 <= q <= 100, got {q}")
    xs = sorted(float(v) for v in values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _get(row: Any, key: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(key, default)
    return getattr(row, key, default)


def speed_metrics(rows: Iterable[Any]) -> dict[str, float | None]:
    """tokens_per_correct, accuracy_per_1k_tokens and seconds_per_answer_p50/_p95 of graded
    samples (SampleResult objects or samples.jsonl dicts with tokens, correct, seconds)."""
    rows = list(rows)
    tokens = [int(_get(r, "tokens", 0)) for r in rows]
    correct = [bool(_get(r, "correct", False)) for r in rows]
    right = [t for t, ok in zip(tokens, correct) if ok]
    total = sum(tokens)
    seconds = [float(s) for s in (_get(r, "seconds") for r in rows) if s is not None]
    return {
        "tokens_per_correct": sum(right) / len(right) if right else None,
        "accuracy_per_1k_tokens": 1000.0 * len(right) / total if total else 0.0,
        "seconds_per_answer_p50": percentile(seconds, 50),
        "seconds_per_answer_p95": percentile(seconds, 95),
    }


def budget_row(budget: int, variant: str, rows: Sequence[Any]) -> dict[str, Any]:
    """One row of the accuracy-vs-budget table: the samples evaluated at one budget."""
    rows = list(rows)
    n = len(rows)
    tokens = [int(_get(r, "tokens", 0)) for r in rows]
    row = {
        "budget": int(budget),
        "variant": variant,
        "n_samples": n,
        "accuracy": sum(bool(_get(r, "correct")) for r in rows) / n if n else 0.0,
        "tokens_mean": sum(tokens) / n if n else 0.0,
        "within_budget_frac": sum(t <= budget for t in tokens) / n if n else 0.0,
    }
    row.update(speed_metrics(rows))
    return row


def read_samples(path: str | Path) -> list[dict]:
    """The rows of a samples.jsonl."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
