"""Mixture-of-experts bases (rl_reason/moe.py) on the offline tiny-random-moe model, and on
the tiny models of the other families (Mixtral, OLMoE, DeepSeek-V3) where a test is cheap."""

import pytest
import torch

from rl_reason import moe
from rl_reason.config import load_config
from tests.rl_reason.conftest import ROOT

TINY_MOE = ROOT / "recipes" / "test" / "tiny_moe.yaml"


def moe_cfg(*overrides):
    return load_config(TINY_MOE, list(overrides))


# the tiny model of every family rl-reason treats as an MoE base (rl_reason/model_zoo.py)
FAMILIES = ["tiny-random-moe", "tiny-random-mixtral", "tiny-random-olmoe", "tiny-random-deepseek-v3"]


@pytest.fixture()
def moe_policy():
    from rl_reason.policy import load_policy

    cfg = moe_cfg()
    return load_policy(cfg.model, cfg.lora, seed=0)


@pytest.fixture(params=FAMILIES)
def family_policy(request):
    from rl_reason.policy import load_policy

    cfg = moe_cfg(f"model.name={request.param}")
    return load_policy(cfg.model, cfg.lora, seed=0)


def trainable_names(policy):
    return {n for n, p in policy.model.named_parameters() if p.requires_grad}


def test_lora_on_attention_and_experts_router_frozen(family_policy):
    names = trainable_names(family_policy)
    attention = "q_a_proj" if "deepseek" in family_policy.model.config.model_type else "q_proj"
    assert any(f"self_attn.{attention}.lora_A" in n for n in names)
    # both fused expert weights of both MoE layers carry a LoRA (PEFT nests one wrapper per parameter)
    assert sum("mlp.experts.lora_A" in n for n in names) == 2
    assert sum("mlp.experts.base_layer.lora_A" in n for n in names) == 2
    assert not any(".mlp.gate." in n for n in names), "the router is frozen by default"
    r = family_policy.routing
    assert (r.num_layers, r.num_experts, r.top_k) == (2, 8, 2)
    mem = moe.lora_memory(family_policy.model)
    assert mem["experts"] > 0 and mem["router"] == 0 and mem["training_total"] == 4 * mem["total"]
    # every expert gets rank r: PEFT's rewrite of v4 targets (twice the rank on gate_up_proj) is off
    ranks = {
        p.shape[0] for n, p in family_policy.model.named_parameters() if "mlp.experts" in n and "lora_A" in n
    }
    assert ranks == {4 * 8}  # r x E rows


def test_deepseek_v3_keeps_lora_on_its_dense_mlp_and_shared_expert():
    from rl_reason.policy import load_policy

    cfg = moe_cfg("model.name=tiny-random-deepseek-v3")
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    names = trainable_names(policy)
    for linear in ("layers.0.mlp.gate_proj", "layers.0.mlp.down_proj", "layers.1.mlp.shared_experts.up_proj"):
        assert any(f"{linear}.lora_A" in n for n in names), linear
    assert sum("mlp.experts.lora_A" in n for n in names) == 2  # layers 1 and 2, not the dense 0
    # the sigmoid router: a random score-correction bias (it takes part in the choice), frozen
    gates = policy.routing.routers
    assert all(float(g.e_score_correction_bias.abs().sum()) > 0 for g in gates)
    cfg = moe_cfg("model.name=tiny-random-deepseek-v3", "lora.experts=false")
    names = trainable_names(load_policy(cfg.model, cfg.lora, seed=0))
    assert not any("mlp.experts" in n for n in names)
    assert any("shared_experts.gate_proj.lora_A" in n for n in names)


def test_an_unregistered_moe_family_is_treated_as_dense(monkeypatch, moe_policy):
    monkeypatch.delitem(moe.FAMILIES, "qwen3_moe")
    assert not moe.is_moe(moe_policy.model) and moe.attach(moe_policy.model) is None
    monkeypatch.setitem(moe.FAMILIES, "qwen3_moe", moe.SOFTMAX)
    assert moe.routers(moe_policy.model) == moe_policy.routing.routers


def test_train_router_and_experts_off():
    from rl_reason.policy import load_policy

    cfg = moe_cfg("lora.train_router=true")
    names = trainable_names(load_policy(cfg.model, cfg.lora, seed=0))
    assert sum("mlp.gate.lora_A" in n for n in names) == 2
    cfg = moe_cfg("lora.experts=false")
    names = trainable_names(load_policy(cfg.model, cfg.lora, seed=0))
    assert not any("experts" in n or "mlp.gate" in n for n in names)
    assert any("q_proj" in n for n in names)


def test_expert_lora_training_changes_only_adapter_parameters(family_policy):
    model = family_policy.model
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    base_before |= {n: b.detach().clone() for n, b in model.named_buffers()}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.Adam(family_policy.trainable_parameters(), lr=0.05)
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in [*model.named_parameters(), *model.named_buffers()]:
        if not p.requires_grad:
            assert torch.equal(p, base_before[n]), f"base parameter {n} changed"
    changed = {
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])
    }
    assert any("mlp.experts.lora_B" in n for n in changed)
    assert any("mlp.experts.base_layer.lora_B" in n for n in changed)


# Mixtral and OLMoE fuse their experts as Qwen3-MoE does: merging is the same code path
@pytest.mark.parametrize("family_policy", ["tiny-random-moe", "tiny-random-deepseek-v3"], indirect=True)
def test_merged_sampling_matches_the_unmerged_adapter_and_restores_the_base(family_policy):
    moe_policy = family_policy
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


