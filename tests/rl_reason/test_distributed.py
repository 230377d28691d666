import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from .conftest import ROOT, TINY


def test_two_processes_split_prompts_and_end_with_identical_adapters(tmp_path, tiny_path):
    run_dir = tmp_path / "dist"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29533", str(ROOT / "tests" / "rl_reason" / "_dist_train.py"),
        str(TINY), str(run_dir), "train.steps=2", "checkpoint.every=0", "eval.limit=4",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    a = torch.load(run_dir / "adapter_rank0.pt")
    b = torch.load(run_dir / "adapter_rank1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # it trained
    # rank 0 logs every completion of both ranks: 4 prompts x 4 generations per step
    rows = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4 * 4
    step1 = {r["prompt_id"] for r in rows if r["step"] == 1}
    assert len(step1) == 4
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert metrics[0]["eval/n"] == 4  # held-out prompts split over ranks, counts summed
