"""rl_reason/algorithms/offpolicy.py: importance weights against the sampler's log-probs."""

import math
from types import SimpleNamespace

import pytest
import torch

from rl_reason.algorithms import offpolicy

LN = math.log
# token ratios exp(logp - behaviour): row 0 [2, 4, 0.5]; row 1 [0.25, 0.25, pad]
LOGP = torch.tensor([[LN(2), LN(4), LN(0.5)], [LN(0.25), LN(0.25), 0.0]])
BEHAVIOUR = torch.zeros(2, 3)
VALID = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
# geometric means: row 0 (2 * 4 * 0.5) ** (1/3) = 4 ** (1/3) = 1.5874; row 1 0.25


def test_sequence_ratio_is_the_geometric_mean_over_valid_tokens():
    g = offpolicy.sequence_ratio(LOGP, BEHAVIOUR, VALID)
    assert g.tolist() == pytest.approx([4 ** (1 / 3), 0.25])


def test_token_truncate_caps_each_token():
    w = offpolicy.token_truncate(LOGP, BEHAVIOUR, VALID, cap=3.0, low=0.5, high=2.0)
    assert w.weights.tolist() == [pytest.approx([2.0, 3.0, 0.5]), pytest.approx([0.25, 0.25, 1.0])]
    assert w.clipped.tolist() == [[False, True, False], [False, False, False]]
    assert not w.masked.any()


def test_seq_truncate_clamps_the_sequence_ratio_into_the_band():
    w = offpolicy.seq_truncate(LOGP, BEHAVIOUR, VALID, cap=0.0, low=0.5, high=1.5)
    assert w.weights.tolist() == [pytest.approx([1.5] * 3), pytest.approx([0.5] * 3)]
    assert w.clipped.tolist() == [[True, True, True], [True, True, False]]
    inside = offpolicy.seq_truncate(LOGP, BEHAVIOUR, VALID, cap=0.0, low=0.1, high=2.0)
    assert inside.weights[0].tolist() == pytest.approx([4 ** (1 / 3)] * 3) and not inside.clipped.any()


def test_seq_mask_drops_a_sequence_outside_the_band():
    w = offpolicy.seq_mask(LOGP, BEHAVIOUR, VALID, cap=0.0, low=0.5, high=2.0)
    assert w.weights.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert w.masked.tolist() == [[False, False, False], [True, True, False]]
    capped = offpolicy.seq_mask(LOGP, BEHAVIOUR, VALID, cap=3.0, low=0.5, high=2.0)
    assert capped.weights.tolist() == [pytest.approx([2.0, 3.0, 0.5]), [0.0, 0.0, 0.0]]
    assert capped.clipped.tolist() == [[False, True, False], [False, False, False]]


def test_an_unset_cap_is_2_for_asynchronous_runs_and_off_for_synchronous_ones():
    alg = SimpleNamespace(is_cap=None, is_correction="token_truncate", is_band_low=0.5, is_band_high=2.0)
    assert offpolicy.effective_is_cap(alg, 0) == 0.0
    assert offpolicy.effective_is_cap(alg, 1) == offpolicy.effective_is_cap(alg, 3) == 2.0
    assert offpolicy.correction(alg, LOGP, BEHAVIOUR, VALID, max_staleness=0) is None  # K=0 as before
    w = offpolicy.correction(alg, LOGP, BEHAVIOUR, VALID, max_staleness=1)
    ref = offpolicy.token_truncate(LOGP, BEHAVIOUR, VALID, cap=2.0, low=0.5, high=2.0)
    assert torch.equal(w.weights, ref.weights) and float(w.weights.max()) <= 2.0
    alg.is_cap = 0.0  # set by the recipe: off, whatever the staleness
    assert offpolicy.correction(alg, LOGP, BEHAVIOUR, VALID, max_staleness=1) is None
    alg.is_cap = 5.0
    assert offpolicy.effective_is_cap(alg, 1) == 5.0


def test_correction_follows_the_recipe():
    alg = SimpleNamespace(is_cap=0.0, is_correction="token_truncate", is_band_low=0.5, is_band_high=2.0)
    assert offpolicy.correction(alg, LOGP, BEHAVIOUR, VALID) is None  # off, as before
    assert offpolicy.correction(alg, LOGP, None, VALID) is None  # no sampler log-probs
    alg.is_correction = "seq_mask"
    assert offpolicy.correction(alg, LOGP, BEHAVIOUR, VALID).masked.any()
    assert set(offpolicy.names()) >= {"token_truncate", "seq_truncate", "seq_mask"}


def test_weights_against_a_deliberately_stale_adapter(tiny_policy):
    """Sample with one adapter, change it, score with the new one: the weights are the ratio
    to the *sampler's* log-probs, not 1, and the cap clips exactly the tokens above it."""
    from rl_reason.batching import collate, train_batch
    from rl_reason.rollout import SamplingParams
    from rl_reason.rollout.hf import HFEngine

    policy = tiny_policy
    torch.manual_seed(0)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    rollouts = HFEngine(policy).generate(prompts, 2, SamplingParams(max_new_tokens=6))
    batch = train_batch(
        rollouts, torch.ones(len(rollouts)), torch.ones(len(rollouts), dtype=torch.bool), mask_truncated=False
    )
    mb = collate(batch, list(range(len(batch))), policy.tokenizer.pad_token_id, "cpu")

    def trainer_logp():
        with torch.no_grad():
            return policy.completion_logprobs(
                policy.model, mb.input_ids, mb.attention_mask, mb.completion_len
            )[0]

    fresh = offpolicy.token_truncate(trainer_logp(), mb.sample_logp, mb.valid, cap=1.5, low=0.5, high=2.0)
    on = mb.valid.bool()
    assert (fresh.weights[on] - 1).abs().max() < 1e-3  # same adapter: ratio 1

    with torch.no_grad():  # the trainer moves on: version 1, while the batch is from version 0
        g = torch.Generator().manual_seed(1)
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    logp = trainer_logp()
    stale = offpolicy.token_truncate(logp, mb.sample_logp, mb.valid, cap=1.5, low=0.5, high=2.0)
    ratio = torch.exp(logp - mb.sample_logp)
    assert (stale.weights[on] - 1).abs().max() > 0.05
    assert torch.allclose(stale.weights[on], ratio[on].clamp(max=1.5))
    assert torch.equal(stale.clipped[on], ratio[on] > 1.5) and stale.clipped.any()
    assert float(stale.weights[on].max()) == pytest.approx(1.5)
