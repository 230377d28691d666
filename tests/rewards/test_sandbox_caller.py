"""rewards.sandbox.caller: the caller's API: limits, io runs, outcomes (the attacks are in
test_sandbox.py)."""

from __future__ import annotations

from rewards import sandbox
from rewards.sandbox.caller import Limits, _limits_dict, _text


def test_cpu_limit_defaults_past_the_wall_clock():
    assert Limits(timeout_s=3).cpu_seconds() == 5 and Limits(cpu_s=9).cpu_seconds() == 9
    d = _limits_dict(Limits(timeout_s=2.5))
    assert d["cpu_s"] == 4 and d["timeout_s"] == 2.5 and d["tmp_inodes"] == 4096


def test_text_is_capped_and_says_how_much_was_cut():
    assert _text(b"ab\xff") == "ab\ufffd" and _text(None) == ""
    assert _text("x" * 10, limit=4) == "xxxx... [6 more chars]"


def test_run_io_runs_each_case_in_a_fresh_process_and_stops_on_error():
    code = (
        "import sys, os\nn = int(sys.stdin.read())\nprint(n * 2, os.getpid())\nsys.exit(1 if n < 0 else 0)\n"
    )
    fast = Limits(timeout_s=5)
    outs = sandbox.run_io(code, ["1", "2", "-1", "4"], fast)
    assert [o.stdout.split()[0] for o in outs] == ["2", "4", "-2"]  # stopped after the crash
    assert [o.exit_code for o in outs] == [0, 0, 1]
    assert len({o.stdout.split()[1] for o in outs}) == 3 or sandbox.capabilities()["pid_ns"]
    assert len(sandbox.run_io(code, ["-1", "3"], fast, stop_on_error=False)) == 2


def test_run_program_reports_timeouts_and_output_limits():
    out = sandbox.run_program("while True:\n    pass\n", limits=Limits(timeout_s=1))
    assert out.timed_out is True and out.ok is False
    out = sandbox.run_program("print('x' * 100000)\n", limits=Limits(timeout_s=5, output_bytes=1000))
    assert out.output_exceeded is True and out.ok is False
    assert sandbox.run_program("print(input()[::-1])\n", stdin="abc\n").stdout == "cba\n"
