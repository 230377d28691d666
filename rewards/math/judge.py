"""``math_judge``: the rule-based check first; only when it says no, ask a chat model.

The model is not loaded here: ``rewards`` imports neither torch nor ``rl_reason``. A backend is
injected with :func:`set_judge` (any callable ``list[str] -> list[str]`` that answers chat
prompts will do). A recipe's ``rewards.judge`` section makes the trainer load the model once
and serve it (``rl_reason.judging``); the scoring workers reach it through a
:class:`RemoteJudge`, a local socket client set before they fork, or found through
``REWARDS_JUDGE_ADDRESS`` / ``REWARDS_JUDGE_AUTHKEY`` by a worker that was spawned. Model text is only ever *read*
as a verdict: the first word of the reply must be ``yes`` or ``no``; anything else is "undecided",
which does not pay. Verdicts are cached by (gold, answer), so a group of rollouts that repeat a
rejected answer asks once.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional, Sequence

from rewards import RewardResult
from rewards.math.checker import gold_answer, math_answer

__all__ = [
    "JudgeBackend",
    "RemoteJudge",
    "set_judge",
    "clear_cache",
    "parse_verdict",
    "judge_prompt",
    "math_judge",
]

JudgeBackend = Callable[[list], list]  # prompts -> replies, one each

_BACKEND: Optional[JudgeBackend] = None
_CACHE: "OrderedDict[tuple[str, str], Optional[bool]]" = OrderedDict()
_CACHE_MAX = 20_000
_LOCK = threading.Lock()


class NoJudgeError(RuntimeError):
    """math_judge ran without a backend."""


ADDRESS_ENV, AUTHKEY_ENV = "REWARDS_JUDGE_ADDRESS", "REWARDS_JUDGE_AUTHKEY"


class RemoteJudge:
    """A backend that asks a judge served by another process (``rl_reason.judging.JudgeService``)
    over a local socket. Each process opens its own connection on first use, so one instance
    set before a fork serves every forked worker. Replies are read as text, never run."""

    def __init__(self, address: str, authkey: bytes, timeout_s: float = 300.0):
        self.address, self.authkey, self.timeout_s = address, bytes(authkey), float(timeout_s)
        self._conn = None
        self._pid = -1

    @classmethod
    def from_env(cls) -> Optional["RemoteJudge"]:
        address, key = os.environ.get(ADDRESS_ENV), os.environ.get(AUTHKEY_ENV)
        if not address or not key:
            return None
        return cls(address, bytes.fromhex(key))

    def __getstate__(self) -> dict:  # a connection does not travel
        return {"address": self.address, "authkey": self.authkey, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["address"], state["authkey"], state["timeout_s"])

    def __call__(self, prompts: list) -> list:
        from multiprocessing.connection import Client

        if self._conn is None or self._pid != os.getpid():  # a fork's inherited one is not ours
            self._conn, self._pid = Client(self.address, family="AF_UNIX", authkey=self.authkey), os.getpid()
        try:
            self._conn.send([str(p) for p in prompts])
            if not self._conn.poll(self.timeout_s):
                raise TimeoutError(f"the judge did not answer within {self.timeout_s:g} s")
            replies = self._conn.recv()
        except BaseException:
            self._conn = None  # a half-read reply must not be taken for the next question's
            raise
        if not isinstance(replies, list) or len(replies) != len(prompts):
            raise RuntimeError("the judge service answered out of step")
        return replies


def set_judge(backend: Optional[JudgeBackend]) -> None:
    """Install the backend ``math_judge`` asks (None removes it); clears the verdict cache."""
    global _BACKEND
    _BACKEND = backend
    clear_cache()


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def judge_prompt(gold: str, answer: str) -> str:
    return (
        "You check answers to math problems. Reply with one word: yes or no.\n"
        f"Reference answer: {gold}\n"
        f"Student answer: {answer}\n"
        "Is the student answer mathematically equivalent to the reference answer?"
    )


def parse_verdict(reply: Any) -> Optional[bool]:
    """True for a reply whose first word is "yes", False for "no", None otherwise."""
    if not isinstance(reply, str):
        return None
    text = reply.rsplit("</think>", 1)[-1]
    m = re.match(r"\W*(yes|no)\b", text.strip(), re.I)
    return None if m is None else m.group(1).lower() == "yes"


def _verdict(gold: str, answer: str) -> tuple[Optional[bool], bool]:
    """(verdict, from_cache)."""
    key = (gold, answer)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], True
    global _BACKEND
    if _BACKEND is None:  # a spawned worker: the service's address is in the environment
        _BACKEND = RemoteJudge.from_env()
    backend = _BACKEND
    if backend is None:
        raise NoJudgeError(
            "math_judge has no model: name one in the recipe's rewards.judge.model, or call "
            "rewards.math.judge.set_judge(backend) at set-up"
        )
    replies = backend([judge_prompt(gold, answer)])
    verdict = parse_verdict(replies[0] if replies else None)
    with _LOCK:
        _CACHE[key] = verdict
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return verdict, False


def math_judge(
    completion: str,
    fields: Mapping[str, Any],
    *,
    order: Optional[Sequence[str]] = None,
    numeric_only: Optional[bool] = None,
) -> Optional[RewardResult]:
    """``math_answer``, then, for an answer it rejected as not equal, the judge's verdict.

    A completion with no readable answer (none, hedged, hidden, contradicted) or one that
    ``numeric_only`` refuses is never sent to the judge: those are rule decisions, not doubts.
    ``info["judge"]``: ``"yes"``, ``"no"`` or ``"undecided"``, and ``judge_cached``.
    """
    ruled = math_answer(completion, fields, order=order, numeric_only=numeric_only)
    if ruled is None or ruled.correct or ruled.info.get("extracted") is None or "reason" in ruled.info:
        return ruled
    gold = gold_answer(fields["answer"])
    verdict, cached = _verdict(gold, ruled.info["extracted"])
    info = dict(ruled.info, judge={True: "yes", False: "no", None: "undecided"}[verdict], judge_cached=cached)
    ok = verdict is True
    return RewardResult(1.0 if ok else 0.0, ok, info)
