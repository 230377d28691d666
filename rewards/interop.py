"""Use our checkers from other trainers: TRL's GRPOTrainer and verl.

    from rewards.interop import for_trl, for_verl

    trainer = GRPOTrainer(..., reward_funcs=[for_trl("math_answer"), for_trl("boxed_format")])

    # verl: custom_reward_function.path=my_reward.py, custom_reward_function.name=compute_score
    compute_score = for_verl("math_answer")

Both adapters score in the calling process by default (no timeout, like any plain reward
function). Pass ``timeout_s=...`` to score through a :class:`rewards.runner.Scorer` instead: a
pool of worker processes, started on first use and kept, with a hard per-check timeout. In both
modes a checker that raises scores ``0.0`` (``on_error="zero"``) or ``None`` (``"none"``) and
is counted, never crashing the caller's training loop.

The keyword arguments ``timeout_s``, ``workers``, ``on_error``, ``name`` (and ``answer_key`` for
TRL) configure the adapter; every other keyword argument is a checker parameter.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from rewards import Checker, resolve
from rewards.runner import CheckerSpec, ScoreBatch, Scorer

__all__ = ["for_trl", "for_verl", "message_text"]

# TRL passes these to every reward function; they are not dataset columns.
_TRL_RESERVED = {"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"}


def _checker_name(checker: Union[str, Checker]) -> str:
    if isinstance(checker, str):
        return checker.rsplit(":", 1)[-1]
    return getattr(checker, "__name__", type(checker).__name__)


class _Adapter:
    """Shared machinery: one checker, in-process or through a lazily started Scorer."""

    def __init__(self, checker, params, *, timeout_s, workers, on_error, name):
        resolve(checker)  # unknown names fail now, listing the known ones
        self.checker = checker
        self.params = dict(params)
        self.timeout_s = timeout_s
        self.workers = workers
        self.on_error = on_error
        self.__name__ = name or _checker_name(checker)
        self._scorer: Optional[Scorer] = None
        if on_error not in ("zero", "none"):
            raise ValueError(f"on_error must be 'zero' or 'none', not {on_error!r}")

    def _get_scorer(self) -> Scorer:
        if self._scorer is None:
            spec = CheckerSpec(self.checker, 1.0, self.params, alias=self.__name__)
            if self.timeout_s is None:
                self._scorer = Scorer([spec], workers=0, on_error=self.on_error)
            else:
                self._scorer = Scorer(
                    [spec], timeout_s=self.timeout_s, workers=self.workers, on_error=self.on_error
                )
        return self._scorer

    def _score(self, completions: Sequence[str], fields_list: Sequence[Mapping[str, Any]]) -> ScoreBatch:
        return self._get_scorer().score(list(completions), list(fields_list))

    def close(self) -> None:
        """Stop the worker pool, if one was started (it is also stopped at interpreter exit)."""
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None

    # picklable: the pool stays behind and a copy starts its own on first use
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_scorer"] = None
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__}>"


def message_text(completion: Any) -> str:
    """The text of a completion: a string as is; a conversational completion (a list of message
    dicts, as TRL passes for chat datasets) as the assistant messages' contents joined by newlines.
    Content given as a list of parts keeps its ``{"type": "text"}`` parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    parts: list[str] = []
    msgs = list(completion or [])
    has_roles = any(isinstance(m, Mapping) and "role" in m for m in msgs)
    for m in msgs:
        if not isinstance(m, Mapping):
            parts.append(str(m))
            continue
        if has_roles and m.get("role") != "assistant":
            continue
        content = m.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            parts.append(content)
        else:
            for p in content:
                if isinstance(p, Mapping) and p.get("type", "text") == "text" and "text" in p:
                    parts.append(str(p["text"]))
                elif isinstance(p, str):
                    parts.append(p)
    return "\n".join(parts)


class TRLReward(_Adapter):
    """A TRL GRPOTrainer reward function: ``(prompts, completions, **kwargs) -> list[float | None]``.

    Dataset columns arrive as keyword lists (one value per completion) and become the checker's
    ``fields``; the column named ``answer_key`` is also given as ``fields["answer"]``. When TRL
    passes ``completion_ids``, their lengths become ``fields["completion_tokens"]``. ``None``
    (not applicable) is returned as None, which TRL treats as "no reward from this function".
    Error and timeout counts go to TRL's ``log_metric`` when it is passed.
    """

    def __init__(self, checker, params, *, answer_key, **kw):
        super().__init__(checker, params, **kw)
        self.answer_key = answer_key

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[Optional[float]]:
        if completions is None:
            raise TypeError("a TRL reward function needs completions=")
        texts = [message_text(c) for c in completions]
        n = len(texts)
        columns = {
            k: v
            for k, v in kwargs.items()
            if k not in _TRL_RESERVED and isinstance(v, (list, tuple)) and len(v) == n
        }
        ids = kwargs.get("completion_ids")
        fields_list = []
        for i in range(n):
            fields = {k: v[i] for k, v in columns.items()}
            if self.answer_key in fields and self.answer_key != "answer":
                fields.setdefault("answer", fields[self.answer_key])
            if ids is not None and len(ids) == n and ids[i] is not None:
                fields.setdefault("completion_tokens", len(ids[i]))
            fields_list.append(fields)
        batch = self._score(texts, fields_list)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            alias = self.__name__
            log_metric(f"rewards/{alias}/errors", float(batch.errors[alias]))
            log_metric(f"rewards/{alias}/timeouts", float(batch.timeouts[alias]))
        return list(batch.scores[self.__name__])


class VerlScore(_Adapter):
    """A verl ``compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float``.

    ``ground_truth`` becomes ``fields["answer"]``, ``extra_info`` (a dict) the other fields,
    ``data_source`` ``fields["data_source"]``. Extra keyword arguments that newer verl versions
    pass (``sandbox_fusion_url``, ...) are accepted and ignored. A not-applicable (None) score or a
    failed check returns 0.0: verl needs a number.
    """

    def __call__(
        self, data_source=None, solution_str="", ground_truth=None, extra_info=None, **_ignored
    ) -> float:
        fields: dict[str, Any] = {}
        if isinstance(extra_info, Mapping):
            fields.update(extra_info)
        fields["answer"] = ground_truth
        if data_source is not None:
            fields["data_source"] = data_source
        batch = self._score([message_text(solution_str)], [fields])
        value = batch.scores[self.__name__][0]
        return 0.0 if value is None else float(value)


def for_trl(
    checker: Union[str, Checker],
    *,
    timeout_s: Optional[float] = None,
    workers: Optional[int] = None,
    on_error: str = "zero",
    answer_key: str = "answer",
    name: Optional[str] = None,
    **params,
) -> TRLReward:
    """Wrap a checker (registry name, ``module:function`` or callable) as a TRL GRPOTrainer reward
    function. TRL logs it under ``name`` (default: the checker's name)."""
    return TRLReward(
        checker,
        params,
        answer_key=answer_key,
        timeout_s=timeout_s,
        workers=workers,
        on_error=on_error,
        name=name,
    )


def for_verl(
    checker: Union[str, Checker],
    *,
    timeout_s: Optional[float] = None,
    workers: Optional[int] = 1,
    on_error: str = "zero",
    name: Optional[str] = None,
    **params,
) -> VerlScore:
    """Wrap a checker as verl's ``compute_score``; verl scores one sample per call, so a pool (with
    ``timeout_s``) defaults to one worker."""
    return VerlScore(checker, params, timeout_s=timeout_s, workers=workers, on_error=on_error, name=name)
