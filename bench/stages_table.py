"""Held-out accuracy per step of several runs, side by side (README / docs/STAGES.md tables).

    python bench/stages_table.py "GRPO from scratch=runs/ref" "SFT -> GRPO=runs/r1/stages/rl"

Reads each run's ``metrics.jsonl`` (the ``eval/accuracy`` lines, logged every ``eval.every``
steps and at the start and end) and prints a markdown table of accuracy per step, then each
run's first step at or above ``--target`` (default 0.8) and its best accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def eval_curve(run_dir: Path) -> dict[int, float]:
    """{step: eval/accuracy} of one run (the last line wins for a step logged twice)."""
    curve: dict[int, float] = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        acc = row.get("eval/accuracy")
        if acc is not None and "step" in row:
            curve[int(row["step"])] = float(acc)
    return curve


def first_at(curve: dict[int, float], target: float):
    """The first step whose accuracy is >= target, or None."""
    return next((s for s in sorted(curve) if curve[s] >= target), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    p.add_argument("--target", type=float, default=0.8)
    args = p.parse_args(argv)
    curves = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        curves[label or path] = eval_curve(Path(path))
    steps = sorted({s for c in curves.values() for s in c})
    print("| step | " + " | ".join(curves) + " |")
    print("| ---: |" + " ---: |" * len(curves))
    for s in steps:
        cells = [f"{c[s]:.3f}" if s in c else "" for c in curves.values()]
        print(f"| {s} | " + " | ".join(cells) + " |")
    print()
    for label, c in curves.items():
        hit = first_at(c, args.target)
        best = max(c.values()) if c else float("nan")
        where = f"step {hit}" if hit is not None else "not reached"
        print(f"{label}: first eval/accuracy >= {args.target}: {where}; best {best:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
