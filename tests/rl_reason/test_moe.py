"""Mixture-of-experts bases (rl_reason/moe.py) on the offline tiny-random-moe model."""

import pytest
import torch

from rl_reason import moe
from rl_reason.config import load_config
from tests.rl_reason.conftest import ROOT

TINY_MOE = ROOT / "recipes" / "test" / "tiny_moe.yaml"


def moe_cfg(*overrides):
    return load_config(TINY_MOE, list(overrides))


@pytest.fixture()
def moe_policy():
    from rl_reason.policy import load_policy

    cfg = moe_cfg()
    return load_policy(cfg.model, cfg.lora, seed=0)


def trainable_names(policy):
    return {n for n, p in policy.model.named_parameters() if p.requires_grad}


def test_lora_on_attention_and_experts_router_frozen(moe_policy):
    names = trainable_names(moe_policy)
    assert any("self_attn.q_proj.lora_A" in n for n in names)
    # both fused expert weights of both layers carry a LoRA (PEFT nests one wrapper per parameter)
    assert sum("mlp.experts.lora_A" in n for n in names) == 2
    assert sum("mlp.experts.base_layer.lora_A" in n for n in names) == 2
    assert not any("mlp.gate" in n for n in names), "the router is frozen by default"
    r = moe_policy.routing
    assert (r.num_layers, r.num_experts, r.top_k) == (2, 8, 2)
    mem = moe.lora_memory(moe_policy.model)
    assert mem["experts"] > 0 and mem["router"] == 0 and mem["training_total"] == 4 * mem["total"]


def test_train_router_and_experts_off():
    from rl_reason.policy import load_policy

    cfg = moe_cfg("lora.train_router=true")
    names = trainable_names(load_policy(cfg.model, cfg.lora, seed=0))
    assert sum("mlp.gate.lora_A" in n for n in names) == 2
    cfg = moe_cfg("lora.experts=false")
    names = trainable_names(load_policy(cfg.model, cfg.lora, seed=0))
    assert not any("experts" in n or "mlp.gate" in n for n in names)
    assert any("q_proj" in n for n in names)


def test_expert_lora_training_changes_only_adapter_parameters(moe_policy):
    model = moe_policy.model
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.Adam(moe_policy.trainable_parameters(), lr=0.05)
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, base_before[n]), f"base parameter {n} changed"
    changed = {
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])
    }
    assert any("mlp.experts.lora_B" in n for n in changed)
    assert any("mlp.experts.base_layer.lora_B" in n for n in changed)


def test_merged_sampling_matches_the_unmerged_adapter_and_restores_the_base(moe_policy):
    model = moe_policy.model
    with torch.no_grad():  # a non-zero adapter, so merging has something to fold in
        for n, p in model.named_parameters():
            if p.requires_grad and "lora_B" in n:
                p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(len(n)))
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    ids = torch.randint(0, 200, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with moe_policy.reference():
            ref = model(input_ids=ids).logits
        with moe_policy.merged_for_generation():
            merged = model(input_ids=ids).logits
    assert not torch.allclose(plain, ref, atol=1e-3), "the adapter changes the experts' output"
    assert torch.allclose(plain, merged, atol=1e-4)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, base_before[n]), f"merging left {n} changed"


def test_lora_targets_of_a_dense_model_are_the_recipe_s(tiny_policy):
    assert tiny_policy.routing is None
    assert moe.lora_targets(tiny_policy.model, "all-linear", experts=True, train_router=False) == (
        "all-linear",
        None,
    )


# --------------------------------------------------------------------------- routing replay


def _sampled_batch(policy, n_prompts=3, n=2, max_new=6):
    from rl_reason.batching import collate, train_batch
    from rl_reason.rollout import SamplingParams
    from rl_reason.rollout.hf import HFEngine

    tok = policy.tokenizer
    prompts = [tok.encode(f"{a} + {a + 1} = ") for a in range(n_prompts)]
    torch.manual_seed(0)
    rolls = HFEngine(policy, batch_size=4).generate(prompts, n, SamplingParams(max_new_tokens=max_new))
    b = train_batch(
        rolls, torch.ones(len(rolls)), torch.ones(len(rolls), dtype=torch.bool), mask_truncated=False
    )
    return rolls, collate(b, list(range(len(rolls))), tok.pad_token_id, "cpu")


def _used(routing, policy, mb, replay):
    with torch.no_grad(), routing.forward(mb.routed_experts, mb.attention_mask, replay=replay) as calls:
        policy.completion_logprobs(policy.model, mb.input_ids, mb.attention_mask, mb.completion_len)
    B, T = mb.attention_mask.shape
    return torch.stack([c.used.view(B, T, -1) for c in calls], dim=2)  # (B, T, L, k)


def _agreement(used, sampled):
    has = (sampled >= 0).all(-1)  # (B, T, L): positions the sampler routed
    same = torch.sort(used, -1).values == torch.sort(sampled.long(), -1).values
    return float(same.all(-1)[has].float().mean()), int(has.sum())


def test_sampler_records_the_experts_of_every_fed_token(moe_policy):
    rolls, mb = _sampled_batch(moe_policy)
    for r in rolls:
        n = len(r.prompt_ids) + len(r.completion_ids)
        assert r.routed_experts.shape == (n, 2, 2)
        assert (r.routed_experts[:-1] >= 0).all()  # the last sampled token is never fed
        assert (r.routed_experts[-1] == moe.NO_EXPERT).all()
    # the same weights in a full forward route (almost) every token alike: the record is
    # aligned with the micro-batch layout (a shifted one would agree ~2/8 of the time)
    agree, n = _agreement(_used(moe_policy.routing, moe_policy, mb, replay=False), mb.routed_experts)
    assert n > 50 and agree > 0.95, agree


