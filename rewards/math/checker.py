"""The ``math_answer`` checker: extract, then compare with the gold."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence

from rewards import RewardResult
from rewards.boxes import last_box as _from_boxed
from rewards.math.compare import equivalent, gold_number, is_number_answer
from rewards.math.extract import read_final


def gold_answer(value: Any) -> Optional[str]:
    """The gold answer from a dataset field: ``... #### n``, a solution with ``\\boxed{}``, or as is.

    Parsed once per distinct gold (cached): a group of samples shares one gold.
    """
    if value is None:
        return None
    return _gold_text(str(value))


@functools.lru_cache(maxsize=4096)
def _gold_text(text: str) -> Optional[str]:
    if "####" in text:
        return text.rsplit("####", 1)[1].strip() or None
    if "\\boxed" in text or "\\fbox" in text:
        return _from_boxed(text)
    return text.strip() or None


def math_answer(
    completion: str,
    fields: Mapping[str, Any],
    *,
    order: Optional[Sequence[str]] = None,
    numeric_only: Optional[bool] = None,
) -> Optional[RewardResult]:
    """1.0 and correct when the completion's final answer equals ``fields["answer"]``.

    params: ``order`` (extraction strategies, see :func:`rewards.math.extract_answer`);
    ``numeric_only`` (default: on for a numeric gold, off otherwise): the extracted answer must
    itself be a number, so ``\\boxed{9 + 5}`` for gold 14 is not correct (a policy trained on sums
    learned to box the question); ``false`` accepts any equal expression. Not applicable (None)
    when the sample has no answer. ``info``: ``gold``, ``extracted`` and, when no answer was
    read or it was refused, ``reason``.
    """
    if "answer" not in fields or fields["answer"] is None:
        return None
    gold = gold_answer(fields["answer"])
    if gold is None:
        return None
    final = read_final(completion or "", order)
    pred = final.answer
    info = {"gold": gold[:200], "extracted": None if pred is None else pred[:200]}
    if pred is None:
        return RewardResult(0.0, False, dict(info, reason=final.reason))
    numeric = _numeric_gold(gold) if numeric_only is None else bool(numeric_only)
    if numeric and not is_number_answer(pred, gold):
        return RewardResult(0.0, False, dict(info, reason="not a number"))
    ok = equivalent(gold, pred)
    return RewardResult(1.0 if ok else 0.0, ok, info)


@functools.lru_cache(maxsize=4096)
def _numeric_gold(gold: str) -> bool:
    try:
        return gold_number(gold) is not None
    except Exception:
        return False
