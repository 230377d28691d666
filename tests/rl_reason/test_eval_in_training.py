"""Periodic evaluation on a named eval set, and keep-best checkpointing."""

import json

import torch
from safetensors.torch import load_file

from rl_reason.cli import main

from .conftest import TINY


def test_eval_data_every_step_and_keep_best(tmp_path):
    data = tmp_path / "mini.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"{i} + 1 = ?", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(TINY),
            "--run-dir",
            str(run),
            "train.steps=3",
            "logging.plot=false",
            f"eval.data={data}",
            "eval.every=1",
            "checkpoint.keep_best=min:eval/len_mean",
        ]
    )
    assert code == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval/len_mean"]) for r in rows if "eval/n" in r]
    assert [s for s, _ in evals] == [0, 1, 2, 3]
    assert all(r["eval/n"] == 3 for r in rows if "eval/n" in r)  # the file's 3 prompts, not the task's
    best_step, best_len = min(evals, key=lambda e: (e[1], e[0]))
    best = json.loads((run / "best_adapter" / "best.json").read_text())
    assert best == {"step": best_step, "value": best_len, "metric": "eval/len_mean"}
    saved = load_file(run / "best_adapter" / "adapter_model.safetensors")
    final = load_file(run / "adapter" / "adapter_model.safetensors")
    same = all(torch.equal(saved[k], final[k]) for k in final)
    assert same == (best_step == 3)
