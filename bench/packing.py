"""The update alone, padded vs packed micro-batches, with and without prompt sharing.

Same rollouts for every setting: the vs_trl shape by default (8 prompts x 8 completions of the
demo task, completion lengths drawn from 3..64 as the demo model's are), random completion
tokens, group advantages. Each setting runs in its own child process (its own peak RSS) and
times ``Trainer.update`` (forward, backward, optimizer step) after one warm-up update.

    .venv/bin/python bench/packing.py --model demo --budgets 4096,1024
Last line: packing: <setting>=<s per update> ... (the fastest first)
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {  # name -> (train.packing, train.share_prompt)
    "padded": ("false", "false"),
    "padded_shared": ("false", "true"),
    "packed_flat": ("true", "false"),
    "packed_tree": ("true", "true"),
}


def child(a) -> dict:
    import torch

    from rl_reason.config import load_config
    from rl_reason.demo import DEMO_RECIPE
    from rl_reason.rollout import Rollout
    from rl_reason.trainer import Trainer

    torch.set_num_threads(os.cpu_count() or 2)
    pack, share = SETTINGS[a.child]
    recipe = DEMO_RECIPE if a.model == "demo" else ROOT / "recipes" / "test" / "tiny_grpo.yaml"
    cfg = load_config(
        recipe,
        [
            f"train.packing={pack}",
            f"train.share_prompt={share}",
            f"train.micro_batch_tokens={a.budget}",
            "eval.at_start=false",
            "eval.at_end=false",
            "logging.plot=false",
            "logging.progress=false",
            "checkpoint.every=0",
            "rewards.workers=0",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp) / "run")
        g = torch.Generator().manual_seed(0)
        prompts = t._prompt_ids(t.records[: a.prompts])
        vocab = min(len(t.policy.tokenizer), 1000)
        rolls = []
        for i in range(a.prompts * a.gens):
            L = int(torch.randint(3, a.max_len + 1, (1,), generator=g))
            ids = torch.randint(10, vocab, (L,), generator=g).tolist()
            rolls.append(
                Rollout(
                    prompt_index=i // a.gens,
                    prompt_ids=prompts[i // a.gens],
                    completion_ids=ids,
                    completion_text="",
                    finish_reason="stop",
                )
            )
        adv = torch.randn(len(rolls), generator=g)
        keep = torch.ones(len(rolls), dtype=torch.bool)
        times = []
        for step in range(a.repeats + 1):
            t0 = time.perf_counter()
            stats, _ = t.update(rolls, adv, keep, step=step + 1)
            times.append(time.perf_counter() - t0)
    return {"s": sum(times[1:]) / a.repeats, "micro_batches": stats["policy/micro_batches"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["demo", "tiny"], default="demo")
    p.add_argument("--budgets", default="4096,1024")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--gens", type=int, default=8)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child")
    p.add_argument("--budget", type=int)
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        Path(a.out).write_text(json.dumps(child(a)))
        return
    results = {}
    for budget in [int(x) for x in a.budgets.split(",")]:
        for name in a.settings.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--child", name, "--budget", str(budget), "--out", str(out)]
                cmd += ["--model", a.model, "--prompts", str(a.prompts), "--gens", str(a.gens)]
                cmd += ["--max-len", str(a.max_len), "--repeats", str(a.repeats)]
                proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)))
                _, status, usage = os.wait4(proc.pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise SystemExit(f"{name} failed")
                r = json.loads(out.read_text())
            r["rss_mb"] = usage.ru_maxrss / 1024
            key = f"{name}@{budget}"
            results[key] = r
            print(
                f"{key:<22} {r['s']:7.2f} s/update  {r['rss_mb']:7.0f} MB peak RSS  {r['micro_batches']:.0f} micro-batches",
                flush=True,
            )
    order = sorted(results, key=lambda k: results[k]["s"])
    print("packing: " + " ".join(f"{k}={results[k]['s']:.2f}s/{results[k]['rss_mb']:.0f}MB" for k in order))


if __name__ == "__main__":
    main()
