"""Packed micro-batches (rl_reason/packing.py) give the padded path's log-probs, gradients and
update: per layout (flat, tree), per attention implementation, and with the block mask built
here instead of transformers' position-id detection."""

import pytest
import torch

from rl_reason import packing
from rl_reason.batching import TrainBatch, collate

from .test_update import ADV, LENGTHS, fake_rollouts, make_trainer

# Models the equality tests run on. The lead extends this (e.g. "tiny-random-moe") once the
# model zoo builds it; every test below that takes `model_name` runs on each.
MODELS = ["tiny-random"]


@pytest.fixture(params=MODELS)
def model_name(request):
    return request.param


@pytest.fixture()
def policy(model_name, tiny_cfg):
    from rl_reason.policy import load_policy

    cfg = tiny_cfg(f"model.name={model_name}")
    p = load_policy(cfg.model, cfg.lora, seed=0)
    with torch.no_grad():
        for prm in p.trainable_parameters():
            prm.normal_(0, 0.05)  # a non-trivial adapter (LoRA B starts at 0)
    return p


PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], [40, 41, 42, 43]]
# (prompt, completion): groups share a prompt; lengths differ so the padded path pads
ROWS = [(0, [20, 21, 22, 23]), (0, [24, 25]), (1, [30, 31, 32]), (1, [33]), (2, [50, 51, 52, 53, 54, 55])]


def _batch():
    return TrainBatch(
        prompt_ids=[PROMPTS[p] for p, _ in ROWS],
        completion_ids=[c for _, c in ROWS],
        advantages=torch.zeros(len(ROWS)),
        loss_masks=[[1.0] * len(c) for _, c in ROWS],
    )


def _padded_and_packed(p, how):
    b = _batch()
    idx = list(range(len(ROWS)))
    mb = collate(b, idx, p.tokenizer.pad_token_id, "cpu")
    return mb, packing.pack(b.prompt_ids, b.completion_ids, idx, how, "cpu")


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("how", [packing.FLAT, packing.TREE])
@pytest.mark.parametrize("own_mask", [False, True], ids=["transformers-mask", "our-mask"])
def test_packed_logprobs_and_grads_equal_the_padded_path(policy, impl, how, own_mask, monkeypatch):
    if own_mask:  # the fallback for a model whose code does not detect packed position ids
        monkeypatch.setattr(packing, "model_builds_packed_masks", lambda model: False)
    p = policy
    p.model.set_attn_implementation(impl)
    p.model.train()
    mb, packed = _padded_and_packed(p, how)
    if how == packing.TREE:
        assert packed.tokens == sum(map(len, PROMPTS)) + sum(len(c) for _, c in ROWS)  # prompts once
    a, ea = p.completion_logprobs(p.model, mb.input_ids, mb.attention_mask, mb.completion_len, 0.7, True)
    b, eb = packing.completion_logprobs(p.model, packed, 0.7, True)
    m = mb.mask
    assert a.shape == b.shape
    assert ((a - b).abs() * m).max() < 1e-5
    assert ((ea - eb).abs() * m).max() < 1e-5
    assert float((b.detach() * (1 - m)).abs().sum()) == 0.0  # padding slots hold zeros
    params = p.trainable_parameters()
    ga = torch.autograd.grad((a * m).sum(), params)
    gb = torch.autograd.grad((b * m).sum(), params)
    assert max((x - y).abs().max().item() for x, y in zip(ga, gb)) < 1e-4
    assert max(x.abs().max().item() for x in ga) > 0.1  # the comparison is not between zeros


def test_a_completion_cannot_see_another_sequence(policy):
    """Changing one sequence's tokens leaves every other sequence's log-probs bitwise alike."""
    p = policy
    b = _batch()
    idx = list(range(len(ROWS)))
    with torch.no_grad():
        for how in (packing.FLAT, packing.TREE):
            before = packing.completion_logprobs(
                p.model, packing.pack(b.prompt_ids, b.completion_ids, idx, how, "cpu")
            )[0]
            changed = [list(c) for c in b.completion_ids]
            changed[0] = [99, 98, 97, 96]  # row 0 shares its prompt with row 1
            after = packing.completion_logprobs(
                p.model, packing.pack(b.prompt_ids, changed, idx, how, "cpu")
            )[0]
            assert torch.equal(before[1:], after[1:]), how
            assert not torch.equal(before[0], after[0])


