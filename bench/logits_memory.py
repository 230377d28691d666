"""Peak RSS of one packed forward + backward on a model of the demo's shape, with random
weights (no download, no demo model: seconds, not minutes): the log-probs taken in slabs
behind a bypassed head (the default, ``packing.head_for_chunks``) against the whole
(tokens, vocab) logits, and how the peak grows per decoder layer.

The shape is SmolLM2-135M's (hidden 576, MLP 1536, 9 query / 3 key-value heads, vocab 49152,
tied head), LoRA r=16 on all linear layers; the micro-batch is the vs_trl one at
``--tokens`` packed tokens (tree layout: a 60-token prompt, then its 8 completions of up to
64 tokens, group after group). Each setting runs in its own child process.

    .venv/bin/python bench/logits_memory.py --layers 2,4 --tokens 1024
Last line: logits_memory: <setting>=<peak RSS MB> ...
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(layers: int, tokens: int, chunked: bool, checkpointing: bool = False) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from rl_reason import packing

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 2)
    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
    )
    cfg._attn_implementation = "sdpa"
    model = get_peft_model(
        LlamaForCausalLM(cfg),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    g = torch.Generator().manual_seed(0)
    prompts, comps = [], []
    used = 0
    while True:
        p = torch.randint(10, 49000, (60,), generator=g).tolist()
        for _ in range(8):
            c = torch.randint(
                10, 49000, (int(torch.randint(3, 65, (1,), generator=g)),), generator=g
            ).tolist()
            cost = len(c) + (60 if not comps or prompts[-1] is not p else 0)
            if used + cost > tokens:
                break
            prompts.append(p)
            comps.append(c)
            used += cost
        else:
            continue
        break
    pk = packing.pack(prompts, comps, list(range(len(comps))), packing.TREE, "cpu")
    if not chunked:
        packing.head_for_chunks = lambda m: None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.train()
    lp, _ = packing.completion_logprobs(model, pk, 1.0, True)
    lp.sum().backward()
    return {"before_mb": before, "tokens": pk.tokens, "predicted": int(pk.targets.numel())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", default="2,4")
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (TRL's default)")
    p.add_argument("--child")
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        layers, chunked = a.child.split(":")
        Path(a.out).write_text(
            json.dumps(child(int(layers), a.tokens, chunked == "chunked", a.checkpointing))
        )
        return
    results = {}
    for layers in [int(x) for x in a.layers.split(",")]:
        for how in ("chunked", "whole"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"{layers}:{how}",
                    "--tokens",
                    str(a.tokens),
                    "--out",
                    str(out),
                ]
                cmd += ["--checkpointing"] if a.checkpointing else []
                proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)))
                _, status, usage = os.wait4(proc.pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise SystemExit(f"{layers}:{how} failed")
                r = json.loads(out.read_text())
            peak = usage.ru_maxrss / 1024
            key = f"{how}@{layers}layers" + ("+ckpt" if a.checkpointing else "")
            results[key] = peak
            print(
                f"{key:<18} {peak:7.0f} MB peak RSS ({peak - r['before_mb']:6.0f} MB over the built model) "
                f"{r['tokens']} packed tokens, {r['predicted']} predicted",
                flush=True,
            )
    print("logits_memory: " + " ".join(f"{k}={v:.0f}MB" for k, v in results.items()))


if __name__ == "__main__":
    main()
