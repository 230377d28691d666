"""The built-in environment: a Python tool the model calls with a fenced block.

When the model's turn ends with

    ```python
    print(123 * 45)
    ```

the code runs in ``rewards.sandbox`` with the same isolation as ``code_tests`` (no network,
rlimits, a throwaway directory, a scrubbed environment; a fresh process per call) and what it
printed comes back as the observation::

    ```output
    5535
    ```

A call that crashes, loops, allocates too much, floods its output or forks ends with an
error observation (the traceback, or what limit it hit); the run goes on. Limits are per
call (``timeout_s``, ``memory_mb``, ``output_bytes``, ``processes``) and per rollout
(``rollout_s``: the tool time one rollout may spend; later calls get an error).
"""

from __future__ import annotations

import re
import time
from typing import Any, Mapping, Optional

from rl_reason.envs import Step

_OPEN = re.compile(r"```[ \t]*(?:python|py|python3)[ \t]*\n")


def call_code(text: str) -> Optional[str]:
    """The code of the python-tagged fenced block that ends ``text``, or None."""
    opens = list(_OPEN.finditer(text))
    if not opens:
        return None
    rest = text[opens[-1].end() :].rstrip()
    if not rest.endswith("```"):
        return None
    body = rest[:-3].rstrip(" \t")
    body = body[:-1] if body.endswith("\n") else body
    return None if "```" in body else body


def strip_calls(text: str) -> str:
    """``text`` without its python-tagged fenced blocks (closed, or open to the end): code is
    a call, never an answer, so a box inside it (``print("\\boxed{42}")``) is not graded."""
    out, pos = [], 0
    while (m := _OPEN.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        close = text.find("```", m.end())
        if close < 0:
            return "".join(out)
        pos = close + 3
    return "".join(out) + text[pos:]


def format_output(text: str) -> str:
    return f"\n```output\n{text.rstrip()}\n```\n"


class PythonTool:
    """Runs the fenced Python block that ends a model turn; prints come back as the observation."""

    stop = ("```",)  # the opening fence pauses too: step() then says "keep going"

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        output_bytes: int = 65536,
        processes: int = 16,
        rollout_s: float = 30.0,
    ):
        from rewards import sandbox

        self.limits = sandbox.Limits(
            timeout_s=float(timeout_s),
            memory_mb=int(memory_mb),
            output_bytes=int(output_bytes),
            processes=int(processes),
        )
        self.rollout_s = float(rollout_s)
        self.spent_s = 0.0

    def reset(self, fields: Mapping[str, Any]) -> Optional[str]:
        self.spent_s = 0.0
        return None  # the dataset's prompt

    def answer(self, model_text: str) -> str:
        """What of the final model turn the checkers grade: its prose, without code blocks."""
        return strip_calls(model_text)

    def step(self, model_text: str) -> Step:
        code = call_code(model_text)
        if code is None:
            return Step()  # no complete python block at the end: not a call
        step = self.execute(code)
        step.observation = format_output(step.observation or "")
        return step

    def execute(self, code: str) -> Step:
        """Run ``code``; the observation is what it printed (or the error), unwrapped."""
        if self.spent_s >= self.rollout_s:
            return Step(
                f"error: this rollout's tool time ({self.rollout_s:g}s) is spent",
                error=True,
                info={"status": "budget"},
            )
        if not code.strip():
            return Step("error: the python block is empty", error=True, info={"status": "empty"})
        return self._run(code)

    def _run(self, code: str) -> Step:
        from rewards import sandbox

        t0 = time.monotonic()
        try:
            out = sandbox.run_program(code, "", self.limits)
        except sandbox.SandboxError as exc:  # the sandbox itself failed: an error, not a crash of the run
            seconds = time.monotonic() - t0
            self.spent_s += seconds
            return Step(f"error: sandbox failed: {exc}", error=True, seconds=seconds)
        seconds = time.monotonic() - t0
        self.spent_s += seconds
        text = out.stdout
        status = "ok"
        if out.timed_out:
            status = "timeout"
            text += ("\n" if text else "") + f"error: timed out after {self.limits.timeout_s:g}s"
        elif out.output_exceeded:
            status = "output_limit"
            text += ("\n" if text else "") + f"error: output over {self.limits.output_bytes} bytes; stopped"
        elif out.exit_code != 0:
            status = "error"
            err = out.stderr.strip()
            if out.signal:
                err = (err + "\n" if err else "") + f"killed by signal {out.signal}"
            elif not err:
                err = f"exit code {out.exit_code}"
            text += ("\n" if text else "") + err
        elif out.stderr.strip():
            text += ("\n" if text else "") + out.stderr.strip()
        return Step(
            text,
            error=status != "ok",
            timed_out=status == "timeout",
            seconds=seconds,
            info={"status": status},
        )
