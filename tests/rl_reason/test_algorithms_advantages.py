"""Advantage functions (rl_reason/algorithms/advantages.py) against hand-computed values."""

import math

import pytest
import torch

from rl_reason import algorithms as A

T = torch.tensor


def close(a, b, tol=1e-5):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


def test_grpo_advantages_hand_values():
    # group 7: rewards 1, 0, 0, 1 -> mean 0.5, sample std sqrt(4*0.25/3) = 0.57735
    # group 3: rewards 2, 4 -> mean 3, sample std sqrt(2/1) = 1.41421
    r = T([1.0, 0.0, 2.0, 0.0, 1.0, 4.0])
    g = T([7, 7, 3, 7, 7, 3])
    adv = A.grpo_advantages(r, g, eps=0.0)
    s1 = math.sqrt(1 / 3)
    assert close(adv, [0.5 / s1, -0.5 / s1, -1 / math.sqrt(2), -0.5 / s1, 0.5 / s1, 1 / math.sqrt(2)])


def test_grpo_uniform_group_is_zero_not_nan():
    adv = A.grpo_advantages(T([1.0, 1.0, 1.0]), T([0, 0, 0]))
    assert close(adv, [0.0, 0.0, 0.0])


def test_dr_grpo_has_no_std():
    # mean 0.5: 1 -> 0.5, 0 -> -0.5 regardless of spread
    adv = A.dr_grpo_advantages(T([1.0, 0.0, 0.0, 1.0, 10.0, 0.0]), T([0, 0, 0, 0, 1, 1]))
    assert close(adv, [0.5, -0.5, -0.5, 0.5, 5.0, -5.0])


def test_rloo_leave_one_out():
    # rewards 1, 2, 6: baselines are mean of others: (2+6)/2=4, (1+6)/2=3.5, (1+2)/2=1.5
    adv = A.rloo_advantages(T([1.0, 2.0, 6.0, 5.0]), T([0, 0, 0, 1]))
    assert close(adv, [1 - 4, 2 - 3.5, 6 - 1.5, 0.0])


def test_compute_advantages_dispatch_and_unknown():
    r, g = T([1.0, 0.0]), T([0, 0])
    assert close(A.compute_advantages("rloo", r, g), [1.0, -1.0])
    with pytest.raises(ValueError, match="known: grpo"):
        A.compute_advantages("nope", r, g)


def test_uniform_group_mask():
    r = T([1.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    g = T([0, 0, 1, 1, 2, 2])
    assert A.uniform_group_mask(r, g).tolist() == [True, True, False, False, True, True]


def test_group_advantages_sum_to_zero_per_group():
    torch.manual_seed(0)
    r = torch.rand(12)
    g = torch.arange(12) // 4
    for name in ("grpo", "dr_grpo", "rloo"):
        adv = A.compute_advantages(name, r, g)
        for k in range(3):
            assert abs(float(adv[g == k].sum())) < 1e-5


# --------------------------------------------------------------------------- aggregation


def test_gae_hand_values():
    # one sequence of 3 tokens, reward 1 at the end, values 0.5, 0.6, 0.7, gamma 1, lambda 1:
    # returns are 1 everywhere, advantages 1 - V
    r = T([[0.0, 0.0, 1.0, 0.0]])
    v = T([[0.5, 0.6, 0.7, 9.0]])
    m = T([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = A.gae(r, v, m, gamma=1.0, lam=1.0)
    assert close(adv, [[0.5, 0.4, 0.3, 0.0]])
    assert close(ret, [[1.0, 1.0, 1.0, 0.0]])
    # lambda 0: one-step TD: delta_t = r_t + V_{t+1} - V_t
    adv0, _ = A.gae(r, v, m, gamma=1.0, lam=0.0)
    assert close(adv0, [[0.1, 0.1, 0.3, 0.0]])
    # gamma 0.5, lambda 1: returns 0.25, 0.5, 1
    _, ret_g = A.gae(r, v, m, gamma=0.5, lam=1.0)
    assert close(ret_g, [[0.25, 0.5, 1.0, 0.0]])


def test_reinforce_pp_whitened_over_batch_with_kl():
    m = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # no KL: returns are [1, 1, -], [0, -, -] -> masked mean 2/3, whitened
    adv = A.reinforce_pp_advantages(T([1.0, 0.0]), m)
    vals = torch.tensor([1.0, 1.0, 0.0])
    want = (vals - vals.mean()) / vals.std(unbiased=False)
    assert close(adv[m.bool()], want, tol=1e-3)
    assert float(adv[0, 2]) == 0.0
    # with KL 0.1 on every token and coef 1: returns [0.8, 0.9], [-0.1]
    adv = A.reinforce_pp_advantages(T([1.0, 0.0]), m, kl=torch.full((2, 3), 0.1), kl_coef=1.0)
    vals = torch.tensor([0.8, 0.9, -0.1])
    want = (vals - vals.mean()) / vals.std(unbiased=False)
    assert close(adv[m.bool()], want, tol=1e-3)


def test_whitening_leaves_tool_tokens_out_of_the_statistics():
    """A multi-turn rollout's tool output is in ``valid`` (returns run through it) but is not an
    action: REINFORCE++ and PPO whiten over the model's own tokens only. Seq 0 (reward 1): two
    model tokens around six tool tokens; seq 1 (reward 0): two model tokens. Over model tokens
    the returns are [1, 1] and [0, 0], mean 0.5, std 0.5 -> +1 / -1. Over every valid token
    (what a tool-blind whitening does) the mean would be 0.8 and seq 1 would get -2."""
    from types import SimpleNamespace

    from rl_reason.algorithms import registry

    valid = T([[1.0] * 8, [1.0, 1.0] + [0.0] * 6])
    model = T([[1.0] + [0.0] * 6 + [1.0], [1.0, 1.0] + [0.0] * 6])
    rewards = T([1.0, 0.0])
    alg = SimpleNamespace(gamma=1.0, lam=1.0, critic_lam=None, kl_coef=0.0, whiten_advantages=True)
    x = registry.TokenInputs([rewards], [valid], None, [torch.zeros(2, 8)], alg, model=[model])
    for name in ("reinforce_pp", "ppo"):
        (a,), _ = registry.get(name).token_advantages(x)
        assert close(a[0, [0, 7]], [1.0, 1.0], tol=1e-3), name
        assert close(a[1, :2], [-1.0, -1.0], tol=1e-3), name
        assert float(a[0, 1:7].abs().sum()) == 0.0, name  # tool tokens carry no advantage
    # without the model mask (a single-turn batch) nothing changes: valid is the statistic
    (a,), _ = registry.get("reinforce_pp").token_advantages(
        registry.TokenInputs([rewards], [valid], None, [None], alg)
    )
    assert close(a[1, :2], [-2.0, -2.0], tol=1e-3)
