"""The update's parts on their own, with the single-process LocalDist and a stand-in policy:
no Trainer, no model download, no patched optimizer."""

import types

import pytest
import torch

from rl_reason import algorithms
from rl_reason.algorithms import registry
from rl_reason.batching import MicroBatch, collate, micro_batches, train_batch
from rl_reason.config import AlgorithmConfig
from rl_reason.distributed import LocalDist, reduce_metrics
from rl_reason.rollout import Rollout
from rl_reason.update import Counts, Frozen, Learner, actor_step, global_counts, token_advantages


def rollouts(lengths, truncated=()):
    return [
        Rollout(
            prompt_index=i // 2,
            prompt_ids=[1, 2, 3][: 1 + i % 3],
            completion_ids=list(range(10, 10 + L)),
            completion_text="",
            finish_reason="length" if i in truncated else "stop",
        )
        for i, L in enumerate(lengths)
    ]


class TwoRanks(LocalDist):
    """A stand-in for two ranks: the other rank's values are given."""

    world = 2
    sharded = True

    def __init__(self, other):
        super().__init__()
        self.other = other

    def gather_objects(self, obj):
        return [obj, self.other]

    def max(self, value):
        return float(max(value, self.other))


def test_reductions_are_declared_not_read_from_names():
    d = TwoRanks([1.0, 4.0, 3.0])  # the other rank's values of the sorted keys a, b, c
    out = reduce_metrics(d, {"a": 3.0, "b": 2.0, "c": 1.0}, {"a": "sum", "b": "max"})
    assert out == {"a": 4.0, "b": 4.0, "c": 2.0}
    assert reduce_metrics(LocalDist(), {"x/errors": 2.0}, {}) == {"x/errors": 2.0}


def test_placeholder_row_and_padding_micro_batches():
    rolls = rollouts([3, 5, 2, 4])
    keep = torch.zeros(4, dtype=torch.bool)
    b = train_batch(rolls, torch.ones(4), keep, mask_truncated=False)
    assert not b.real and len(b) == 1 and b.loss_masks == [[0.0] * 3]
    mbs = micro_batches(b, 256, 0, TwoRanks(3))  # the other rank has 3 micro-batches
    assert len(mbs) == 3 and [m.padding for m in mbs] == [False, True, True]
    assert all(float(m.valid.sum()) == 0 and float(m.mask.sum()) == 0 for m in mbs)


def test_truncated_completion_is_out_of_the_loss_but_valid():
    rolls = rollouts([3, 5], truncated={1})
    b = train_batch(rolls, torch.tensor([1.0, -1.0]), torch.ones(2, dtype=torch.bool), mask_truncated=True)
    mb = collate(b, [0, 1], 0, "cpu")
    assert mb.mask.sum(-1).tolist() == [3.0, 0.0] and mb.valid.sum(-1).tolist() == [3.0, 5.0]
    c = global_counts([mb], b.loss_masks, LocalDist())
    assert (c.tokens, c.seqs, c.valid, c.valid_local) == (3.0, 1.0, 8.0, 8.0)


def test_token_advantages_run_the_registered_reinforce_pp_function():
    rolls = rollouts([3, 5, 2, 4])
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0])
    b = train_batch(rolls, rewards, torch.ones(4, dtype=torch.bool), mask_truncated=False)
    mbs = [collate(b, [1, 3], 0, "cpu"), collate(b, [0, 2], 0, "cpu")]
    mbs.append(mbs[0].without_loss())  # a padding micro-batch must not overwrite any row
    alg = types.SimpleNamespace(name="reinforce_pp", kl_coef=0.0, kl_in_reward=False, gamma=1.0)
    n = len(mbs)
    out, returns, seq_adv = token_advantages(
        registry.get("reinforce_pp"),
        alg,
        mbs,
        Frozen([None] * n, [None] * n, [None] * n),
        LocalDist(),
        4,
        b.rows,
    )
    want = algorithms.reinforce_pp_advantages([m.advantages for m in mbs], [m.valid for m in mbs])
    for got, w in zip(out, want):
        assert torch.equal(got.advantages, w)
    assert returns == [None] * n
    # whitened over all tokens of the batch: mean 0, std 1
    v = torch.cat([m.valid.flatten() for m in mbs])
    a = torch.cat([m.advantages.flatten() for m in out])
    assert float((a * v).sum() / v.sum()) == pytest.approx(0.0, abs=1e-6)
    assert seq_adv[0] > seq_adv[1]  # the rewarded sequence's mean advantage is the larger
    assert float(seq_adv.abs().min()) > 0


class StubPolicy:
    """log-probs are a trainable (B, T) table: the actor step's gradient is known by hand."""

    def __init__(self, B, T):
        self.table = torch.nn.Parameter(torch.zeros(B, T))

    def completion_logprobs(self, model, input_ids, attention_mask, completion_len, temp, with_entropy):
        return self.table[: input_ids.shape[0], :completion_len] - 1.0, None


@pytest.mark.parametrize("loss_name", ["clip", "gspo", "cispo", "sapo"])
def test_actor_step_is_the_clipped_surrogate_gradient(loss_name):
    # at ratio 1 every registered policy loss has the plain policy-gradient gradient
    rolls = rollouts([3, 5])
    adv = torch.tensor([1.0, -2.0])
    b = train_batch(rolls, adv, torch.ones(2, dtype=torch.bool), mask_truncated=False)
    mb = collate(b, [0, 1], 0, "cpu")
    policy = StubPolicy(2, 5)
    cfg = types.SimpleNamespace(
        # the real section, so fields added later (algorithm.policy_loss, ...) have defaults
        algorithm=AlgorithmConfig(
            name="grpo",
            kl_coef=0.0,
            kl_in_reward=False,
            loss_agg="auto",
            is_cap=0.0,
            clip_low=0.2,
            clip_high=0.2,
            epochs=1,
            policy_loss=loss_name,
        ),
        rollout=types.SimpleNamespace(temperature=1.0, max_new_tokens=5, max_staleness=0),
        train=types.SimpleNamespace(max_grad_norm=1e9),
    )
    opt = torch.optim.SGD([policy.table], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    lr = Learner(cfg, LocalDist(), policy, torch.nn.Module(), [policy.table], opt, sched)
    counts = global_counts([mb], b.loss_masks, lr.dist)
    stats = actor_step(lr, [mb], Frozen([None], [None], [None]), counts)
    # token_mean over 8 tokens, ratio 1: d loss / d logp = -A / 8, so SGD adds A / 8
    want = mb.mask * adv[:, None] / 8.0
    assert torch.allclose(policy.table.detach(), want)
    assert stats["policy/grad_norm"] == pytest.approx(float(want.norm()), rel=1e-6)
    assert stats["policy/clip_frac"] == 0.0 and stats["policy/micro_batches"] == 1.0
    assert isinstance(mb, MicroBatch) and isinstance(counts, Counts)
    cfg.algorithm.policy_loss = "nope"  # the name is what picks the function
    with pytest.raises(ValueError, match="unknown policy loss 'nope'"):
        actor_step(lr, [mb], Frozen([None], [None], [None]), counts)
