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


def test_ppo_under_two_processes_keeps_actor_and_critic_identical(tmp_path, tiny_path):
    """The critic's LoRA is frozen when DDP wraps the model, so the trainer all-reduces its
    gradients itself (Dist.sum_grads); without that the two ranks' critics drift apart."""
    run_dir = tmp_path / "ppo"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29534", str(ROOT / "tests" / "rl_reason" / "_dist_train.py"),
        str(TINY), str(run_dir), "algorithm.name=ppo", "train.steps=2", "checkpoint.every=0",
        "eval.at_start=false", "eval.at_end=false", "logging.plot=false", "critic.lr=0.01",
        'rewards.checkers=[{name: "tests.rewards._checkers:const"}]',
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("adapter", "critic"):
        a = torch.load(run_dir / f"{name}_rank0.pt")
        b = torch.load(run_dir / f"{name}_rank1.pt")
        flat_a, flat_b = _flatten(a), _flatten(b)
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), (name, k)
    critic = _flatten(torch.load(run_dir / "critic_rank0.pt"))
    assert any(v.abs().sum() > 0 for k, v in critic.items() if "lora_B" in k)  # the critic trained
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["critic/value_loss"] for m in metrics if "critic/value_loss" in m]
    assert len(losses) == 2 and losses[1] < losses[0]


def _flatten(state, prefix=""):
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
