"""The update step of the trainer on hand-made rollouts: micro-batching by a token budget,
masking truncated completions, several epochs over stored old log-probs, KL to the reference
(the adapter switched off) and dropping groups whose rewards are all equal."""

import pytest
import torch

from rewards.runner import CheckerSpec, Scorer
from rl_reason import algorithms, update
from rl_reason.batching import TrainBatch, collate
from rl_reason.config import load_config
from rl_reason.rollout import Rollout
from rl_reason.trainer import Trainer

from .conftest import TINY

# the spies below wrap optimizer.step, which torch's LR scheduler notices and warns about
pytestmark = pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")

QUIET = ["eval.at_start=false", "eval.at_end=false", "logging.plot=false", "checkpoint.every=0"]


def make_trainer(tmp_path, name, *overrides):
    cfg = load_config(TINY, QUIET + list(overrides))
    return Trainer(cfg, tmp_path / name)


def fake_rollouts(trainer, lengths, truncated=(), n=4, seed=0):
    """len(lengths) // n groups of n completions of random tokens, prompt-major."""
    g = torch.Generator().manual_seed(seed)
    prompts = trainer._prompt_ids(trainer.records[: len(lengths) // n])
    out = []
    for i, L in enumerate(lengths):
        ids = torch.randint(10, 120, (L,), generator=g).tolist()
        out.append(
            Rollout(
                prompt_index=i // n,
                prompt_ids=prompts[i // n],
                completion_ids=ids,
                completion_text="",
                finish_reason="length" if i in truncated else "stop",
            )
        )
    return out


def capture_grads(trainer):
    """Record the LoRA gradients each optimizer step sees (before it changes the weights)."""
    seen = []
    step = trainer.optimizer.step

    def recording_step(*a, **k):
        seen.append([p.grad.detach().clone() for p in trainer.params])
        return step(*a, **k)

    trainer.optimizer.step = recording_step
    return seen


LENGTHS = [3, 9, 5, 12, 7, 2, 11, 6]
ADV = torch.tensor([1.0, -0.5, 0.3, -0.8, 0.9, -1.2, 0.4, 0.9])


def grads_after_update(trainer, rollouts, adv):
    seen = capture_grads(trainer)
    stats, _ = trainer.update(rollouts, adv, torch.ones(len(rollouts), dtype=torch.bool), step=1)
    assert len(seen) == 1
    return seen[0], stats


def assert_same_grads(a, b, tol=1e-5):
    assert len(a) == len(b)
    scale = max(float(x.abs().max()) for x in a)
    assert scale > 0  # the comparison means something
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=tol * scale, rtol=1e-4), float((x - y).abs().max())


@pytest.mark.parametrize("share", [True, False])
def test_micro_batches_accumulate_to_the_one_batch_gradient(tmp_path, share):
    whole = make_trainer(tmp_path, "whole", "train.micro_batch_tokens=100000", f"train.share_prompt={share}")
    split = make_trainer(tmp_path, "split", "train.micro_batch_tokens=40", f"train.share_prompt={share}")
    for p, q in zip(whole.params, split.params):  # same seed, same LoRA initialisation
        assert torch.equal(p, q)
    g_whole, s_whole = grads_after_update(whole, fake_rollouts(whole, LENGTHS), ADV)
    g_split, s_split = grads_after_update(split, fake_rollouts(split, LENGTHS), ADV)
    assert s_whole["policy/micro_batches"] == 1
    assert s_split["policy/micro_batches"] >= 4
    assert_same_grads(g_whole, g_split)
    assert s_whole["policy/entropy"] == pytest.approx(s_split["policy/entropy"], rel=1e-5)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_masked_truncated_completion_adds_nothing(tmp_path, agg):
    """With mask_truncated, a batch with a truncated completion has the gradient of the batch
    without it; without the mask, the same completion changes the gradient."""
    cut = 3  # the longest completion hit max_new_tokens
    keep = [i for i in range(len(LENGTHS)) if i != cut]
    masked = make_trainer(tmp_path, "m", "algorithm.mask_truncated=true", f"algorithm.loss_agg={agg}")
    g_masked, _ = grads_after_update(masked, fake_rollouts(masked, LENGTHS, truncated={cut}), ADV)
    ref = make_trainer(tmp_path, "r", f"algorithm.loss_agg={agg}")
    rolls = fake_rollouts(ref, LENGTHS, truncated={cut})
    g_without, _ = grads_after_update(ref, [rolls[i] for i in keep], ADV[keep])
    assert_same_grads(g_masked, g_without)
    plain = make_trainer(tmp_path, "p", f"algorithm.loss_agg={agg}")
    g_plain, _ = grads_after_update(plain, fake_rollouts(plain, LENGTHS, truncated={cut}), ADV)
    assert any(not torch.allclose(x, y, atol=1e-6) for x, y in zip(g_plain, g_without))


def test_epochs_reuse_the_stored_pre_update_logprobs(tmp_path, monkeypatch):
    t = make_trainer(tmp_path, "e", "algorithm.epochs=3", "train.micro_batch_tokens=100000", "train.lr=0.05")
    calls = []
    real = algorithms.policy_loss

    def spy(logp, old, *a, **k):
        calls.append((logp.detach().clone(), old.clone()))
        return real(logp, old, *a, **k)

    monkeypatch.setattr(algorithms, "policy_loss", spy)
    seen = capture_grads(t)
    lr_before = t.scheduler.get_last_lr()[0]
    t.update(fake_rollouts(t, LENGTHS), ADV, torch.ones(len(LENGTHS), dtype=torch.bool), step=1)
    assert len(calls) == 3 and len(seen) == 3  # one micro-batch, one optimizer step per epoch
    mask = torch.zeros_like(calls[0][0])
    for r, L in enumerate(sorted(LENGTHS, reverse=True)):
        mask[r, :L] = 1
    (lp0, old0), (lp1, old1), (lp2, old2) = calls
    assert torch.equal(old0, old1) and torch.equal(old1, old2)  # stored once, before the update
    assert torch.allclose(lp0 * mask, old0 * mask, atol=1e-5)  # epoch 1: ratio 1
    assert (((lp1 - old1) * mask).abs().max()) > 1e-3  # later epochs: the policy has moved
    assert (((lp2 - lp1) * mask).abs().max()) > 1e-4
    assert t.scheduler.get_last_lr()[0] == lr_before  # the schedule steps once per training step


def test_kl_is_against_the_adapter_switched_off(tmp_path):
    t = make_trainer(tmp_path, "k", "algorithm.kl_coef=0.1", "train.lr=0.05")
    keep = torch.ones(len(LENGTHS), dtype=torch.bool)
    rolls = fake_rollouts(t, LENGTHS)
    first, _ = t.update(rolls, ADV, keep, step=1)
    assert first["policy/kl"] == pytest.approx(0.0, abs=1e-7)  # LoRA B = 0: policy == base
    # the next update's logged KL is k3 between the policy as it is now and the same model
    # with the adapter switched off, averaged over completion tokens
    tb = TrainBatch(
        prompt_ids=[r.prompt_ids for r in rolls],
        completion_ids=[r.completion_ids for r in rolls],
        advantages=ADV,
        loss_masks=[[1.0] * len(r.completion_ids) for r in rolls],
    )
    mb = collate(tb, list(range(len(rolls))), t.policy.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        lp = update.logprobs(t.learner, t.policy.model, mb)[0]
        with t.policy.reference():
            ref = update.logprobs(t.learner, t.policy.model, mb)[0]
    want = float((algorithms.kl_estimate(lp, ref, "k3") * mb.mask).sum() / mb.mask.sum())
    second, _ = t.update(rolls, ADV, keep, step=2)
    assert want > 1e-4
    assert second["policy/kl"] == pytest.approx(want, rel=1e-3)


def test_uniform_groups_are_dropped_and_an_all_uniform_step_learns_nothing(tmp_path):
    t = make_trainer(tmp_path, "u")
    t.scorer.close()
    t.scorer = Scorer(
        [CheckerSpec(name="regex", params={"pattern": "[0-9]", "mode": "fraction"})], timeout_s=5, workers=0
    )
    texts = {0: ["ab", "cd", "ef", "gh"], 1: ["1", "a", "12", "b"]}  # group 0 all 0: uniform

    def generate(prompts, n, sampling, texts=texts):
        rolls = fake_rollouts(t, [4] * (len(prompts) * n))
        for i, r in enumerate(rolls):
            r.completion_text = texts[r.prompt_index % 2][i % n]
        return rolls

    t.engine.generate = generate
    kept = []
    update = t.update

    def spy(rollouts, advantages, keep, step):
        kept.append(keep.tolist())
        return update(rollouts, advantages, keep, step)

    t.update = spy
    m = t.train_step(1)
    assert kept[0] == [False] * 4 + [True] * 4 + [False] * 4 + [True] * 4
    assert m["groups/kept_frac"] == 0.5
    texts[1] = ["x", "y", "z", "w"]  # now every group is uniform
    before = [p.detach().clone() for p in t.params]
    m = t.train_step(2)
    assert m["policy/skipped"] == 1.0 and m["groups/kept_frac"] == 0.0
    assert all(torch.equal(p, q) for p, q in zip(before, t.params))
    t.scorer.close()