def test_split_respects_the_budget_and_counts_a_shared_prompt_once():
    prompts = [[1] * 10] * 4 + [[2] * 10] * 4
    comps = [[3] * 5] * 8
    tree = packing.split(prompts, comps, 45, tree=True)
    assert tree == [[0, 1, 2, 3, 4], [5, 6, 7]]  # 10+4*5 = 30, +10+5 = 45, then a new one
    flat = packing.split(prompts, comps, 45, tree=False)
    assert flat == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert packing.split([[1] * 50], [[2] * 10], 40, tree=False) == [[0]]  # too long: on its own
    for mb in tree:
        packed = packing.pack(prompts, comps, mb, packing.TREE, "cpu")
        assert packed.tokens <= 45


def test_auto_packs_the_tiny_model_and_false_never_does(policy):
    assert packing.layout("auto", True, policy.model) == packing.TREE
    assert packing.layout("auto", False, policy.model) == packing.FLAT
    assert packing.layout(False, True, policy.model) is None
    policy.model.config.layer_types = ["sliding_attention", "full_attention"]  # Gemma-3-like
    assert packing.layout("auto", True, policy.model) == packing.FLAT
    policy.model.config.layer_types = ["full_attention", "full_attention"]
    assert packing.layout("auto", True, policy.model) == packing.TREE
    policy.model.config._attn_implementation = "flash_attention_2"  # no 4D mask: flat layout
    assert packing.layout(True, True, policy.model) == packing.FLAT


def _grads_and_adapter(trainer, rollouts):
    from .test_update import capture_grads

    seen = capture_grads(trainer)
    stats, _ = trainer.update(rollouts, ADV, torch.ones(len(rollouts), dtype=torch.bool), step=1)
    assert len(seen) == 1
    return seen[0], [p.detach().clone() for p in trainer.params], stats


@pytest.mark.parametrize("share", [True, False])
def test_one_update_step_packed_equals_padded(tmp_path, model_name, share):
    """The whole update (split, frozen pass, loss, optimizer step): same gradient, same adapter."""
    common = [f"model.name={model_name}", f"train.share_prompt={share}", "train.lr=0.05"]
    padded = make_trainer(tmp_path, "padded", *common, "train.packing=false")
    packed = make_trainer(tmp_path, "packed", *common, "train.packing=true", "train.micro_batch_tokens=60")
    assert padded.learner.packing is None
    assert packed.learner.packing == (packing.TREE if share else packing.FLAT)
    w0 = [p.detach().clone() for p in padded.params]
    g_pad, w_pad, s_pad = _grads_and_adapter(padded, fake_rollouts(padded, LENGTHS))
    g_pack, w_pack, s_pack = _grads_and_adapter(packed, fake_rollouts(packed, LENGTHS))
    assert s_pack["policy/micro_batches"] >= 2  # the budget split the packed batch too
    scale = max(float(x.abs().max()) for x in g_pad)
    assert scale > 0
    for x, y in zip(g_pad, g_pack):
        assert float((x - y).abs().max()) < 1e-4 * max(scale, 1.0)
    assert max(float((w - v).abs().max()) for w, v in zip(w_pad, w0)) > 1e-3  # the step moved it
    for x, y in zip(w_pad, w_pack):
        assert float((x - y).abs().max()) < 1e-5
    assert s_pad["policy/entropy"] == pytest.approx(s_pack["policy/entropy"], rel=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("how", [packing.FLAT, packing.TREE])
def test_packed_equals_padded_on_cuda(tiny_cfg, how):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from rl_reason.policy import load_policy

    cfg = tiny_cfg("model.device=cuda")
    p = load_policy(cfg.model, cfg.lora, seed=0)
    with torch.no_grad():
        for prm in p.trainable_parameters():
            prm.normal_(0, 0.05)
    b = _batch()
    idx = list(range(len(ROWS)))
    mb = collate(b, idx, p.tokenizer.pad_token_id, "cuda")
    packed = packing.pack(b.prompt_ids, b.completion_ids, idx, how, "cuda")
    a, _ = p.completion_logprobs(p.model, mb.input_ids, mb.attention_mask, mb.completion_len)
    c, _ = packing.completion_logprobs(p.model, packed)
    m = mb.mask
    assert ((a - c).abs() * m).max() < 1e-4  # TF32 / kernel choice on the GPU
    params = p.trainable_parameters()
    ga = torch.autograd.grad((a * m).sum(), params)
    gc = torch.autograd.grad((c * m).sum(), params)
    assert max((x - y).abs().max().item() for x, y in zip(ga, gc)) < 1e-3
