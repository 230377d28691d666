"""Synchronous vs asynchronous training (rollout.max_staleness 0 vs K) on the demo recipe.

Both runs use the same recipe (the demo model, the demo task), one after the other in one
invocation, with evaluation and checkpoints off so the steps are what is timed. Step 1 of each
run is left out of the timings (the K >= 1 run starts its sampler process there).

Per run: the time each phase is busy (sampling in the sampler, scoring and updating in the
trainer, the trainer waiting for rollouts), s/step, the overlap fraction (the share of
sampling time hidden behind the trainer's work: 1 - waited / sampled) and reward per step.

    .venv/bin/python bench/async.py [--steps 5] [--k 1] [--device cpu|cuda]

On a CPU the two processes share the cores, so sampling and training slow each other down and
the ratio is bounded by the cores; on a GPU box (``--device cuda``) the sampler and trainer
still share one GPU with the hf engine, and ``rollout.engine=server`` (``--set``) moves
sampling to vLLM servers on their own GPUs. Last line:
``async: sync_s_per_step=<x> async_s_per_step=<y> ratio=<y/x> overlap=<f>``
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds math.py, which would shadow the standard library's math for this script
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def run(k: int, steps: int, device: str, extra: list[str], root: Path) -> dict:
    from rl_reason.demo import demo_config
    from rl_reason.trainer import Trainer

    overrides = [
        f"train.steps={steps}",
        f"rollout.max_staleness={k}",
        f"model.device={device}",
        "eval.at_start=false",
        "eval.at_end=false",
        "eval.every=0",
        "checkpoint.every=0",
        "logging.plot=false",
        "logging.progress=false",
        *extra,
    ]
    cfg = demo_config(overrides)
    run_dir = root / f"k{k}"
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.run()
    run_s = time.perf_counter() - t0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 1]
    timed = rows[1:]  # step 1 starts the sampler process (K >= 1)

    def total(key: str) -> float:
        return sum(float(r.get(key) or 0.0) for r in timed)

    gen, score, upd = total("time/generate_s"), total("time/score_s"), total("time/update_s")
    wall = total("time/step_s")
    waited = total("time/wait_rollouts_s") if k else gen  # synchronous: the trainer waits for all of it
    return {
        "k": k,
        "setup_s": setup_s,
        "run_s": run_s,
        "s_per_step": wall / max(len(timed), 1),
        "sample_busy_s": gen,
        "score_busy_s": score,
        "update_busy_s": upd,
        "waited_s": waited,
        "overlap": max(0.0, 1.0 - waited / gen) if gen else 0.0,
        "reward": [round(float(r.get("reward/total/mean") or 0.0), 3) for r in rows],
        "staleness": [int(r["async/staleness"]) for r in rows if "async/staleness" in r],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="extra recipe override key=value")
    args = ap.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-async-") as tmp:
        results = [run(k, args.steps, args.device, args.set, Path(tmp)) for k in (0, args.k)]
    for r in results:
        print(
            f"K={r['k']}: {r['s_per_step']:.2f} s/step over steps 2..{args.steps}; busy: sample "
            f"{r['sample_busy_s']:.1f}s score {r['score_busy_s']:.1f}s update {r['update_busy_s']:.1f}s; "
            f"trainer waited {r['waited_s']:.1f}s; overlap {r['overlap']:.2f}; set-up {r['setup_s']:.1f}s"
        )
        print(
            f"  reward per step: {r['reward']}" + (f"  staleness: {r['staleness']}" if r["staleness"] else "")
        )
    sync, asy = results
    ratio = asy["s_per_step"] / sync["s_per_step"]
    print(
        f"async: sync_s_per_step={sync['s_per_step']:.3f} async_s_per_step={asy['s_per_step']:.3f} "
        f"ratio={ratio:.3f} overlap={asy['overlap']:.3f}"
    )


if __name__ == "__main__":
    main()
