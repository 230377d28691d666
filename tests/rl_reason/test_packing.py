"""Packed micro-batches (rl_reason/packing.py) give the padded path's log-probs, gradients and
update: per layout (flat, tree), per attention implementation, and with the block mask built
here instead of transformers' position-id detection."""

import dataclasses

import pytest
import torch

from rl_reason import packing
from rl_reason.batching import TrainBatch, collate

from .test_update import ADV, LENGTHS, fake_rollouts, make_trainer

# Models the equality tests run on; every test below that takes `model_name` runs on each
# (the MoE without routing replay here: replay is tested at the end of the file).
MODELS = ["tiny-random", "tiny-random-moe"]


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
    """Changing one sequence's tokens leaves every other sequence's log-probs bitwise alike (on
    an MoE within float rounding: the experts' batches are made of other tokens then)."""
    p = policy
    # MoE: other tokens change the experts' batches, so sums round differently (measured up
    # to 1.4e-6); a leak across sequences would move these log-probs by orders more
    tol = 0.0 if p.routing is None else 1e-5
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
            assert float((before[1:] - after[1:]).abs().max()) <= tol, how
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
    # Adam's first step is about lr * sign(g): where an expert's gradient is near 0, a difference
    # well within the gradient tolerance moves a weight by a little more (measured 1.1e-5, tree)
    tol = 1e-5 if model_name == "tiny-random" else 3e-5
    for x, y in zip(w_pad, w_pack):
        assert float((x - y).abs().max()) < tol
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


@pytest.mark.parametrize("how", [packing.FLAT, packing.TREE])
def test_chunked_head_equals_the_whole_logits(policy, how, monkeypatch):
    """The log-probs taken a few tokens at a time behind a bypassed head (the default where the
    head is a frozen linear layer) equal the model's own logits path: log-probs, entropies and
    the adapter's gradients; the head is put back after the forward."""
    p = policy
    p.model.train()
    head = packing.head_for_chunks(p.model)
    assert head is not None  # the tiny model takes the chunked path by default
    _, packed = _padded_and_packed(p, how)
    monkeypatch.setattr(packing, "LOGIT_CHUNK", 3)  # several slabs and a ragged last one
    a, ea = packing.completion_logprobs(p.model, packed, 0.7, True)
    assert packing.head_for_chunks(p.model) is head
    with monkeypatch.context() as m:
        m.setattr(packing, "head_for_chunks", lambda model: None)
        b, eb = packing.completion_logprobs(p.model, packed, 0.7, True)
    assert float((a - b).detach().abs().max()) < 1e-5
    assert float((ea - eb).abs().max()) < 1e-5
    params = p.trainable_parameters()
    ga = torch.autograd.grad((a * torch.arange(a.numel()).view_as(a)).sum(), params)
    gb = torch.autograd.grad((b * torch.arange(b.numel()).view_as(b)).sum(), params)
    assert max((x - y).abs().max().item() for x, y in zip(ga, gb)) < 1e-4
    assert max(x.abs().max().item() for x in ga) > 0.1
    with torch.no_grad():  # the frozen pass: no Jacobian kept, same values
        c, _ = packing.completion_logprobs(p.model, packed, 0.7)
    assert float((c - b.detach()).abs().max()) < 1e-5


def test_the_head_is_not_bypassed_where_it_trains_or_is_post_processed(policy):
    base = policy.model.get_base_model()
    base.config.final_logit_softcapping = 30.0  # Gemma-2-like: logits are post-processed
    assert packing.head_for_chunks(policy.model) is None
    base.config.final_logit_softcapping = None
    assert packing.head_for_chunks(policy.model) is not None
    base.get_output_embeddings().weight.requires_grad_(True)  # a trained head
    assert packing.head_for_chunks(policy.model) is None


# --------------------------------------------------------------------------- MoE routing replay


