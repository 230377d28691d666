"""Evaluation on held-out sets: accuracy, unbiased pass@k, tokens per answer."""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct (Chen et al., 2021).

    pass@k = 1 - C(n - c, k) / C(n, k), computed as a running product so large n does not
    overflow. Needs k <= n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(per_problem: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """Average pass@k over problems given (n, c) pairs; k larger than n is left out."""
    pairs = list(per_problem)
    out = {}
    for k in ks:
        vals = [pass_at_k(n, c, k) for n, c in pairs if n >= k]
        if vals:
            out[k] = sum(vals) / len(vals)
    return out


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {"tokens_mean": 0.0, "tokens_median": 0.0}
    return {"tokens_mean": float(statistics.fmean(lengths)), "tokens_median": float(statistics.median(lengths))}
