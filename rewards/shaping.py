"""Length shaping: DAPO's soft overlong punishment, a linear length penalty, and the
answer-speed rewards (Kimi k1.5's group-relative length reward, a per-token cost on correct
answers, and a reward for being right within a stated token budget).

All are shaping rewards (``correct=None``): accuracy is logged from the correctness checker.

Batch-level checkers
--------------------
``group_length_reward``, ``token_cost`` and ``budget_reward`` need to know whether each answer
is right, and the first also needs the other answers of the same prompt. They are *batch-level*
checkers (``fn.batch_level = True``): the runner calls them once per batch, in the calling
process, after the per-sample checkers, as::

    fn(completions, fields_list, correct, groups, **params) -> list[float | None | RewardResult]

where ``correct[i]`` is the combined success flag of the per-sample checkers (None: none
reported one, counted as not correct here) and ``groups[i]`` the sample's group id (the prompt
index in training). The trainer also puts ``fields["step"]`` (the training step) next to
``completion_tokens``; warm-ups read it. They are pure arithmetic over lengths, so they run
without a worker process or a timeout.

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

from typing import Any, Mapping, Optional, Sequence

from rewards import RewardResult

__all__ = [
    "overlong_penalty",
    "length_penalty",
    "completion_length",
    "group_length_reward",
    "token_cost",
    "budget_reward",
    "kimi_length_lambdas",
]

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

    It applies to every answer, right or wrong. To rank answers against their own group and pay
    length credit only to correct ones, use :func:`group_length_reward` (Kimi k1.5) or
    :func:`token_cost`.
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


# ----------------------------------------------------------------------------- batch-level


def _lengths(completions: Sequence[str], fields_list: Sequence[Mapping[str, Any]], unit: str) -> list[int]:
    return [
        completion_length(c, f if f is not None else {}, unit)[0] for c, f in zip(completions, fields_list)
    ]


def _warmed_up(
    fields_list: Sequence[Mapping[str, Any]],
    correct: Sequence[Optional[bool]],
    warmup_steps: int,
    min_accuracy: float,
) -> bool:
    """Whether a length reward may fire on this batch.

    ``warmup_steps``: it stays off while ``fields["step"] <= warmup_steps`` (no step in the fields,
    as in an offline evaluation, counts as past the warm-up). ``min_accuracy``: it stays off while
    the batch's accuracy is below this, so length is not pushed down before correctness rises.
    Both are stateless, so a resumed run decides exactly as the uninterrupted one.
    """
    steps = [f.get("step") for f in fields_list if f is not None and f.get("step") is not None]
    if steps and int(steps[0]) <= int(warmup_steps):
        return False
    if min_accuracy > 0:
        acc = sum(bool(c) for c in correct) / len(correct) if correct else 0.0
        if acc < float(min_accuracy):
            return False
    return True


def kimi_length_lambdas(lengths: Sequence[int]) -> list[float]:
    """Kimi k1.5's lambda per response of one group: ``0.5 - (L - min L) / (max L - min L)``.

    The shortest response gets 0.5, the longest -0.5; when all lengths are equal every lambda is 0
    (nothing to rank)."""
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    return [0.5 - (L - lo) / (hi - lo) for L in lengths]


def group_length_reward(
    completions: Sequence[str],
    fields_list: Sequence[Mapping[str, Any]],
    correct: Sequence[Optional[bool]],
    groups: Sequence[Any],
    *,
    warmup_steps: int = 0,
    min_accuracy: float = 0.0,
    unit: str = "auto",
) -> list[RewardResult]:
    """Kimi k1.5's length reward, relative to each prompt's group (batch-level checker).

    With lambda from :func:`kimi_length_lambdas` over the group's lengths (right and wrong
    answers alike): a correct answer scores ``lambda`` (shorter than its siblings: up to +0.5,
    longer: down to -0.5), a wrong one ``min(0, lambda)`` (a long wrong answer loses, a short one
    is not paid). A group with no correct answer therefore only loses on its longer half. Equal
    lengths tie at 0. Before the warm-up ends (see ``warmup_steps`` / ``min_accuracy``) every
    score is 0, and ``info["active"]`` is False. Give it a weight below the correctness reward's
    (Kimi adds it with weight 1 to a 0/1 correctness reward; 0.1-0.5 is gentler).
    """
    n = len(completions)
    lengths = _lengths(completions, fields_list, unit)
    active = _warmed_up(fields_list, correct, warmup_steps, min_accuracy)
    lam = [0.0] * n
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for idx in by_group.values():
        for i, v in zip(idx, kimi_length_lambdas([lengths[i] for i in idx])):
            lam[i] = v
    out = []
    for i in range(n):
        score = (lam[i] if correct[i] else min(0.0, lam[i])) if active else 0.0
        out.append(RewardResult(score, None, {"length": lengths[i], "lambda": lam[i], "active": active}))
    return out


group_length_reward.batch_level = True


def token_cost(
    completions: Sequence[str],
    fields_list: Sequence[Mapping[str, Any]],
    correct: Sequence[Optional[bool]],
    groups: Sequence[Any],
    *,
    cost_per_token: float = 0.001,
    warmup_steps: int = 0,
    min_accuracy: float = 0.0,
    unit: str = "auto",
) -> list[RewardResult]:
    """A per-token cost on correct answers (batch-level checker)::

        correct -> -cost_per_token * L        wrong -> 0

    Only right answers pay for their length, so the policy is never pushed to answer wrong and
    short; among right answers, each token costs ``cost_per_token`` (next to a 0/1 correctness
    reward, 0.001 makes a 200-token right answer worth 0.8). Warm-up as in
    :func:`group_length_reward`.
    """
    if cost_per_token < 0:
        raise ValueError(f"token_cost needs cost_per_token >= 0, got {cost_per_token}")
    lengths = _lengths(completions, fields_list, unit)
    active = _warmed_up(fields_list, correct, warmup_steps, min_accuracy)
    return [
        RewardResult(
            -float(cost_per_token) * L if (active and ok) else 0.0, None, {"length": L, "active": active}
        )
        for L, ok in zip(lengths, correct)
    ]


token_cost.batch_level = True


def budget_reward(
    completions: Sequence[str],
    fields_list: Sequence[Mapping[str, Any]],
    correct: Sequence[Optional[bool]],
    groups: Sequence[Any],
    *,
    decay: float = 0.5,
    unit: str = "auto",
) -> list[Optional[RewardResult]]:
    """Being right within the prompt's token budget ``fields["budget"]`` (L1-style; batch-level).

    With ``B`` the budget and ``L`` the length::

        wrong                      -> 0
        correct, L <= B            -> 1
        correct, L > B             -> max(0, 1 - (L - B) / (decay * B))

    so a right answer loses its budget credit linearly and has none left at ``(1 + decay) * B``.
    Samples without a budget score None (does not apply). The budget is put into the prompt by
    ``data.budget`` (training) or ``rl-reason eval --budgets`` (evaluation).
    """
    if decay <= 0:
        raise ValueError(f"budget_reward needs decay > 0, got {decay}")
    lengths = _lengths(completions, fields_list, unit)
    out: list[Optional[RewardResult]] = []
    for L, ok, f in zip(lengths, correct, fields_list):
        budget = f.get("budget") if f is not None else None
        if budget is None:
            out.append(None)
            continue
        B = int(budget)
        if B <= 0:
            raise ValueError(f"budget_reward needs fields['budget'] > 0, got {budget!r}")
        within = L <= B
        if not ok:
            score = 0.0
        elif within:
            score = 1.0
        else:
            score = max(0.0, 1.0 - (L - B) / (float(decay) * B))
        out.append(RewardResult(score, None, {"length": L, "budget": B, "within": within}))
    return out


budget_reward.batch_level = True
