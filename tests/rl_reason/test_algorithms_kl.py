"""KL estimators (rl_reason/algorithms/kl.py) against hand-computed values."""

import math

import pytest
import torch

from rl_reason import algorithms as A

T = torch.tensor


def close(a, b, tol=1e-5):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


def test_kl_estimators_hand_values():
    logp, ref = T([0.0, -1.0]), T([-1.0, 0.0])  # log ratio +1, -1
    assert close(A.kl_estimate(logp, ref, "k1"), [1.0, -1.0])
    assert close(A.kl_estimate(logp, ref, "k2"), [0.5, 0.5])
    # k3 = e^{-lr} - 1 + lr: e^-1 - 1 + 1 = 0.36788; e^1 - 1 - 1 = 0.71828
    assert close(A.kl_estimate(logp, ref, "k3"), [math.exp(-1), math.e - 2])
    assert close(A.kl_estimate(ref, ref, "k3"), [0.0, 0.0])
    with pytest.raises(ValueError):
        A.kl_estimate(logp, ref, "k4")


def test_kl_k3_is_unbiased_estimate_of_true_kl():
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    true_kl = float((p * (p / q).log()).sum())
    # expectation under p of k1 and k3 equals KL(p||q)
    k1 = A.kl_estimate(p.log(), q.log(), "k1")
    k3 = A.kl_estimate(p.log(), q.log(), "k3")
    assert close((p * k1).sum(), true_kl)
    assert close((p * k3).sum(), true_kl)


# --------------------------------------------------------------------------- logits helpers
