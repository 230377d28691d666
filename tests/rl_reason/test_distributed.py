"""Two processes on the CPU (torchrun, gloo): DDP, and FSDP with the frozen base sharded."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from .conftest import ROOT, TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PPO = [
    "algorithm.name=ppo",
    "eval.at_start=false",
    "eval.at_end=false",
    "logging.plot=false",
    "critic.lr=0.01",
    'rewards.checkers=[{name: "tests.rewards._checkers:const"}]',
]


def torchrun(run_dir, *overrides, recipe=TINY):
    """Train the tiny recipe in two processes; each rank dumps its adapter (and critic)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(ROOT / "tests" / "rl_reason" / "_dist_train.py"),
        str(recipe),
        str(run_dir),
        "train.steps=2",
        "checkpoint.every=0",
        *overrides,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


def _rank_state(run_dir, name, rank):
    return _flatten(torch.load(run_dir / f"{name}_rank{rank}.pt"))


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


# one held-out prompt: rank 1 has none and must still join every forward of rank 0 (FSDP);
# an evaluation, a best-adapter save and a checkpoint after every step: rank 0 saves alone
# between two sharded forwards, which once broke the next step's collectives
GRPO = [
    "train.steps=3",
    "eval.limit=1",
    "eval.every=1",
    "checkpoint.every=1",
    "checkpoint.keep_best=eval/reward_mean",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_path):
    return torchrun(tmp_path_factory.mktemp("ddp") / "run", *GRPO)


@pytest.fixture(scope="module")
def ppo_ddp_run(tmp_path_factory, tiny_path):
    return torchrun(tmp_path_factory.mktemp("ppo") / "run", *PPO)


