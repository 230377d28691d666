"""The python tool in the chat template's own tool-call format (``rollout.tool_format:
chat_template``).

The tool's JSON schema goes into the prompt through the template's ``tools=`` (transformers'
``apply_chat_template``), the model calls it the Hermes / Qwen way::

    <tool_call>
    {"name": "python", "arguments": {"code": "print(347 * 58)"}}
    </tool_call>

and what the code printed comes back as the template's tool turn: the text the template puts
after an assistant message with a tool call (``<|im_end|>\\n`` in ChatML), the tool message
around the output, and the next generation prompt. That wrapper is read off the template once
(:func:`tool_turn`), by rendering a conversation with a placeholder call and output, so every
tool turn is spliced in as exact template text; only the output between is cut by
``rollout.tool_output_tokens``. A call whose JSON does not parse, names another tool, or has no
``code`` string comes back as an error in the same tool turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from rl_reason.envs import Environment, Step
from rl_reason.errors import ConfigError

OPEN, CLOSE = "<tool_call>", "</tool_call>"
NAME = "python"
SCHEMA = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": "Run a Python program in a sandbox; what it prints is returned.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The program; print the result."}},
            "required": ["code"],
        },
    },
}
_CALLS = re.compile(re.escape(OPEN) + r".*?(?:" + re.escape(CLOSE) + r"|\Z)", re.S)
_OUT = "\x00TOOL-OUTPUT\x00"


@dataclass(frozen=True)
class ToolTurn:
    """The template's text around a tool's output, read off the template once."""

    before: str  # after the model's </tool_call>: the end of its turn, the tool message's head
    after: str  # the tool message's tail and the next generation prompt


def tool_turn(tokenizer) -> ToolTurn:
    """The tool turn of ``tokenizer``'s chat template; a ConfigError when it renders no tools."""
    why = "rollout.tool_format=chat_template: the tokenizer's chat template"
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{why} is missing; use rollout.tool_format=fenced")
    user = [{"role": "user", "content": "Q"}]
    call = {"type": "function", "function": {"name": NAME, "arguments": {"code": "print(1)"}}}
    asked = user + [{"role": "assistant", "content": "", "tool_calls": [call]}]

    def render(messages, **kw) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kw)

    try:
        plain = render(user, add_generation_prompt=True)
        with_tools = render(user, add_generation_prompt=True, tools=[SCHEMA])
        called = render(asked, tools=[SCHEMA])
        answered = render(
            asked + [{"role": "tool", "name": NAME, "content": _OUT}],
            tools=[SCHEMA],
            add_generation_prompt=True,
        )
    except Exception as exc:  # a template that cannot render tool messages
        raise ConfigError(
            f"{why} cannot render a tool call ({type(exc).__name__}: {exc}); use fenced"
        ) from exc
    if plain == with_tools:
        raise ConfigError(f"{why} ignores tools=; use rollout.tool_format=fenced")
    if CLOSE not in called or not answered.startswith(called) or _OUT not in answered[len(called) :]:
        raise ConfigError(
            f"{why} does not write calls as {OPEN}...{CLOSE} followed by the tool turn; use fenced"
        )
    end = called[called.rindex(CLOSE) + len(CLOSE) :]
    head, tail = answered[len(called) :].split(_OUT, 1)
    return ToolTurn(before=end + head, after=tail)


def parse_call(text: str) -> tuple[Optional[str], Optional[str]]:
    """(code, None) for a well-formed python call ending ``text``; (None, why) for a malformed one."""
    body = text[text.rindex(OPEN) + len(OPEN) : text.rindex(CLOSE)] if OPEN in text else ""
    try:
        call = json.loads(body)
    except ValueError as exc:
        return None, f"error: the tool call is not valid JSON ({exc})"
    if not isinstance(call, dict) or call.get("name") != NAME:
        name = call.get("name") if isinstance(call, dict) else None
        return None, f"error: unknown tool {name!r}; the only tool is {NAME!r}"
    args = call.get("arguments", {})
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            args = None
    if not isinstance(args, dict) or not isinstance(args.get("code"), str):
        return None, 'error: the python tool takes {"code": "<program>"}'
    return args["code"], None


def strip_calls(text: str) -> str:
    """``text`` without its tool calls (closed, or open to the end): a call is never an answer."""
    return _CALLS.sub("", text)


class ChatTemplatePython:
    """The python tool (``inner``: a PythonTool) called in the chat template's format."""

    stop = (CLOSE,)
    chat_tools = [SCHEMA]

    def __init__(self, inner, turn: ToolTurn):
        self.inner, self.turn = inner, turn

    def reset(self, fields: Mapping[str, Any]) -> Optional[str]:
        return self.inner.reset(fields)

    def answer(self, model_text: str) -> str:
        return strip_calls(model_text)

    def step(self, model_text: str) -> Step:
        if not model_text.rstrip().endswith(CLOSE):
            return Step()  # not a call (the turn ended at EOS without one)
        code, why = parse_call(model_text)
        step = self.inner.execute(code) if why is None else Step(why, error=True, info={"status": "bad_call"})
        step.observation = (step.observation or "").rstrip()  # the template adds its own newlines
        step.before, step.after = self.turn.before, self.turn.after
        return step


def chat_template_factory(make_env: Callable[[], Environment], tokenizer) -> Callable[[], Environment]:
    """Wrap the python tool's maker so its calls use the chat template's format."""
    if tokenizer is None:
        raise ConfigError("rollout.tool_format=chat_template needs the model's tokenizer")
    turn = tool_turn(tokenizer)
    if not hasattr(make_env(), "execute"):
        raise ConfigError("rollout.tool_format=chat_template works with the python tool only; use fenced")
    return lambda: ChatTemplatePython(make_env(), turn)
