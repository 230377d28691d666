"""The Python tool: calls run in the sandbox; bad code ends with an error observation, in time."""

import time

import pytest

from rl_reason.envs.python_tool import PythonTool, call_code


def block(code: str) -> str:
    return f"Let me compute.\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def tool():
    return PythonTool(timeout_s=1.0, memory_mb=256, output_bytes=4096, processes=8, rollout_s=60)


def test_call_code_reads_only_a_closed_python_block_at_the_end():
    assert call_code(block("print(1)")) == "print(1)"
    assert call_code("```python\nprint(1)\n```\nand then ```python\nx = 2\n```") == "x = 2"
    assert call_code("```python\nprint(1)") is None  # still open
    assert call_code("I will use ```") is None  # an opening fence only
    assert call_code("```text\nhi\n```") is None  # not python
    assert call_code("```python\nprint(1)\n```\nthe answer is 1") is None  # not at the end


def test_prints_come_back(tool):
    step = tool.step(block("print(123 * 45)"))
    assert step.observation == "\n```output\n5535\n```\n"
    assert not step.error and not step.done and step.seconds > 0


def test_not_a_call_keeps_the_turn_going(tool):
    step = tool.step("I will use ```")
    assert step.observation is None and not step.done


@pytest.mark.parametrize(
    "code,status,text",
    [
        ("while True:\n    pass", "timeout", "timed out after 1s"),
        ("1/0", "error", "ZeroDivisionError"),
        ("print('x' * 10**6)", "output_limit", "output over 4096 bytes"),
        ("def f(:\n  pass", "error", "SyntaxError"),
        ("import os\nwhile True:\n    os.fork()", None, None),  # fork bomb: ends, whatever it says
        ("x = bytearray(10**9)", "error", "MemoryError"),
        (
            "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
            "error",
            None,
        ),
    ],
    ids=["hang", "crash", "flood", "malformed", "fork", "memory", "network"],
)
def test_bad_code_ends_with_an_error_observation_in_time(tool, code, status, text):
    t0 = time.monotonic()
    step = tool.step(block(code))
    assert time.monotonic() - t0 < 15  # never a hang
    assert step.observation is not None and step.observation.startswith("\n```output\n")
    if status is not None:
        assert step.info["status"] == status and step.error
        assert step.timed_out == (status == "timeout")
    if text is not None:
        assert text in step.observation
    # the tool still works after it
    assert tool.step(block("print(2 + 2)")).observation == "\n```output\n4\n```\n"


def test_per_rollout_time_budget():
    tool = PythonTool(timeout_s=1.0, rollout_s=0.5)
    tool.reset({})
    first = tool.step(block("import time\ntime.sleep(0.6)\nprint('done')"))
    assert "done" in first.observation and not first.error
    spent = tool.step(block("print(1)"))
    assert spent.error and "tool time" in spent.observation and spent.info["status"] == "budget"
    tool.reset({})  # a fresh rollout has the whole budget again
    assert not tool.step(block("print(1)")).error


def test_empty_block_is_an_error(tool):
    step = tool.step("```python\n\n```")
    assert step.error and "empty" in step.observation
