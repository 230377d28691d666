"""Policy and value losses, aggregations and log-prob helpers (rl_reason/algorithms/losses.py)
against hand-computed values."""

import math

import pytest
import torch

from rl_reason import algorithms as A

T = torch.tensor


def close(a, b, tol=1e-5):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


MASK = T([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
VALS = T([[1.0, 2.0, 3.0, 100.0], [10.0, 100.0, 100.0, 100.0]])


def test_aggregate_modes_hand_values():
    # token mean: (1+2+3+10)/4 = 4
    assert close(A.aggregate(VALS, MASK, "token_mean"), 4.0)
    # seq mean of token means: (2 + 10)/2 = 6
    assert close(A.aggregate(VALS, MASK, "seq_mean_token_mean"), 6.0)
    # constant normaliser: 16 / (2 seqs * 8) = 1
    assert close(A.aggregate(VALS, MASK, "seq_mean_token_sum_norm", norm_len=8), 1.0)
    with pytest.raises(ValueError):
        A.aggregate(VALS, MASK, "sum")


@pytest.mark.parametrize("agg", A.LOSS_AGGREGATIONS)
def test_aggregate_micro_batches_add_up_with_global_counts(agg):
    torch.manual_seed(1)
    v = torch.randn(5, 6)
    m = (torch.rand(5, 6) > 0.3).float()
    m[:, 0] = 1.0
    full = A.aggregate(v, m, agg, norm_len=6)
    n_tok, n_seq = float(m.sum()), 5.0
    parts = sum(
        A.aggregate(v[i], m[i], agg, num_tokens=n_tok, num_seqs=n_seq, norm_len=6)
        for i in ([0, 1], [2], [3, 4])
    )
    assert close(parts, full)


# --------------------------------------------------------------------------- policy loss


def test_policy_loss_unclipped_equals_minus_advantage():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, stats = A.policy_loss(logp, torch.zeros(1, 2), T([2.0]), torch.ones(1, 2))
    assert close(loss, -2.0)
    loss.backward()
    # d/dlogp of -A*exp(logp - old) at ratio 1 is -A, divided by 2 tokens
    assert close(logp.grad, [[-1.0, -1.0]])
    assert float(stats["clip_frac"]) == 0.0


def test_policy_loss_clip_higher():
    # ratio = e^0.5 = 1.6487 on every token
    logp = torch.full((1, 1), 0.5, requires_grad=True)
    old = torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    # positive advantage: clipped to 1 + clip_high
    loss, stats = A.policy_loss(logp, old, T([1.0]), mask, clip_low=0.2, clip_high=0.28)
    assert close(loss, -1.28)
    assert float(stats["clip_frac"]) == 1.0
    loss.backward()
    assert close(logp.grad, [[0.0]])  # clipped: no gradient
    # negative advantage with ratio > 1: the unclipped term is larger, so no clip
    loss, stats = A.policy_loss(logp.detach(), old, T([-1.0]), mask, clip_low=0.2, clip_high=0.28)
    assert close(loss, math.exp(0.5))
    assert float(stats["clip_frac"]) == 0.0
    # ratio e^-0.5 = 0.6065 with negative advantage: clipped at 1 - clip_low = 0.8
    loss, _ = A.policy_loss(torch.full((1, 1), -0.5), old, T([-1.0]), mask, clip_low=0.2, clip_high=0.28)
    assert close(loss, 0.8)


def test_policy_loss_masks_padding_and_token_advantages():
    logp = torch.zeros(2, 3)
    mask = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = T([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    loss, _ = A.policy_loss(logp, torch.zeros(2, 3), adv, mask)
    assert close(loss, -(1 + 2 + 3) / 3)


def test_policy_loss_registry_names_and_unknown():
    assert {"clip", "gspo", "cispo", "sapo"} <= set(A.POLICY_LOSSES)
    with pytest.raises(ValueError, match="known: clip"):
        A.policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), T([1.0]), torch.ones(1, 1), kind="nope")


def _gspo_rows():
    # row 0: log-ratios 0.3, 0.1 and a masked 5.0 -> mean 0.2, s = e^0.2 = 1.22140
    # row 1: log-ratios -0.6, 0, 0 -> mean -0.2, s = e^-0.2 = 0.81873
    old = torch.zeros(2, 3)
    logp = T([[0.3, 0.1, 5.0], [-0.6, 0.0, 0.0]]).requires_grad_(True)
    mask = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    return logp, old, mask


def test_gspo_clips_whole_sequences_at_both_ends():
    logp, old, mask = _gspo_rows()
    # clip 0.1: s0 = 1.2214 > 1.1 with A = +1 -> clipped to -1.1 per token;
    # s1 = 0.8187 < 0.9 with A = -1 -> max(0.8187, 0.9) = 0.9, clipped. token_mean:
    # (2 * -1.1 + 3 * 0.9) / 5 = 0.1; every token clipped, so no gradient at all
    loss, stats = A.policy_loss(logp, old, T([1.0, -1.0]), mask, clip_low=0.1, clip_high=0.1, kind="gspo")
    assert close(loss, 0.1)
    assert float(stats["clip_frac"]) == 1.0
    loss.backward()
    assert close(logp.grad, torch.zeros(2, 3))


def test_gspo_unclipped_gradient_is_the_sequence_ratio_gradient():
    logp, old, mask = _gspo_rows()
    # A = -1 on s0 = 1.2214 and +1 on s1 = 0.8187: the unclipped terms win (no clip).
    # seq_mean_token_mean: per sequence -A s, then the mean over 2 sequences:
    # (1.22140 - 0.81873) / 2 = 0.20134
    adv = T([-1.0, 1.0])
    loss, stats = A.policy_loss(
        logp, old, adv, mask, clip_low=0.1, clip_high=0.1, agg="seq_mean_token_mean", kind="gspo"
    )
    assert close(loss, (math.exp(0.2) - math.exp(-0.2)) / 2)
    assert float(stats["clip_frac"]) == 0.0
    loss.backward()
    # d(-A s)/dlogp_t = -A s / |y|, over 2 sequences: row 0: 1.2214 / 2 / 2 = 0.30535 on its
    # two tokens, 0 on the masked one; row 1: -0.81873 / 3 / 2 = -0.13646
    g0, g1 = math.exp(0.2) / 4, -math.exp(-0.2) / 6
    assert close(logp.grad, [[g0, g0, 0.0], [g1, g1, g1]])
    # the same gradient as differentiating the sequence ratio itself
    x = logp.detach().clone().requires_grad_(True)
    s = A.losses.sequence_ratio(x, old, mask)
    (-(adv * s).mean()).backward()
    assert close(x.grad, logp.grad)


def test_cispo_keeps_the_gradient_of_clipped_tokens():
    # log-ratios 0.5, -0.5, 0 -> r = 1.6487, 0.6065, 1; clip [0.8, 1.28] -> w = 1.28, 0.8, 1
    logp = T([[0.5, -0.5, 0.0]]).requires_grad_(True)
    old = torch.zeros(1, 3)
    loss, stats = A.policy_loss(
        logp, old, T([1.0]), torch.ones(1, 3), clip_low=0.2, clip_high=0.28, kind="cispo"
    )
    assert close(loss, -(1.28 + 0.8 + 1.0) / 3)  # -w A, token mean
    assert close(stats["clip_frac"], 2 / 3)
    loss.backward()
    # -sg(w) A grad logp: the clipped tokens keep a gradient (PPO's clip gives them 0)
    assert close(logp.grad, [[-1.28 / 3, -0.8 / 3, -1.0 / 3]])
    # masked token: out of the loss and the gradient
    logp.grad = None
    loss, _ = A.policy_loss(
        logp, old, T([1.0]), T([[1.0, 1.0, 0.0]]), clip_low=0.2, clip_high=0.28, kind="cispo"
    )
    assert close(loss, -(1.28 + 0.8) / 2)
    loss.backward()
    assert close(logp.grad, [[-0.64, -0.4, 0.0]])


def test_sapo_soft_gate():
    old = torch.zeros(1, 2)
    mask = T([[1.0, 0.0]])
    p = A.LossParams(sapo_tau_pos=1.0, sapo_tau_neg=1.05)
    # r = 1: gate sigmoid(0) = 0.5, value -A * 0.5 * 4 / tau; gradient -A * 4 * 0.25 = -A,
    # the unclipped surrogate's
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = A.policy_loss(logp, old, T([1.0]), mask, kind="sapo", params=p)
    assert close(loss, -2.0)
    loss.backward()
    assert close(logp.grad, [[-1.0, 0.0]])
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = A.policy_loss(logp, old, T([-1.0]), mask, kind="sapo", params=p)
    assert close(loss, 2.0 / 1.05)  # the negative temperature
    loss.backward()
    assert close(logp.grad, [[1.0, 0.0]])
    # r = e^0.5 = 1.6487, A = +1: sigmoid(0.6487) = 0.65672, value -4 * 0.65672 = -2.62689;
    # gradient -4 sigmoid (1 - sigmoid) r = -1.48674 (clip with 0.2 would give 0 here: the
    # gate fades instead of cutting off)
    logp = T([[0.5, 0.0]]).requires_grad_(True)
    loss, stats = A.policy_loss(logp, old, T([1.0]), mask, kind="sapo", params=p)
    assert close(loss, -2.6268890)
    loss.backward()
    assert close(logp.grad, [[-1.4867386, 0.0]])
    assert float(stats["clip_frac"]) == 0.0  # 4 s (1 - s) = 0.90: not damped below half


def test_clip_loss_by_name_equals_the_default():
    logp = T([[0.5, -0.5, 0.1]])
    old = torch.zeros(1, 3)
    a, _ = A.policy_loss(logp, old, T([1.0]), torch.ones(1, 3))
    b, _ = A.policy_loss(logp, old, T([1.0]), torch.ones(1, 3), kind="clip")
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- KL


def test_selective_log_softmax_matches_full():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    idx = torch.randint(0, 11, (3, 5))
    want = torch.log_softmax(logits, -1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    assert close(A.selective_log_softmax(logits, idx), want)


def test_entropy_from_logits():
    # uniform over 4 -> log 4; one-hot-ish -> ~0
    assert close(A.entropy_from_logits(torch.zeros(1, 4)), [math.log(4)])
    assert float(A.entropy_from_logits(T([[100.0, 0.0, 0.0]]))) < 1e-6


# --------------------------------------------------------------------------- batching


def test_value_loss_clipping():
    # V=2, V_old=1, R=0, clip 0.5: clipped V = 1.5 -> max(4, 2.25) / 2 = 2
    loss, stats = A.value_loss(T([[2.0]]), T([[1.0]]), T([[0.0]]), T([[1.0]]), clip=0.5)
    assert close(loss, 2.0) and float(stats["value_clip_frac"]) == 0.0
    # V=2, V_old=1, R=3: unclipped err 1, clipped (1.5-3)^2 = 2.25 -> 1.125
    loss, stats = A.value_loss(T([[2.0]]), T([[1.0]]), T([[3.0]]), T([[1.0]]), clip=0.5)
    assert close(loss, 1.125) and float(stats["value_clip_frac"]) == 1.0
    loss, _ = A.value_loss(T([[2.0]]), T([[1.0]]), T([[3.0]]), T([[1.0]]), clip=None)
    assert close(loss, 0.5)