def test_replay_makes_the_update_forward_run_the_sampler_s_experts(moe_policy):
    rolls, mb = _sampled_batch(moe_policy)
    with torch.no_grad():  # the policy moves after sampling, as an update step does
        for name, p in moe_policy.model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    plain, n = _agreement(_used(moe_policy.routing, moe_policy, mb, replay=False), mb.routed_experts)
    replayed, _ = _agreement(_used(moe_policy.routing, moe_policy, mb, replay=True), mb.routed_experts)
    assert plain < 0.95, "the moved policy routes differently without replay"
    assert replayed == 1.0
    # the metrics say the same
    with (
        torch.no_grad(),
        moe_policy.routing.forward(mb.routed_experts, mb.attention_mask, replay=True, measure=True),
    ):
        moe_policy.completion_logprobs(moe_policy.model, mb.input_ids, mb.attention_mask, mb.completion_len)
    m = moe_policy.routing.pop_metrics()
    assert m["moe/routing_agreement"] == 1.0 and m["moe/router_agreement"] < 1.0
    assert sum(m[f"moe/expert{e}/load"] for e in range(8)) == pytest.approx(1.0)
    assert 0 < m["moe/layer0/router_entropy"] < torch.log(torch.tensor(8.0))
    assert 1.0 <= m["moe/layer1/load_max"] <= 8.0


def test_replayed_routing_weights_are_the_router_s_probabilities(moe_policy):
    # replaying the router's own choice changes nothing: same experts, same weights
    _, mb = _sampled_batch(moe_policy, n_prompts=1)
    r = moe_policy.routing
    with torch.no_grad():
        plain = moe_policy.completion_logprobs(
            moe_policy.model, mb.input_ids, mb.attention_mask, mb.completion_len
        )[0]
        own = _used(r, moe_policy, mb, replay=False).to(torch.int16)
        with r.forward(own, mb.attention_mask, replay=True):
            again = moe_policy.completion_logprobs(
                moe_policy.model, mb.input_ids, mb.attention_mask, mb.completion_len
            )[0]
    assert torch.allclose(plain, again, atol=1e-6)


def test_resume_on_the_tiny_moe_is_bitwise_exact(tmp_path):
    """The tiny MoE trains (expert LoRA, GSPO, routing replay), and 2 steps in one go ==
    1 step, then a resume to 2."""
    import json

    from safetensors.torch import load_file

    from rl_reason.cli import main

    common = [
        "checkpoint.every=1",
        "eval.at_start=false",
        "eval.at_end=false",
        "logging.plot=false",
        "rollout.max_new_tokens=8",
        "algorithm.drop_uniform_groups=false",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", str(TINY_MOE), "--run-dir", str(whole), "train.steps=2", *common]) == 0
    assert main(["train", str(TINY_MOE), "--run-dir", str(split), "train.steps=1", *common]) == 0
    assert main(["resume", str(split), "train.steps=2"]) == 0
    want = load_file(whole / "adapter" / "adapter_model.safetensors")
    got = load_file(split / "adapter" / "adapter_model.safetensors")
    assert want.keys() == got.keys() and any("experts" in k for k in want)
    for k in want:
        assert torch.equal(want[k], got[k]), k

    def rows(run):
        out = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if not k.startswith(("time/", "throughput/")) and "seconds" not in k}
            for r in out
        ]

    assert rows(whole) == rows(split)
    trained = [r for r in rows(whole) if r["step"] > 0]
    assert len(trained) == 2 and all(r["policy/grad_norm"] > 0 for r in trained)
    assert all(r["moe/routing_agreement"] == 1.0 for r in trained)  # replay
    assert any(v.abs().sum() > 0 for k, v in want.items() if "experts" in k and "lora_B" in k)


def test_load_balancing_loss_has_a_gradient_through_the_frozen_router(moe_policy):
    _, mb = _sampled_batch(moe_policy, n_prompts=2)
    r = moe_policy.routing
    with r.forward(mb.routed_experts, mb.attention_mask, replay=True, keep_logits=True) as calls:
        moe_policy.completion_logprobs(moe_policy.model, mb.input_ids, mb.attention_mask, mb.completion_len)
    aux = r.aux_loss(calls, mb.attention_mask)
    # Switch loss: E * sum_e f_e P_e is 1.0 when balanced; top-2 of 8 from a random router
    assert 0.5 < float(aux.detach()) < 8.0
    aux.backward()
    # through the hidden states into the attention LoRA below the router (B starts at 0: A has none)
    grads = [p.grad for n, p in moe_policy.model.named_parameters() if "q_proj.lora_B" in n]
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert not any(p.requires_grad for n, p in moe_policy.model.named_parameters() if "mlp.gate" in n)


@pytest.mark.parametrize("engine", ["vllm", "server"])
def test_vllm_engines_refuse_an_moe_policy_in_one_line(moe_policy, tmp_path, engine):
    from rl_reason.config import RolloutConfig
    from rl_reason.errors import ConfigError
    from rl_reason.rollout.factory import make_engine

    cfg = RolloutConfig(engine=engine, servers=["http://127.0.0.1:9"])
    with pytest.raises(ConfigError, match=f"rollout.engine={engine}: .*use rollout.engine=hf") as err:
        make_engine(cfg, moe_policy, tmp_path)
    assert "\n" not in str(err.value)