def test_two_processes_split_prompts_and_end_with_identical_adapters(ddp_run):
    a, b = _rank_state(ddp_run, "adapter", 0), _rank_state(ddp_run, "adapter", 1)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # it trained
    # rank 0 logs every completion of both ranks: 4 prompts x 4 generations per step
    rows = [json.loads(x) for x in (ddp_run / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 4 * 4
    step1 = {r["prompt_id"] for r in rows if r["step"] == 1}
    assert len(step1) == 4
    metrics = _metrics(ddp_run)
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    assert all(m["eval/n"] == 1 for m in metrics)  # counts summed over ranks (1 + 0)


def test_ppo_under_two_processes_keeps_actor_and_critic_identical(ppo_ddp_run):
    """The critic's LoRA is frozen when DDP wraps the model, so the trainer all-reduces its
    gradients itself (Dist.sum_grads); without that the two ranks' critics drift apart."""
    for name in ("adapter", "critic"):
        a, b = _rank_state(ppo_ddp_run, name, 0), _rank_state(ppo_ddp_run, name, 1)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    critic = _rank_state(ppo_ddp_run, "critic", 0)
    assert any(v.abs().sum() > 0 for k, v in critic.items() if "lora_B" in k)  # the critic trained
    losses = [m["critic/value_loss"] for m in _metrics(ppo_ddp_run) if "critic/value_loss" in m]
    assert len(losses) == 2 and losses[1] < losses[0]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_fsdp_shards_the_base_and_trains_what_ddp_trains(tmp_path, algo, request):
    """train.fsdp: each rank holds half the base, the adapters stay whole and identical on
    both ranks, and the run equals the DDP run (same data split, gradients summed either way)."""
    ref = request.getfixturevalue("ddp_run" if algo == "grpo" else "ppo_ddp_run")
    extra = GRPO if algo == "grpo" else PPO
    run = torchrun(tmp_path / "fsdp", "train.fsdp=true", *extra)
    for rank in (0, 1):
        frac = float((run / f"base_fraction_rank{rank}.txt").read_text())
        assert 0.45 < frac < 0.55, frac  # DDP holds all of it
    assert float((ref / "base_fraction_rank0.txt").read_text()) == 1.0
    for name in ("adapter", "critic") if algo == "ppo" else ("adapter",):
        a, b, want = (_rank_state(run, name, 0), _rank_state(run, name, 1), _rank_state(ref, name, 0))
        assert a.keys() == b.keys() == want.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
            assert torch.allclose(a[k], want[k], atol=1e-6), (name, k)
        assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    # wall clock, and the sampler-vs-trainer float noise (DDP samples with the adapter merged)
    drop = ("time/", "throughput/", "/seconds", "rollout/logprob_diff")
    got, exp = _metrics(run), _metrics(ref)
    if algo == "grpo":
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
        assert json.loads((run / "best_adapter" / "best.json").read_text()) == json.loads(
            (ref / "best_adapter" / "best.json").read_text()
        )
    assert [m["step"] for m in got] == [m["step"] for m in exp]
    for g, e in zip(got, exp):
        for k, v in e.items():
            if not any(d in k for d in drop):
                # null: a metric with no value (eval/tokens_per_correct when nothing is right)
                assert g[k] == (None if v is None else pytest.approx(v, rel=1e-5, abs=1e-7)), k


TINY_MOE = ROOT / "recipes" / "test" / "tiny_moe.yaml"
MOE = [
    "eval.at_start=false",
    "eval.at_end=false",
    "logging.plot=false",
    "algorithm.drop_uniform_groups=false",
]


@pytest.mark.slow
def test_moe_fsdp_and_ddp_train_the_same_adapter(tmp_path):
    """The tiny MoE (expert LoRA through PEFT's parameter wrappers, routing replay) under
    two processes: DDP and FSDP end with the same adapter on every rank, as for dense."""
    ddp = torchrun(tmp_path / "ddp", *MOE, recipe=TINY_MOE)
    fsdp = torchrun(tmp_path / "fsdp", "train.fsdp=true", *MOE, recipe=TINY_MOE)
    assert 0.45 < float((fsdp / "base_fraction_rank0.txt").read_text()) < 0.55
    want = _rank_state(ddp, "adapter", 0)
    assert any("experts" in k for k in want)
    for run in (ddp, fsdp):
        for rank in (0, 1):
            got = _rank_state(run, "adapter", rank)
            assert got.keys() == want.keys()
            for k in want:
                assert torch.allclose(got[k], want[k], atol=1e-6), (run.name, rank, k)
    assert any(v.abs().sum() > 0 for k, v in want.items() if "experts" in k and "lora_B" in k)
    for g, e in zip(_metrics(fsdp), _metrics(ddp)):
        assert g.get("moe/routing_agreement") == e.get("moe/routing_agreement")


TINY_TOOLS = ROOT / "recipes" / "test" / "tiny_tools.yaml"
TOOLS = [
    "rollout.tools=[tests.rl_reason._envs:Letters]",  # one the random model really calls
    "rollout.tool_params={}",
    "eval.at_start=false",
    "eval.at_end=false",
    "logging.plot=false",
    "algorithm.drop_uniform_groups=false",
]


@pytest.mark.slow
def test_multi_turn_rollouts_under_fsdp_train_what_ddp_trains(tmp_path):
    """Tools in the rollout under two processes: the ranks' rollouts need different numbers of
    rounds, and under FSDP every round's forwards are collectives (the driver keeps the ranks
    in step); DDP and FSDP end with the same adapter on every rank, with tool tokens masked."""
    ddp = torchrun(tmp_path / "ddp", *TOOLS, recipe=TINY_TOOLS)
    fsdp = torchrun(tmp_path / "fsdp", "train.fsdp=true", *TOOLS, recipe=TINY_TOOLS)
    assert 0.45 < float((fsdp / "base_fraction_rank0.txt").read_text()) < 0.55
    want = _rank_state(ddp, "adapter", 0)
    for run in (ddp, fsdp):
        for rank in (0, 1):
            got = _rank_state(run, "adapter", rank)
            assert got.keys() == want.keys()
            for k in want:
                assert torch.allclose(got[k], want[k], atol=1e-6), (run.name, rank, k)
    assert any(v.abs().sum() > 0 for k, v in want.items() if "lora_B" in k)
    for g, e in zip(_metrics(fsdp), _metrics(ddp)):
        if g["step"] > 0:
            assert g["tools/calls_mean"] == e["tools/calls_mean"] > 0


def _flatten(state, prefix=""):
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
