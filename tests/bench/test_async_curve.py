"""bench/async_curve.py: the learning-curve comparison of a K = 0 and a K >= 1 run dir."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_dir(path: Path, accs: dict[int, float], staleness=None) -> Path:
    path.mkdir()
    rows = []
    for step in range(0, max(accs) + 1):
        row = {"step": step}
        if step in accs:
            row["eval/accuracy"] = accs[step]
        if step and staleness is not None:
            row |= {"async/staleness": 1.0, "async/staleness_hist/1": float(step), "async/dropped_frac": 0.0}
            row |= {"policy/is_ratio_mean": 1.01, "rollout/logprob_diff_mean": 0.02}
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _compare(*args) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "async_curve.py"), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def test_within_20_percent_of_the_reference_steps(tmp_path):
    ref = _run_dir(tmp_path / "k0", {0: 0.0, 2: 0.3, 4: 0.6, 6: 0.8, 8: 0.8, 10: 0.9})
    k1 = _run_dir(tmp_path / "k1", {0: 0.0, 2: 0.2, 4: 0.5, 6: 0.7, 8: 0.8, 10: 0.85}, staleness=1)
    lines = _compare(ref, k1, "--target", "0.8")
    assert "| 4 | 0.600 | 0.500 |" in lines
    assert "staleness histogram (batches trained k versions behind): {'1': 10}" in lines
    # ref reaches 0.8 at step 6, K=1 at step 8: 8 > floor(1.2 * 6) = 7
    assert lines[-1] == "async_curve: ref_step=6 async_step=8 ratio=1.333 target=0.800 within_20pct=no"
    # default target: the reference's final accuracy (0.9), which K = 1 never reaches
    assert _compare(ref, k1)[-1].startswith("async_curve: ref_step=10 async_step=None")
    assert _compare(ref, k1, "--target", "0.5")[-1].endswith("ratio=1.000 target=0.500 within_20pct=yes")
