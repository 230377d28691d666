"""Verifiable reward checkers, usable by any trainer.

This package imports neither torch nor rl_reason. A checker is a plain function over text::

    def checker(completion: str, fields: Mapping[str, Any], **params) -> float | None | RewardResult

``None`` means "does not apply to this sample". Checkers are named by registry name
(``math_answer``), by ``package.module:function``, or registered by installed packages through
the ``rl_reason.rewards`` entry-point group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Mapping, Optional, Union

__all__ = [
    "RewardResult",
    "Checker",
    "UnknownCheckerError",
    "register",
    "resolve",
    "known_names",
    "as_result",
]


@dataclass(frozen=True)
class RewardResult:
    """A shaped score kept apart from the success flag, so accuracy is logged apart from shaping."""

    score: float
    correct: Optional[bool] = None
    info: dict = field(default_factory=dict)


Checker = Callable[..., Union[float, None, RewardResult]]

ENTRY_POINT_GROUP = "rl_reason.rewards"

# Built-in checkers are named lazily ("module:attr") so that importing the registry stays cheap
# and one checker's heavy imports (sympy) do not load for another's use.
_BUILTIN: dict[str, str] = {
    "math_answer": "rewards.math:math_answer",
    "math_judge": "rewards.math.judge:math_judge",
    "code_tests": "rewards.code:code_tests",
    "think_format": "rewards.format:think_format",
    "boxed_format": "rewards.format:boxed_format",
    "overlong_penalty": "rewards.shaping:overlong_penalty",
    "length_penalty": "rewards.shaping:length_penalty",
    "regex": "rewards.text:regex",
}
_REGISTERED: dict[str, Checker] = {}


class UnknownCheckerError(LookupError):
    """A checker name that is neither registered, built in, nor an importable module:attr."""


def register(name: str, fn: Optional[Checker] = None):
    """Register ``fn`` under ``name``; usable as ``@register("my_checker")``."""

    def deco(f: Checker) -> Checker:
        _REGISTERED[name] = f
        return f

    return deco(fn) if fn is not None else deco


def _entry_points() -> dict[str, Any]:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata should not break scoring
        return {}
    return {ep.name: ep for ep in eps}


def known_names() -> list[str]:
    """All names ``resolve`` accepts without a module path, sorted."""
    return sorted(set(_BUILTIN) | set(_REGISTERED) | set(_entry_points()))


def _import_path(path: str) -> Checker:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownCheckerError(
            f"checker path {path!r} must look like 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownCheckerError(
            f"cannot import module {module_name!r} for checker {path!r}: {exc}"
        ) from exc
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise UnknownCheckerError(
            f"module {module_name!r} has no attribute {attr!r} (checker {path!r})"
        ) from None
    if not callable(fn):
        raise UnknownCheckerError(f"checker {path!r} is not callable")
    return fn


def resolve(name_or_path: Union[str, Checker]) -> Checker:
    """Return the checker for a registry name, an entry-point name, or 'package.module:function'."""
    if callable(name_or_path):
        return name_or_path
    name = str(name_or_path)
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _import_path(_BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        fn = eps[name].load()
        if not callable(fn):
            raise UnknownCheckerError(f"entry point {name!r} does not load a callable")
        return fn
    if ":" in name:
        return _import_path(name)
    raise UnknownCheckerError(
        f"unknown reward checker {name!r}; known names: {', '.join(known_names())}; "
        "or give 'package.module:function'"
    )


def as_result(value: Union[float, int, bool, None, RewardResult]) -> Optional[RewardResult]:
    """Normalise a checker's return value: None stays None, numbers become RewardResult(score)."""
    if value is None or isinstance(value, RewardResult):
        return value
    if isinstance(value, bool):
        return RewardResult(float(value), correct=value)
    if isinstance(value, (int, float)):
        return RewardResult(float(value))
    raise TypeError(
        f"a checker must return float, None or RewardResult, not {type(value).__name__}"
    )
