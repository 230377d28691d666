"""A tiny mixture-of-experts model vs a dense one with the same active parameters, a few GRPO
steps each: seconds per step, peak RSS, routing agreement with and without routing replay,
and whether the digit reward of the tiny recipe rises.

Models (both built offline, random weights, the byte tokenizer):
- moe: ``tiny-random-moe`` (Qwen3-MoE, 2 layers, 8 experts of width 32, 2 per token), LoRA on
  attention and on every expert, router frozen (recipes/test/tiny_moe.yaml);
- dense: the ``tiny-random`` Llama with an MLP of width 64 = the MoE's active expert width.

Runs, each in its own child process (so the peak RSS is its own):
- dense:  GRPO, PPO clip (recipes/test/tiny_grpo.yaml);
- plain:  the MoE, GSPO, no replay;
- replay: the MoE, GSPO, routing replay.
All with ``algorithm.epochs=2``: the second pass runs after an optimizer step, so the policy
has moved away from the sampler's, as in any off-policy mini-batch; agreement is measured over
both passes (``moe/routing_agreement``: share of the sampler's experts the update ran).

    .venv/bin/python bench/moe.py [--steps 12]
Also prints the adapter memory of a LoRA on all experts of a Qwen3-30B-A3B-shaped model
(meta device, no weights), to choose targets by.

Last line: moe: dense_s_per_step=<x> moe_s_per_step=<y> agreement_plain=<a> agreement_replay=<b>
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
DENSE = ROOT / "recipes" / "test" / "tiny_grpo.yaml"
MOE = ROOT / "recipes" / "test" / "tiny_moe.yaml"
COMMON = [
    "algorithm.epochs=2",
    "eval.at_start=false",
    "eval.at_end=false",
    "logging.plot=false",
    "logging.log_rollouts=false",
    "checkpoint.every=0",
]


def child(kind: str, steps: int, model_dir: str, out: Path) -> None:
    import resource

    sys.path.insert(0, str(ROOT))
    from rl_reason.config import load_config
    from rl_reason.trainer import Trainer

    extra = [f"train.steps={steps}", *COMMON]
    if kind == "dense":
        cfg = load_config(DENSE, extra + [f"model.name={model_dir}"])
    else:
        replay = kind in ("replay", "replay_gspo")
        gspo = ["algorithm.policy_loss=gspo", "algorithm.clip_low=3e-4", "algorithm.clip_high=4e-4"]
        cfg = load_config(
            MOE,
            extra
            + [f"algorithm.routing_replay={str(replay).lower()}"]
            + (gspo if kind == "replay_gspo" else []),
        )
    run_dir = out / kind
    Trainer(cfg, run_dir).run()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > 0]
    step_s = [r["time/step_s"] for r in rows[1:]] or [rows[0]["time/step_s"]]  # step 1 warms up
    agree = [r["moe/routing_agreement"] for r in rows if "moe/routing_agreement" in r]
    digits = [r["reward/digits/mean"] for r in rows]
    k = max(1, min(3, len(digits) // 2))
    print(
        json.dumps(
            {
                "s_per_step": sum(step_s) / len(step_s),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "agreement": sum(agree) / len(agree) if agree else None,
                "router_agreement": (
                    sum(r["moe/router_agreement"] for r in rows if "moe/router_agreement" in r) / len(agree)
                    if agree
                    else None
                ),
                "digits_first": sum(digits[:k]) / k,
                "digits_last": sum(digits[-k:]) / k,
            }
        )
    )


def _gpu_bench():
    """bench/gpu.py as a module (bench/ is not on sys.path: its math.py would shadow the stdlib's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", Path(_HERE) / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def big_moe_lora_mb(r: int = 16) -> dict:
    """Adapter MB (float32) of a LoRA of rank r on a Qwen3-30B-A3B-shaped model, by target."""
    sys.path.insert(0, str(ROOT))
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from rl_reason import moe

    shape = dict(_gpu_bench().SIZES["moe"])  # the one Qwen3-30B-A3B shape, kept in bench/gpu.py
    shape.pop("model_type")
    cfg = Qwen3MoeConfig(**shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    tm, tp = moe.lora_targets(model, "all-linear", experts=True, train_router=False)
    peft_model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=tm, target_parameters=tp)
    )
    return moe.lora_memory(peft_model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--child", choices=["dense", "plain", "replay", "replay_gspo"])
    ap.add_argument("--model-dir", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--no-big", action="store_true", help="skip the 30B-A3B memory figure")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.steps, args.model_dir, Path(args.out))
        return
    sys.path.insert(0, str(ROOT))
    from rl_reason.model_zoo import build_tiny_random

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-moe-") as tmp:
        dense_dir = Path(tmp) / "dense64"
        build_tiny_random(dense_dir, intermediate_size=64)  # = 2 active experts x 32
        for kind in ("dense", "plain", "replay", "replay_gspo"):  # the last: the learning check
            cmd = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps)]
            cmd += ["--model-dir", str(dense_dir), "--out", tmp]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{kind} run failed:\n{proc.stderr[-3000:]}")
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(kind, json.dumps(results[kind]), flush=True)
    for kind, r in results.items():
        print(
            f"{kind:11s} s/step {r['s_per_step']:.2f}  peak RSS {r['rss_mb']:.0f} MB  "
            f"digits {r['digits_first']:.3f} -> {r['digits_last']:.3f}"
            + (
                f"  agreement {r['agreement']:.4f} (router's own {r['router_agreement']:.4f})"
                if r["agreement"]
                else ""
            )
        )
    if not args.no_big:
        mem = big_moe_lora_mb(16)
        print(
            "Qwen3-30B-A3B shape, LoRA r=16 (float32): experts {experts:.0f} MB, attention {other:.0f} MB, "
            "with gradients + Adam {training_total:.0f} MB".format(**mem)
        )
    d, p, r = results["dense"], results["plain"], results["replay"]
    print(
        f"moe: dense_s_per_step={d['s_per_step']:.3f} moe_s_per_step={r['s_per_step']:.3f} "
        f"agreement_plain={p['agreement']:.4f} agreement_replay={r['agreement']:.4f}"
    )


if __name__ == "__main__":
    main()
