"""The ``math_answer`` checker: extract, then compare with the gold."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from rewards import RewardResult
from rewards.math.compare import equivalent
from rewards.math.extract import _from_boxed, extract_answer


def gold_answer(value: Any) -> Optional[str]:
    """The gold answer from a dataset field: ``... #### n``, a solution with ``\\boxed{}``, or as is."""
    if value is None:
        return None
    text = str(value)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip() or None
    if "\\boxed" in text or "\\fbox" in text:
        return _from_boxed(text)
    return text.strip() or None


def math_answer(completion: str, fields: Mapping[str, Any], **params) -> Optional[RewardResult]:
    """1.0 and correct when the completion's final answer equals ``fields["answer"]``.

    params: ``order`` (extraction strategies, see :func:`extract_answer`); ``numeric_only``
    (default False): the extracted answer must itself be a number, so an unevaluated
    expression such as ``\\boxed{9 + 5}`` for gold 14 is not correct. Arithmetic tasks need
    it: a policy trained on them learned to box the question (measured in the CPU demo).
    Not applicable (None) when the sample has no answer.
    """
    if "answer" not in fields or fields["answer"] is None:
        return None
    gold = gold_answer(fields["answer"])
    if gold is None:
        return None
    pred = extract_answer(completion or "", params.get("order"))
    info = {"gold": gold[:200], "extracted": None if pred is None else pred[:200]}
    if pred is None:
        return RewardResult(0.0, False, info)
    if params.get("numeric_only"):
        from rewards.format import is_number_answer

        if not is_number_answer(pred):
            return RewardResult(0.0, False, dict(info, reason="not a number"))
    ok = equivalent(gold, pred)
    return RewardResult(1.0 if ok else 0.0, ok, info)