@pytest.mark.parametrize("how", [packing.FLAT, packing.TREE])
def test_replay_on_a_packed_moe_row_runs_the_sampler_s_experts(how):
    """The sampler's experts moved onto the packed row: under replay every routed token runs
    them (agreement 1.0 in the metrics too), and the packed log-probs and gradients equal the
    padded rows' under the same replay."""
    from rl_reason.batching import collate, train_batch
    from rl_reason.config import load_config
    from rl_reason.policy import load_policy
    from rl_reason.rollout import SamplingParams
    from rl_reason.rollout.hf import HFEngine
    from tests.rl_reason.conftest import ROOT

    cfg = load_config(ROOT / "recipes" / "test" / "tiny_moe.yaml", [])
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    tok = policy.tokenizer
    prompts = [tok.encode(f"{a} + {a + 1} = ") for a in range(3)]
    torch.manual_seed(0)
    rolls = HFEngine(policy, batch_size=6).generate(prompts, 2, SamplingParams(max_new_tokens=6))
    b = train_batch(
        rolls, torch.ones(len(rolls)), torch.ones(len(rolls), dtype=torch.bool), mask_truncated=False
    )
    idx = list(range(len(rolls)))
    mb = collate(b, idx, tok.pad_token_id, "cpu")
    packed = packing.pack(b.prompt_ids, b.completion_ids, idx, how, "cpu")
    t = dataclasses.replace(mb, packed=packed)
    sampled = packing.routed_layout(packed, mb.routed_experts, mb.attention_mask)
    assert sampled.shape == (packed.tokens, 2, 2)
    with torch.no_grad():  # the policy moves after sampling, as an update step does
        for name, prm in policy.model.named_parameters():
            if prm.requires_grad and "lora_B" in name:
                prm.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    routing, alg = policy.routing, cfg.algorithm
    assert alg.routing_replay

    def used(replay):
        a = dataclasses.replace(alg, routing_replay=replay)
        with torch.no_grad():
            with routing.forward(
                sampled.unsqueeze(0), torch.ones_like(packed.input_ids), replay=replay
            ) as calls:
                packing.completion_logprobs(policy.model, packed)
            packing.moe_logprobs(routing, policy.model, t, a, 1.0, False, measure=True)
        return torch.stack([c.used for c in calls], dim=1), routing.pop_metrics()  # (N, L, k)

    has = (sampled >= 0).all(-1)
    for replay, want in ((False, False), (True, True)):
        got, metrics = used(replay)
        same = (torch.sort(got, -1).values == torch.sort(sampled.long(), -1).values).all(-1)[has]
        assert bool(same.all()) == want
        assert (metrics["moe/routing_agreement"] == 1.0) == want
    model = policy.model
    model.train()
    lp_pad, _ = routing.logprobs(policy, model, mb, alg, 1.0, False, False)
    lp_pack, _ = packing.moe_logprobs(routing, model, t, alg, 1.0, False, False)
    m = mb.mask
    assert float(((lp_pad - lp_pack).detach().abs() * m).max()) < 1e-5
    params = policy.trainable_parameters()
    ga = torch.autograd.grad((lp_pad * m).sum(), params, allow_unused=True)
    gb = torch.autograd.grad((lp_pack * m).sum(), params, allow_unused=True)
    pairs = [(x, y) for x, y in zip(ga, gb) if x is not None]
    assert max((x - y).abs().max().item() for x, y in pairs) < 1e-4
    assert max(x.abs().max().item() for x, _ in pairs) > 1e-3


def test_one_update_step_on_the_moe_with_replay_packed_equals_padded(tmp_path):
    """tiny_moe.yaml (GSPO, routing replay) with sampled rollouts: the packed update's adapter
    is the padded one's."""
    from rl_reason.config import load_config
    from rl_reason.trainer import Trainer
    from tests.rl_reason.conftest import ROOT

    from .test_update import QUIET

    def trainer(name, *extra):
        cfg = load_config(ROOT / "recipes" / "test" / "tiny_moe.yaml", QUIET + ["train.lr=0.05", *extra])
        return Trainer(cfg, tmp_path / name)

    padded = trainer("padded", "train.packing=false")
    packed = trainer("packed", "train.packing=true", "train.micro_batch_tokens=40")
    assert packed.learner.packing == packing.TREE and padded.learner.packing is None
    from rl_reason.rollout import SamplingParams

    prompts = padded._prompt_ids(padded.records[:2])
    torch.manual_seed(0)
    rolls = padded.engine.generate(prompts, 4, SamplingParams(max_new_tokens=8))
    adv = torch.tensor([1.0, -0.5, 0.3, -0.8, 0.9, -1.2, 0.4, 0.9])
    g_pad, w_pad, s_pad = _grads_and_adapter_with(padded, rolls, adv)
    g_pack, w_pack, s_pack = _grads_and_adapter_with(packed, rolls, adv)
    assert s_pack["policy/micro_batches"] >= 2
    assert s_pack["moe/routing_agreement"] == 1.0 == s_pad["moe/routing_agreement"]
    scale = max(float(x.abs().max()) for x in g_pad)
    assert scale > 0
    for x, y in zip(g_pad, g_pack):
        assert float((x - y).abs().max()) < 1e-4 * max(scale, 1.0)
    for x, y in zip(w_pad, w_pack):
        assert float((x - y).abs().max()) < 1e-5


def _grads_and_adapter_with(trainer, rollouts, adv):
    from .test_update import capture_grads

    seen = capture_grads(trainer)
    stats, _ = trainer.update(rollouts, adv, torch.ones(len(rollouts), dtype=torch.bool), step=1)
    assert len(seen) == 1
    return seen[0], [p.detach().clone() for p in trainer.params], stats
