"""Length shaping: DAPO's soft overlong punishment and a linear length penalty.

Both are shaping rewards (``correct=None``) and score <= 0, so they only ever subtract.

Length unit
-----------
``unit="auto"`` (default) measures in tokens when the caller puts the completion's token count in
``fields["completion_tokens"]`` (the rl_reason trainer does), and otherwise in whitespace-separated
words (``len(completion.split())``), which is a rough stand-in for tokens (English text is about
0.75 words per token, so set limits a little lower when you score words). ``unit`` can also be
forced to ``"tokens"`` (an error when ``completion_tokens`` is missing), ``"words"`` or
``"chars"``. The unit used is reported in ``info["unit"]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from rewards import RewardResult

__all__ = ["overlong_penalty", "length_penalty", "completion_length"]

_UNITS = ("auto", "tokens", "words", "chars")


def completion_length(completion: str, fields: Mapping[str, Any], unit: str = "auto") -> tuple[int, str]:
    """(length, unit actually used) of a completion; see the module docstring."""
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {', '.join(_UNITS)}, not {unit!r}")
    tokens = fields.get("completion_tokens") if fields is not None else None
    if unit in ("auto", "tokens") and tokens is not None:
        return int(tokens), "tokens"
    if unit == "tokens":
        raise ValueError('unit="tokens" needs fields["completion_tokens"]')
    if unit == "chars":
        return len(completion), "chars"
    return len(completion.split()), "words"


def overlong_penalty(
    completion: str,
    fields: Mapping[str, Any],
    *,
    max_len: Optional[int] = None,
    cache_len: int = 256,
    penalty: float = 1.0,
    unit: str = "auto",
) -> RewardResult:
    """DAPO soft overlong punishment.

    With ``L`` the completion length, ``max_len`` the generation limit and ``cache_len`` the
    width of the soft zone::

        L <= max_len - cache_len            ->  0
        max_len - cache_len < L <= max_len  ->  -penalty * (L - (max_len - cache_len)) / cache_len
        L > max_len                         ->  -penalty

    ``max_len`` defaults to ``fields["max_new_tokens"]`` when the caller provides it; set it to
    the rollout's ``max_new_tokens`` otherwise. Pair it with a correctness reward: DAPO adds this
    to the rule-based reward so truncated, rambling answers lose credit gradually instead of
    being cut to 0 at the limit.
    """
    if max_len is None:
        max_len = fields.get("max_new_tokens") if fields is not None else None
        if max_len is None:
            raise ValueError(
                "overlong_penalty needs params.max_len (the generation limit, e.g. the "
                "rollout's max_new_tokens)"
            )
    max_len, cache_len = int(max_len), int(cache_len)
    if max_len <= 0 or cache_len <= 0 or cache_len > max_len:
        raise ValueError(f"overlong_penalty needs 0 < cache_len <= max_len (got {cache_len}, {max_len})")
    length, used = completion_length(completion, fields, unit)
    start = max_len - cache_len
    if length <= start:
        frac = 0.0
    elif length <= max_len:
        frac = (length - start) / cache_len
    else:
        frac = 1.0
    return RewardResult(-float(penalty) * frac, None, {"length": length, "unit": used})


def length_penalty(
    completion: str,
    fields: Mapping[str, Any],
    *,
    target: int = 512,
    coef: Optional[float] = None,
    max_penalty: float = 1.0,
    unit: str = "auto",
) -> RewardResult:
    """A linear penalty for length beyond a target::

        score = -min(max_penalty, coef * max(0, L - target))

    ``coef`` defaults to ``max_penalty / target``, so the penalty reaches ``-max_penalty`` at twice
    the target length. ``target`` may also come from ``fields["target_len"]`` (per-sample budgets,
    for example a reference solution's length).

    Why not Kimi k1.5's length reward: it ranks each response against the shortest and longest
    responses *of the same prompt's group*, and a checker sees one completion at a time, never its
    group. Under GRPO the group normalisation of advantages already turns this per-sample penalty
    into a relative one (shorter siblings gain), which is the part of the Kimi reward that matters.
    To pay length credit only to correct answers, give this checker a small weight next to a
    correctness checker, or gate it in your own checker on ``rewards.math.equivalent``.
    """
    if fields is not None and fields.get("target_len") is not None:
        target = fields["target_len"]
    target = int(target)
    if target <= 0:
        raise ValueError(f"length_penalty needs target > 0, got {target}")
    if coef is None:
        coef = float(max_penalty) / target
    length, used = completion_length(completion, fields, unit)
    over = max(0, length - target)
    score = -min(float(max_penalty), float(coef) * over)
    return RewardResult(score, None, {"length": length, "unit": used})
