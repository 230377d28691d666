"""Multi-turn environments: the protocol, the step record and the registry.

An environment is a small object made fresh for every rollout::

    class MyEnv:
        stop = ("</call>",)          # strings after which sampling pauses and step() is asked
        def reset(self, fields) -> str | None: ...   # the prompt (None: the dataset's prompt)
        def step(self, model_text: str) -> Step: ... # what the model wrote in this turn
        def answer(self, model_text: str) -> str: ...  # optional: what of the final model
                                                      # turn the checkers grade (default: all)

``step`` is called when a turn ends: the sampler produced one of ``stop`` (or the model
ended its text with EOS). It returns a ``Step``: an ``observation`` (text spliced into the
sequence as a tool turn, after which the model continues), ``done=True`` (the rollout ends
here), or neither (the stop string was not a call: keep sampling the same turn). Tool text is
tokenized once by the driver (rl_reason.rollout.multiturn) and never gets gradient.
Checkers grade the final model turn only (tool output never), as ``answer`` reads it.

Environments are named like checkers: a registry name (``python``), ``package.module:function``
(a factory called with the recipe's ``rollout.tool_params``), or the ``rl_reason.envs``
entry-point group of an installed package.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Mapping, Optional, Protocol, Union, runtime_checkable

from rl_reason.errors import ConfigError

ENTRY_POINT_GROUP = "rl_reason.envs"


@dataclass
class Step:
    """What an environment answers to one model turn."""

    observation: Optional[str] = None  # spliced in as a tool turn; None: no tool output
    done: bool = False  # the rollout ends after this turn
    error: bool = False  # the call failed (crash, bad call, limit hit); the error is the observation
    timed_out: bool = False
    seconds: float = 0.0  # time the tool took
    info: dict = field(default_factory=dict)
    # template text spliced around the observation (a chat template's tool turn); never cut by
    # rollout.tool_output_tokens, which cuts the observation only
    before: str = ""
    after: str = ""

    @property
    def is_call(self) -> bool:
        return self.observation is not None


@runtime_checkable
class Environment(Protocol):
    stop: tuple[str, ...]

    def reset(self, fields: Mapping[str, Any]) -> Optional[str]:
        """The prompt for this sample (None keeps the dataset's). Must depend on ``fields``
        only: the n rollouts of a prompt share the first one's prompt."""

    def step(self, model_text: str) -> Step:
        """React to the model's text of the turn that just ended."""


EnvFactory = Callable[..., Environment]

_BUILTIN: dict[str, str] = {"python": "rl_reason.envs.python_tool:PythonTool"}
_REGISTERED: dict[str, EnvFactory] = {}


def register(name: str, factory: Optional[EnvFactory] = None):
    """Register ``factory`` under ``name``; usable as ``@register("my_env")``."""

    def deco(f: EnvFactory) -> EnvFactory:
        _REGISTERED[name] = f
        return f

    return deco(factory) if factory is not None else deco


def _entry_points() -> dict[str, Any]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # pragma: no cover - broken metadata must not break a run
        return {}


def known_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED) | set(_entry_points()))


def _import(path: str, name: str) -> EnvFactory:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the recipe's to fix
        raise ConfigError(
            f"rollout.tools: cannot import {module_name!r} for environment {name!r} "
            f"({type(exc).__name__}: {exc}); set PYTHONPATH to the directory that holds it"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"rollout.tools: module {module_name!r} has no attribute {attr!r}") from None


def resolve(name: Union[str, EnvFactory]) -> EnvFactory:
    """The environment factory for a registry name, an entry-point name, or 'module:function'."""
    if callable(name):
        return name
    name = str(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _import(_BUILTIN[name], name)
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    if ":" in name:
        return _import(name, name)
    raise ConfigError(
        f"rollout.tools: unknown environment {name!r}; known names: {', '.join(known_names())}; "
        "or give 'package.module:function'"
    )


def make_factory(tools: list[str], params: Mapping[str, Any]) -> Callable[[], Environment]:
    """A no-argument maker of fresh environments for a recipe's ``rollout.tools`` (one entry)."""
    if len(tools) != 1:
        raise ConfigError(
            f"rollout.tools: one environment per run for now, got {list(tools)}; "
            "write one environment that offers several tools"
        )
    factory = resolve(tools[0])
    kwargs = dict(params)

    def make() -> Environment:
        try:
            env = factory(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"rollout.tool_params for {tools[0]!r}: {exc}") from exc
        if not hasattr(env, "step") or not hasattr(env, "reset"):
            raise ConfigError(
                f"rollout.tools: {tools[0]!r} made {type(env).__name__}, which has no reset/step"
            )
        return env

    make()  # fail at start-up, not in the middle of a step
    return make
