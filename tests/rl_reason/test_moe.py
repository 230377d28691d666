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


def test_tiny_moe_trains_a_few_steps(tmp_path):
    import json

    from rl_reason.cli import main

    run = tmp_path / "moe"
    args = ["train", str(TINY_MOE), "--run-dir", str(run), "train.steps=2", "eval.at_start=false"]
    args += ["eval.at_end=false", "logging.plot=false", "checkpoint.every=0"]
    assert main(args + ["algorithm.drop_uniform_groups=false"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["step"] > 0]
    assert len(steps) == 2 and all(r["policy/grad_norm"] > 0 for r in steps)
    assert (run / "adapter" / "adapter_config.json").exists()