def _check_the_record(policy, rolls, mb):
    for r in rolls:
        n = len(r.prompt_ids) + len(r.completion_ids)
        assert r.routed_experts.shape == (n, 2, 2)
        assert (r.routed_experts[:-1] >= 0).all()  # the last sampled token is never fed
        assert (r.routed_experts[-1] == moe.NO_EXPERT).all()
    # the same weights in a full forward route (almost) every token alike: the record is
    # aligned with the micro-batch layout (a shifted one would agree ~2/8 of the time)
    agree, n = _agreement(_used(policy.routing, policy, mb, replay=False), mb.routed_experts)
    assert n > 50 and agree > 0.95, agree


def _check_replayed_weights(policy, mb):
    # replaying the router's own choice changes nothing: same experts, same weights (softmax,
    # renormalised or not; DeepSeek-V3: sigmoid, renormalised, times routed_scaling_factor)
    r = policy.routing
    with torch.no_grad():
        plain = policy.completion_logprobs(policy.model, mb.input_ids, mb.attention_mask, mb.completion_len)[
            0
        ]
        own = _used(r, policy, mb, replay=False).to(torch.int16)
        with r.forward(own, mb.attention_mask, replay=True):
            again = policy.completion_logprobs(
                policy.model, mb.input_ids, mb.attention_mask, mb.completion_len
            )[0]
    assert torch.allclose(plain, again, atol=1e-6)


def test_replay_makes_the_update_forward_run_the_sampler_s_experts(family_policy):
    """Per family, on one sampled batch: the sampler records every fed token's experts, aligned
    with the micro-batch; replaying the router's own choice gives its own weights (the same
    log-probs); after the policy moves, replay runs exactly the sampler's experts."""
    moe_policy = family_policy
    rolls, mb = _sampled_batch(moe_policy)
    _check_the_record(moe_policy, rolls, mb)
    _check_replayed_weights(moe_policy, mb)
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


SHORT = [
    "eval.at_start=false",
    "eval.at_end=false",
    "logging.plot=false",
    "rollout.prompts_per_step=2",
    "rollout.num_generations=2",
    "rollout.max_new_tokens=6",
    "algorithm.drop_uniform_groups=false",
    "train.steps=2",
]


def _metrics(run):
    import json

    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "name",
    [
        # tiny-random-moe trains in the resume test above; Mixtral and OLMoE route through the
        # same softmax adapter as it does, so their runs are in make test-slow
        pytest.param("tiny-random-mixtral", marks=pytest.mark.slow),
        pytest.param("tiny-random-olmoe", marks=pytest.mark.slow),
        "tiny-random-deepseek-v3",
    ],
)
def test_two_training_steps_on_each_family(tmp_path, name):
    """GSPO with routing replay and the load-balancing loss, 2 steps: the expert adapters move,
    the update forwards ran the sampler's experts."""
    from safetensors.torch import load_file

    from rl_reason.cli import main

    run = tmp_path / "run"
    args = ["train", str(TINY_MOE), "--run-dir", str(run), f"model.name={name}", *SHORT]
    assert main([*args, "algorithm.router_aux_coef=0.01"]) == 0
    trained = [r for r in _metrics(run) if r["step"] > 0]
    assert len(trained) == 2 and all(r["policy/grad_norm"] > 0 for r in trained)
    assert all(r["moe/routing_agreement"] == 1.0 for r in trained)
    assert all(0 < r["moe/layer1/router_entropy"] < float(torch.log(torch.tensor(8.0))) for r in trained)
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "experts" in k and "lora_B" in k)


def test_ppo_critic_trains_on_an_moe_base(tmp_path):
    """PPO's critic shares the MoE base (its adapter takes the actor's targets, experts
    included, as PEFT requires): 2 steps, the value head and the critic's adapter move."""
    from rl_reason.trainer import Trainer

    const = 'rewards.checkers=[{name: "tests.rewards._checkers:const"}]'
    cfg = moe_cfg("algorithm.name=ppo", "critic.lr=0.01", const, *SHORT)
    trainer = Trainer(cfg, tmp_path / "run")
    before = trainer.critic.state_dict()
    trainer.run()
    after = trainer.critic.state_dict()
    assert not torch.equal(after["value_head"]["weight"], before["value_head"]["weight"])
    moved = [k for k in after["adapter"] if not torch.equal(after["adapter"][k], before["adapter"][k])]
    assert any("experts" in k for k in moved) and any("q_proj" in k for k in moved)
    assert not any("mlp.gate" in k for k in after["adapter"]), "the critic's router stays frozen too"
    rows = _metrics(tmp_path / "run")
    values = [r["critic/values_mean"] for r in rows]
    assert values[-1] > values[0] + 0.05, values  # V starts at ~0, every return is 1
    assert all(r["moe/routing_agreement"] == 1.0 for r in rows)


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


def test_a_saved_deepseek_v3_adapter_loads_back_as_saved(tmp_path):
    """PEFT rewrites an MoE's LoRA targets when it loads a saved adapter too: eval
    (load_saved_policy) and a teacher adapter load it with the targets it was saved with, so
    every saved tensor comes back, with its shape and value."""
    from peft import get_peft_model_state_dict

    from rl_reason.policy import load_policy, load_saved_policy

    cfg = moe_cfg("model.name=tiny-random-deepseek-v3")
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.01)
    policy.save_adapter(tmp_path / "adapter")
    want = get_peft_model_state_dict(policy.model)
    loaded = load_saved_policy(cfg.model, str(tmp_path / "adapter"))
    got = get_peft_model_state_dict(loaded.model)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].shape == want[k].shape and torch.equal(got[k], want[k]), k
