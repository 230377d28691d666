"""Verifiable reward checkers, usable by any trainer.

This package imports neither torch nor rl_reason. A checker is a plain function over text::

    def checker(completion: str, fields: Mapping[str, Any], **params) -> float | None | RewardResult

``None`` means "does not apply to this sample". Checkers are named by registry name
(``math_answer``), by ``package.module:function``, or registered by installed packages through
the ``rl_reason.rewards`` entry-point group.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import traceback
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
    "check_params",
    "module_search_path",
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
    "group_length_reward": "rewards.shaping:group_length_reward",
    "token_cost": "rewards.shaping:token_cost",
    "budget_reward": "rewards.shaping:budget_reward",
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


def _import_error(module_name: str, path: str, exc: BaseException) -> UnknownCheckerError:
    """One line for any exception raised while importing a checker module."""
    if (
        isinstance(exc, ModuleNotFoundError)
        and exc.name
        and module_name.split(".")[0] == exc.name.split(".")[0]
    ):
        return UnknownCheckerError(
            f"cannot import module {module_name!r} for checker {path!r}: no module named "
            f"{exc.name!r} on the module search path; set PYTHONPATH to the directory that holds "
            f"it (e.g. PYTHONPATH=/path/to/dir rl-reason ...) or pip install the package that provides it"
        )
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}, line {exc.lineno})"
        text = exc.msg
    else:
        text = str(exc)
        frames = traceback.extract_tb(exc.__traceback__)
        # the innermost frame outside the import machinery is the offending line
        own = [f for f in frames if "importlib" not in f.filename]
        if own:
            where = f" ({own[-1].filename}, line {own[-1].lineno})"
    text = " ".join(text.split()) or "(no message)"
    return UnknownCheckerError(
        f"cannot import module {module_name!r} for checker {path!r}: {type(exc).__name__}: {text}{where}"
    )


def _import_path(path: str) -> Checker:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownCheckerError(f"checker path {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # SyntaxError, NameError, ... in the user's module: one line
        raise _import_error(module_name, path, exc) from exc
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise UnknownCheckerError(
            f"module {module_name!r} has no attribute {attr!r} (checker {path!r})"
        ) from None
    if not callable(fn):
        raise UnknownCheckerError(f"checker {path!r} is not callable")
    return fn


def module_search_path(name: str, fn: Checker) -> Optional[str]:
    """The directory a ``module:function`` checker was imported from when it is on the search
    path only through ``PYTHONPATH`` or the current directory (so a later process started
    elsewhere, e.g. ``rl-reason resume``, needs it recorded); None for built-ins, entry points
    and installed packages."""
    if not isinstance(name, str) or ":" not in name or name in _BUILTIN or name in _REGISTERED:
        return None
    top = sys.modules.get(name.partition(":")[0].split(".")[0])
    file = getattr(top, "__file__", None)
    if not file:
        return None
    file = os.path.abspath(file)
    base = os.path.dirname(file)
    if os.path.basename(file) == "__init__.py":
        base = os.path.dirname(base)
    env = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    cwd = os.getcwd()
    if base in env or (base == cwd and ("" in sys.path or cwd in sys.path)):
        return base
    return None


def check_params(fn: Checker, params: Mapping[str, Any], name: Any = None) -> None:
    """Raise ValueError naming an unknown param (with the accepted ones) or a missing required
    one, checked against the checker's signature. The first two arguments (completion, fields)
    are the runner's, not params; a batch-level checker (``fn.batch_level``) takes four
    (completions, fields_list, correct, groups)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: trust it
        return
    label = name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))
    ps = list(sig.parameters.values())
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    batch = bool(getattr(fn, "batch_level", False))
    runner_args = 4 if batch else 2
    if len(positional) < runner_args and not any(p.kind == p.VAR_POSITIONAL for p in ps):
        takes = (
            "(completions, fields_list, correct, groups, **params)"
            if batch
            else "(completion, fields, **params)"
        )
        raise ValueError(f"checker {label!r} must take {takes}; its signature is {sig}")
    own = [p for p in ps[runner_args:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    allowed = {p.name for p in own}
    # a checker taking **params may declare what they hold: fn.accepted_params = (...)
    declared = getattr(fn, "accepted_params", None)
    open_ended = any(p.kind == p.VAR_KEYWORD for p in ps) and declared is None
    allowed |= set(declared or ())
    if not open_ended:
        for given in params:
            if given not in allowed:
                close = difflib.get_close_matches(given, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                takes = ", ".join(sorted(allowed)) or "no params"
                raise ValueError(f"unknown param {given!r} for checker {label!r}{hint}; it takes: {takes}")
    for p in own:
        if p.default is p.empty and p.name not in params:
            raise ValueError(f"checker {label!r} needs param {p.name!r} (no default); add it to params")


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
    raise TypeError(f"a checker must return float, None or RewardResult, not {type(value).__name__}")
