"""Seeds, LR schedules and optimizers of a run (rl_reason/train_state.py)."""

from types import SimpleNamespace

import pytest
import torch

from rl_reason import train_state


def _cfg(schedule="cosine", steps=10, warmup=2):
    train = SimpleNamespace(steps=steps, warmup_steps=warmup, lr_schedule=schedule, lr=0.1, weight_decay=0.0)
    return SimpleNamespace(train=train, critic=SimpleNamespace(lr=0.01))


def test_step_seed_differs_by_step_and_rank_and_repeats():
    seeds = {train_state.step_seed(3, s, r) for s in range(1, 6) for r in range(4)}
    assert len(seeds) == 20
    assert train_state.step_seed(3, 2, 1) == train_state.step_seed(3, 2, 1)


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("constant", [0.05, 0.1, 0.1, 0.1]),
        ("linear", [0.05, 0.1, 0.1, 0.1 * (1 - 1 / 8)]),
    ],
)
def test_schedules_warm_up_then_follow_their_shape(schedule, expected):
    opt, sched, _, _ = train_state.make_optimizers(_cfg(schedule), [torch.nn.Parameter(torch.zeros(1))], None)
    lrs = []
    for _ in expected:
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected)


def test_critic_gets_its_own_optimizer_and_lr():
    critic = torch.nn.Linear(2, 1)
    opt, _, copt, csched = train_state.make_optimizers(_cfg(), [torch.nn.Parameter(torch.zeros(1))], critic)
    assert copt is not None and copt is not opt
    assert csched.base_lrs == [0.01]
    assert {id(p) for g in copt.param_groups for p in g["params"]} == {id(p) for p in critic.parameters()}
    assert train_state.make_optimizers(_cfg(), [torch.nn.Parameter(torch.zeros(1))], None)[2:] == (None, None)
