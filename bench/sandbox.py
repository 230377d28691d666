"""Sandbox benchmark on HumanEval: correctness of the verdicts and programs per second.

1. All 164 canonical solutions (prompt + canonical_solution) must pass ``code_tests``.
2. Broken variants must all fail: the body replaced by ``return None``, by a raise, by an
   off-by-one mutation of the canonical solution where one exists, and a ``sys.exit(0)``
   before anything runs.
3. Throughput with a pool of 2 threads (2 cores), the two sides alternating round by round:
   our sandbox vs plain unsandboxed ``subprocess`` runs of
   ``solution + test + check(entry_point)`` (pass = exit status 0), both as
   ``python -I -S file`` (fastest plain form, used for the last line) and as ``python file``
   (the usual harness form).

Usage: .venv/bin/python bench/sandbox.py [--data PATH] [--rounds N]
Last line: ``sandbox: passed=<n>/164 programs_per_s=<x> plain_per_s=<y>``.
"""

from __future__ import annotations

import os
import sys

# bench/ holds math.py, sandbox.py ...: keep it off sys.path so they do not shadow the stdlib
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards import sandbox  # noqa: E402
from rewards.code import code_tests  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "humaneval.jsonl"
WORKERS = 2


def load(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fields_of(row: dict) -> dict:
    return {"tests": row["test"], "entry_point": row["entry_point"], "prompt": row["prompt"]}


def score(code: str, row: dict) -> bool:
    res = code_tests(code, fields_of(row), prefix="never", timeout_s=10.0)
    return bool(res.correct)


def mutate(solution: str) -> str | None:
    """A plausible near-miss: flip one comparison or shift one small constant."""
    for old, new in (
        (" < ", " <= "),
        (" > ", " >= "),
        (" == ", " != "),
        ("+ 1", "+ 2"),
        ("- 1", "- 2"),
        (" <= ", " < "),
        (" >= ", " > "),
    ):
        if old in solution:
            return solution.replace(old, new, 1)
    return None


def plain_run(program: str, argv: list[str]) -> bool:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(program)
        path = fh.name
    try:
        proc = subprocess.run(argv + [path], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        return proc.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        os.unlink(path)


def timed_map(fn, items) -> tuple[list, float]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        out = list(pool.map(fn, items))
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds over the 164 tasks")
    args = ap.parse_args()
    rows = load(args.data)
    n = len(rows)
    t0 = time.perf_counter()
    caps = sandbox.capabilities()
    print(f"sandbox start-up {time.perf_counter() - t0:.3f}s; isolation: {caps}")

    solutions = [r["prompt"] + r["canonical_solution"] for r in rows]
    ok, _ = timed_map(lambda i: score(solutions[i], rows[i]), range(n))
    passed = sum(ok)
    for i, good in enumerate(ok):
        if not good:
            res = code_tests(solutions[i], fields_of(rows[i]), prefix="never", timeout_s=10.0)
            print(f"  canonical FAILED {rows[i]['task_id']}: {res.info}")

    variants = {
        "return_none": [r["prompt"] + "    return None\n" for r in rows],
        "raise": [r["prompt"] + "    raise ValueError('nope')\n" for r in rows],
        "exit_first": ["import sys\nsys.exit(0)\n" + s for s in solutions],
    }
    mutated = [(i, mutate(r["canonical_solution"])) for i, r in enumerate(rows)]
    broken_total = broken_failed = 0
    for name, codes in variants.items():
        res, _ = timed_map(lambda i: score(codes[i], rows[i]), range(n))
        bad = [rows[i]["task_id"] for i, r in enumerate(res) if r]
        broken_total += n
        broken_failed += n - len(bad)
        print(f"broken[{name}]: failed={n - len(bad)}/{n}" + (f" passed_wrongly={bad}" if bad else ""))
    mut = [(i, rows[i]["prompt"] + m) for i, m in mutated if m is not None]
    res, _ = timed_map(lambda im: score(im[1], rows[im[0]]), mut)
    survivors = [rows[mut[k][0]]["task_id"] for k, r in enumerate(res) if r]
    print(
        f"broken[mutant]: failed={len(mut) - len(survivors)}/{len(mut)} (mutants the tests "
        f"cannot tell apart: {survivors})"
    )

    # Throughput: canonical solutions, timed rounds, the two sides alternating round by round
    # (so a change in the machine's load falls on both).
    programs = [
        solutions[i] + "\n\n" + rows[i]["test"] + f"\n\ncheck({rows[i]['entry_point']})\n" for i in range(n)
    ]
    fast_argv = [sys.executable, "-I", "-S"]
    plain_ok, _ = timed_map(lambda i: plain_run(programs[i], fast_argv), range(n))
    dt = dt_plain = 0.0
    for _round in range(args.rounds):
        dt += timed_map(lambda i: score(solutions[i], rows[i]), range(n))[1]
        dt_plain += timed_map(lambda i: plain_run(programs[i], fast_argv), range(n))[1]
    ours = n * args.rounds / dt
    plain = n * args.rounds / dt_plain
    _, dt_site = timed_map(lambda i: plain_run(programs[i], [sys.executable]), range(n))
    print(
        f"plain subprocess: passed={sum(plain_ok)}/{n}; `python -I -S` {plain:.1f}/s, "
        f"`python` {n / dt_site:.1f}/s"
    )
    print(f"verdicts: canonical passed={passed}/{n}, broken failed={broken_failed}/{broken_total}")
    print(f"sandbox: passed={passed}/{n} programs_per_s={ours:.1f} plain_per_s={plain:.1f}")


if __name__ == "__main__":
    main()
