"""rl_reason.train_state: step seeds, LR schedules, the stop flag."""

from __future__ import annotations

import signal

import pytest
import torch

from rl_reason import train_state
from rl_reason.config import load_config


def test_step_seeds_are_fixed_and_differ_by_step_and_rank():
    seeds = {train_state.step_seed(0, s, r) for s in range(50) for r in range(4)}
    assert len(seeds) == 200 and all(0 <= x < 2**31 - 1 for x in seeds)
    assert train_state.step_seed(3, 7, 1) == (3 * 1_000_003 + 7 * 7919 + 104_729) % (2**31 - 1)


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]),  # reaches 0 at train.steps
        ("cosine", [0.5, 1.0, 1.0, 0.853553, 0.5, 0.146447]),
    ],
)
def test_schedules_warm_up_then_decay(kind, expected):
    cfg = load_config(
        None, ["train.steps=6", "train.warmup_steps=2", f"train.lr_schedule={kind}", "train.lr=1"]
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = train_state.make_scheduler(opt, cfg)
    got = []
    for _ in range(6):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert got == pytest.approx(expected, abs=1e-6)


def test_first_signal_asks_to_stop_after_the_step(capsys):
    flag = train_state.StopFlag()
    flag.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == flag._handle and flag.requested is False
        flag._handle(signal.SIGTERM, None)
        assert flag.requested is True
        assert "SIGTERM: finishing this step, then checkpointing" in capsys.readouterr().err
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGTERM) != flag._handle


def test_seed_everything_repeats_torch_draws():
    train_state.seed_everything(11)
    a = torch.rand(3)
    train_state.seed_everything(11)
    assert torch.equal(a, torch.rand(3))


def test_make_optimizers_gives_the_critic_its_own_optimizer_and_lr():
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        train=SimpleNamespace(steps=10, warmup_steps=0, lr_schedule="constant", lr=0.1, weight_decay=0.0),
        critic=SimpleNamespace(lr=0.01),
    )
    critic = torch.nn.Linear(2, 1)
    opt, sched, copt, csched = train_state.make_optimizers(cfg, [torch.nn.Parameter(torch.zeros(1))], critic)
    assert copt is not None and copt is not opt
    assert sched.base_lrs == [0.1] and csched.base_lrs == [0.01]
    assert {id(p) for g in copt.param_groups for p in g["params"]} == {id(p) for p in critic.parameters()}
    assert train_state.make_optimizers(cfg, [torch.nn.Parameter(torch.zeros(1))], None)[2:] == (None, None)
