"""Peak memory of PPO with the critic on the policy's base vs on a separate base copy.

Both runs train the demo recipe's PPO variant (recipes/demo/ppo_arith.yaml) for a few steps on
the demo model; only ``critic.shared_base`` differs. Each runs in its own child process so the
peak RSS is its own.

    .venv/bin/python bench/ppo_memory.py --steps 2
Last line: ppo_memory: shared_rss_mb=<a> separate_rss_mb=<b> shared_weights_mb=<c>
           separate_weights_mb=<d> weights_saved_mb=<d-c>
Peak RSS on the CPU is dominated by the update's activations (several GB for 32 sequences of
~80 tokens through 30 layers), so it moves by a few hundred MB run to run; the weights line
counts every distinct parameter/buffer storage once and is exact.
"""

from __future__ import annotations

import os
import sys

# bench/ holds math.py: keep it off sys.path so it does not shadow the standard library's math
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo" / "ppo_arith.yaml"


def child(shared: bool, steps: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from rl_reason.config import load_config
    from rl_reason.trainer import Trainer

    cfg = load_config(
        RECIPE,
        [
            f"train.steps={steps}",
            f"critic.shared_base={str(shared).lower()}",
            "eval.at_start=false",
            "eval.at_end=false",
            "logging.plot=false",
            "logging.progress=false",
            "checkpoint.every=0",
            "rewards.workers=0",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        weights_mb = _weight_mb([trainer.policy.model, trainer.critic.model, trainer.critic.value_head])
        trainer.run()
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    out.write_text(
        json.dumps(
            {
                "value_loss": [r.get("critic/value_loss") for r in rows if r["step"] > 0],
                "weights_mb": weights_mb,
            }
        )
    )


def _weight_mb(modules) -> float:
    """Bytes of every distinct parameter and buffer storage the run holds (shared ones once)."""
    seen, total = set(), 0
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total / 2**20


def run(shared: bool, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "shared" if shared else "separate",
                "--steps",
                str(steps),
                "--out",
                str(out),
            ],
            env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the {'shared' if shared else 'separate'} run failed")
        result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--child")
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        child(a.child == "shared", a.steps, Path(a.out))
        return
    shared, separate = run(True, a.steps), run(False, a.steps)
    for name, r in (("shared", shared), ("separate", separate)):
        print(
            f"{name:<9} peak RSS {r['peak_rss_mb']:8.0f} MB  weights {r['weights_mb']:7.0f} MB  "
            f"value loss per step {r['value_loss']}"
        )
    a_mb, b_mb = shared["peak_rss_mb"], separate["peak_rss_mb"]
    wa, wb = shared["weights_mb"], separate["weights_mb"]
    print(
        f"ppo_memory: shared_rss_mb={a_mb:.0f} separate_rss_mb={b_mb:.0f} "
        f"shared_weights_mb={wa:.0f} separate_weights_mb={wb:.0f} weights_saved_mb={wb - wa:.0f}"
    )


if __name__ == "__main__":
    main()
