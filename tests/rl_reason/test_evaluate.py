import math

import pytest

from rl_reason.evaluate import length_stats, mean_pass_at_k, pass_at_k


def test_pass_at_k_hand_values():
    # n=5, c=2, k=1: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4 (= c/n)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=4: every draw includes the right one
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(8, 0, 8) == 0.0
    # n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)


def test_pass_at_k_large_n_no_overflow():
    v = pass_at_k(2000, 1, 100)
    assert v == pytest.approx(100 / 2000)


def test_pass_at_k_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 8 samples"):
        pass_at_k(4, 1, 8)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_mean_pass_at_k_and_lengths():
    out = mean_pass_at_k([(4, 0), (4, 2), (4, 4)], [1, 2, 8])
    assert out[1] == pytest.approx((0 + 0.5 + 1) / 3)
    # C(2,2)/C(4,2) = 1/6 -> 5/6 for the middle problem
    assert out[2] == pytest.approx((0 + 5 / 6 + 1) / 3)
    assert 8 not in out
    assert length_stats([1, 2, 9]) == {"tokens_mean": 4.0, "tokens_median": 2.0}
