"""Held-out learning curves of two finished runs side by side (K = 0 against K >= 1).

Reads ``metrics.jsonl`` of each run dir and prints one row per evaluated step (held-out
accuracy of each run), the first step each run reaches the target accuracy, and the issue's
check: the K >= 1 run reaches it within the reference's number of steps +-20%. The target is
the reference's final held-out accuracy unless ``--target`` is given. Then the asynchronous
run's own figures: the staleness histogram, the dropped share, the sampler/trainer log-prob
gap and the importance-ratio statistics (those present in its metrics).

    python -m rl_reason.cli demo --run-dir runs/k0 eval.every=2
    python -m rl_reason.cli demo --run-dir runs/k1 eval.every=2 rollout.max_staleness=1
    python bench/async_curve.py runs/k0 runs/k1

Last line: ``async_curve: ref_step=<a> async_step=<b> ratio=<b/a> target=<t> within_20pct=<yes|no>``
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds math.py, which would shadow the standard library's math for this script
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from typing import Optional  # noqa: E402

ACC = "eval/accuracy"


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def curve(run: list[dict]) -> dict[int, float]:
    """Step -> held-out accuracy (step 0: before training)."""
    return {int(r["step"]): float(r[ACC]) for r in run if ACC in r and not math.isnan(float(r[ACC]))}


def first_reaching(points: dict[int, float], target: float) -> Optional[int]:
    hits = [s for s, a in sorted(points.items()) if a >= target - 1e-9]
    return hits[0] if hits else None


def _mean(run: list[dict], key: str) -> Optional[float]:
    vals = [float(r[key]) for r in run if key in r]
    return sum(vals) / len(vals) if vals else None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", type=Path, help="the K = 0 run dir")
    ap.add_argument("other", type=Path, help="the K >= 1 run dir")
    ap.add_argument("--target", type=float, default=None, help="accuracy to reach (default: ref final)")
    args = ap.parse_args(argv)
    ref_rows, other_rows = rows(args.ref), rows(args.other)
    ref, other = curve(ref_rows), curve(other_rows)
    if not ref or not other:
        raise SystemExit(f"no {ACC} in {args.ref if not ref else args.other}/metrics.jsonl (eval.every?)")
    print(f"| step | {args.ref.name} | {args.other.name} |")
    print("| ---: | ---: | ---: |")
    for s in sorted(set(ref) | set(other)):
        a, b = ref.get(s), other.get(s)
        print(f"| {s} | {'' if a is None else f'{a:.3f}'} | {'' if b is None else f'{b:.3f}'} |")
    target = args.target if args.target is not None else ref[max(ref)]
    a, b = first_reaching(ref, target), first_reaching(other, target)
    train = [r for r in other_rows if "async/staleness" in r]
    if train:
        last = train[-1]
        hist = {k.rsplit("/", 1)[1]: int(v) for k, v in last.items() if k.startswith("async/staleness_hist/")}
        print(f"staleness histogram (batches trained k versions behind): {hist}")
        print(f"dropped: {last.get('async/dropped', 0):.0f} (frac {last.get('async/dropped_frac', 0):.3f})")
    for key in (
        "rollout/logprob_diff_mean",
        "rollout/logprob_diff_max",
        "policy/is_ratio_mean",
        "policy/is_ratio_max",
        "policy/is_weight_mean",
        "policy/is_weight_max",
        "policy/is_clip_frac",
        "policy/is_mask_frac",
    ):
        for name, run in ((args.ref.name, ref_rows), (args.other.name, other_rows)):
            m = _mean(run, key)
            if m is not None:
                print(f"{key} mean over steps ({name}): {m:.4f}")
    for name, run in ((args.ref.name, ref_rows), (args.other.name, other_rows)):
        m = _mean(run, "time/step_s")
        if m is not None:
            print(f"time/step_s mean ({name}): {m:.2f}")
    ratio = (b / a) if (a and b) else (1.0 if a == 0 and b == 0 else math.nan)
    ok = b is not None and a is not None and b <= math.floor(1.2 * a + 1e-9)
    print(
        f"async_curve: ref_step={a} async_step={b} ratio={ratio:.3f} target={target:.3f} "
        f"within_20pct={'yes' if ok else 'no'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
