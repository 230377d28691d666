"""Code rewards: pull the program out of a completion and run tests against it in the sandbox.

``code_tests`` reads one of

- ``fields["tests"]``: Python test code (a string, or a list of assert lines). With
  ``fields["entry_point"]`` and a ``check`` function in the tests, the harness calls
  ``check(<solution's entry_point>)`` (HumanEval; the tests also see what ``fields["prompt"]``
  declares when it is Python, taken from the task, never the solution's other names);
  otherwise the tests' own top-level code is the test (MBPP-style asserts that call the
  solution's functions by name);
- ``fields["io_cases"]``: stdin/stdout cases, ``[{"input": str, "output": str}, ...]`` or
  ``{"inputs": [...], "outputs": [...]}``.

Pass/fail comes from the harness in ``rewards.sandbox`` (see there), never from the exit status
or output of the model's code, except that in io mode the program's stdout *is* the answer and
is compared here, outside the sandbox.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from rewards import RewardResult
from rewards import sandbox as _sandbox

__all__ = ["extract_code", "code_tests", "outputs_match"]

_FENCE = re.compile(r"(?m)^[ \t]*```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.S)
_PY_TAGS = {"python", "py", "python3", "py3", "pycon"}
_THINK_END = "</think>"


def extract_code(text: str, block: str = "last") -> str:
    """The program in a completion.

    ``block``: ``"last"`` (default) or ``"first"`` fenced Python block, ``"all"`` (all Python
    blocks joined), or ``"none"`` (the whole completion, fences ignored). Blocks tagged
    python/py win over untagged ones; other languages are skipped. Without any fence the
    whole completion is the program. Only text after ``</think>`` counts when present.
    An unterminated last fence (a truncated completion) runs to the end of the text.
    """
    if block not in ("last", "first", "all", "none"):
        raise ValueError(f"block must be 'last', 'first', 'all' or 'none', not {block!r}")
    text = text or ""
    if _THINK_END in text:
        text = text.rsplit(_THINK_END, 1)[1]
    if block == "none":
        return text
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    if not blocks:
        return text
    chosen = [b for t, b in blocks if t in _PY_TAGS] or [b for t, b in blocks if not t]
    if not chosen:
        return ""
    if block == "first":
        return chosen[0]
    if block == "last":
        return chosen[-1]
    return "\n\n".join(chosen)


def _normalise(text: str, compare: str):
    if compare == "exact":
        return text
    if compare == "tokens":
        return text.split()
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(got: str, expected: str, compare: str = "lines") -> bool:
    """``lines``: trailing spaces and trailing blank lines ignored; ``tokens``: whitespace-split
    tokens equal; ``exact``: byte-for-byte."""
    if compare not in ("lines", "tokens", "exact"):
        raise ValueError(f"compare must be 'lines', 'tokens' or 'exact', not {compare!r}")
    return _normalise(got, compare) == _normalise(expected, compare)


def _io_cases(raw) -> list:
    if isinstance(raw, Mapping):
        ins, outs = raw.get("inputs") or [], raw.get("outputs") or []
        return [(str(i), str(o)) for i, o in zip(ins, outs)]
    cases = []
    for case in raw or []:
        if isinstance(case, Mapping):
            cases.append((str(case.get("input", "")), str(case.get("output", ""))))
        else:
            cases.append((str(case[0]), str(case[1])))
    return cases


# the sandbox limits a recipe may set as code_tests params (besides timeout_s, which is named)
LIMIT_PARAMS = (
    "cpu_s",
    "memory_mb",
    "file_size_mb",
    "open_files",
    "processes",
    "output_bytes",
    "tmp_mb",
    "shm_mb",
    "tmp_inodes",
)


def _limits(params: Mapping[str, Any]) -> _sandbox.Limits:
    keys = ("timeout_s", *LIMIT_PARAMS)
    return _sandbox.Limits(**{k: params[k] for k in keys if params.get(k) is not None})


def _with_prompt(code: str, fields: Mapping[str, Any], prefix: str) -> str:
    prompt = fields.get("prompt")
    if prefix == "never" or not isinstance(prompt, str) or not prompt:
        return code
    if prefix == "always":
        return prompt + code
    entry = fields.get("entry_point")
    if entry and not re.search(rf"(?m)^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code):
        return prompt + code  # a continuation of the prompt's signature (base-model style)
    return code


def _declared(fields: Mapping[str, Any]) -> Optional[str]:
    """The task's prompt when it is Python source (a HumanEval prompt: imports, helpers, the
    entry point's signature): the tests see what it declares, from the task, not from the
    solution. A natural-language prompt declares nothing."""
    prompt = fields.get("prompt")
    if not fields.get("entry_point") or not isinstance(prompt, str) or not prompt.strip():
        return None
    try:
        compile(prompt, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return None
    return prompt


def code_tests(
    completion: str,
    fields: Mapping[str, Any],
    *,
    block: str = "last",
    prefix: str = "auto",
    partial: bool = False,
    compare: str = "lines",
    timeout_s: float = 5.0,
    **params,
) -> Optional[RewardResult]:
    """1.0 if the completion's program passes the sample's tests, else 0.0 (``partial=True``:
    the fraction of io cases passed). None when the sample has no tests.

    Params: ``block`` (see ``extract_code``), ``prefix`` ("auto": prepend ``fields["prompt"]``
    when the code does not define ``entry_point`` itself; "always"; "never"), ``compare``
    (io output comparison), ``timeout_s`` (sandbox wall clock, per io case), and the other
    ``rewards.sandbox.Limits`` fields (``memory_mb``, ``cpu_s``, ``processes``, ...).
    """
    tests = fields.get("tests")
    if isinstance(tests, (list, tuple)):
        tests = "\n".join(str(t) for t in tests)
    io_raw = fields.get("io_cases")
    has_tests = isinstance(tests, str) and tests.strip()
    if not has_tests and not io_raw:
        return None
    limits = _limits(dict(params, timeout_s=timeout_s))
    code = extract_code(completion, block)
    if has_tests:
        code = _with_prompt(code, fields, prefix)
    if not code.strip():
        return RewardResult(0.0, False, {"status": "no_code"})
    if has_tests:
        imports = fields.get("test_imports")
        if isinstance(imports, (list, tuple)) and imports:
            tests = "\n".join(str(i) for i in imports) + "\n" + tests
        setup = fields.get("test_setup_code")
        if isinstance(setup, str) and setup.strip():
            tests = setup + "\n" + tests
        out = _sandbox.run_tests(
            code, tests, fields.get("entry_point") or None, limits, prompt=_declared(fields)
        )
        info = {"status": out.status, "calls": out.calls, "duration_s": round(out.duration_s, 4)}
        if out.detail:
            info["detail"] = out.detail
        if out.stderr and not out.passed:
            info["stderr"] = out.stderr[-1000:]
        return RewardResult(1.0 if out.passed else 0.0, out.passed, info)

    cases = _io_cases(io_raw)
    if not cases:
        return None
    results = _sandbox.run_io(code, [c[0] for c in cases], limits, stop_on_error=not partial)
    passed = 0
    first_fail = None
    for i, (case, res) in enumerate(zip(cases, results)):
        ok = res.ok and outputs_match(res.stdout, case[1], compare)
        passed += ok
        if not ok and first_fail is None:
            why = (
                "timeout"
                if res.timed_out
                else "output_limit"
                if res.output_exceeded
                else f"exit {res.exit_code}"
                if res.exit_code not in (0, None)
                else f"signal {res.signal}"
                if res.signal
                else "wrong output"
            )
            first_fail = {"case": i, "why": why}
            if res.stderr:
                first_fail["stderr"] = res.stderr[-1000:]
        if not ok and not partial:
            break
    all_ok = passed == len(cases)
    info = {"status": "passed" if all_ok else "failed", "cases_passed": passed, "cases": len(cases)}
    if first_fail:
        info["first_failure"] = first_fail
    score = 1.0 if all_ok else (passed / len(cases) if partial else 0.0)
    return RewardResult(score, all_ok, info)


code_tests.accepted_params = LIMIT_PARAMS  # what its **params may hold (rewards.check_params)
