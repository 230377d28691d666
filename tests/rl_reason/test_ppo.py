"""PPO's critic on the shared base, REINFORCE++, and the sampler/trainer log-prob check."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rl_reason.cli import main

from .conftest import TINY

# every completion is paid 1.0, so the value target is 1 at every token and the critic's
# progress is visible in a few steps (the tiny model's real rewards are ~0.03 and noisy)
CONST = 'rewards.checkers=[{name: "tests.rewards._checkers:const"}]'
QUIET = ["logging.plot=false", "eval.at_start=false", "eval.at_end=false"]


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _train(run_dir, *overrides):
    assert main(["train", str(TINY), "--run-dir", str(run_dir), *QUIET, *overrides]) == 0
    return _rows(run_dir)


def test_value_loss_falls(tmp_path):
    rows = _train(tmp_path / "ppo", "algorithm.name=ppo", "train.steps=5", "critic.lr=0.01", CONST)
    losses = [r["critic/value_loss"] for r in rows]
    # V starts at ~0 and the return is 1: 0.5 * 1^2 at first
    assert losses[0] == pytest.approx(0.5, abs=0.02)
    assert losses[-1] < 0.5 * losses[0], losses
    values = [r["critic/values_mean"] for r in rows]
    assert values[-1] > values[0] + 0.3, values


def test_critic_shares_the_base_and_warmup_leaves_the_actor_alone(tmp_cfg_ppo):
    from rl_reason.critic import ADAPTER
    from rl_reason.trainer import Trainer

    cfg, run_dir = tmp_cfg_ppo("critic.warmup_steps=2", "train.steps=2", CONST)
    trainer = Trainer(cfg, run_dir)
    model = trainer.policy.model
    assert trainer.critic.model is model  # one base: no second copy of the weights
    base_params = [n for n, _ in model.named_parameters() if "lora_" not in n]
    assert all(".critic." not in n and ".default." not in n for n in base_params)
    actor_before = {k: v.clone() for k, v in trainer.policy.adapter_state().items()}
    critic_before = trainer.critic.state_dict()
    trainer.run()
    # warm-up: the critic trained, the actor did not
    for k, v in trainer.policy.adapter_state().items():
        assert torch.equal(v, actor_before[k]), k
    after = trainer.critic.state_dict()
    assert not torch.equal(after["value_head"]["bias"], critic_before["value_head"]["bias"])
    assert any(not torch.equal(after["adapter"][k], critic_before["adapter"][k]) for k in after["adapter"])
    assert model.active_adapter == "default"
    # the run's adapter/ holds only the actor; the critic is saved beside it
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert saved and not any(ADAPTER in k for k in saved)
    assert (run_dir / "critic.pt").exists()
    rows = _rows(run_dir)
    assert all(r.get("policy/warmup_skip") == 1.0 for r in rows)


@pytest.fixture()
def tmp_cfg_ppo(tiny_cfg, tmp_path):
    def make(*overrides):
        cfg = tiny_cfg("algorithm.name=ppo", "critic.lr=0.01", *QUIET, *overrides)
        return cfg, tmp_path / "run"

    return make


def test_ppo_resume_restores_critic_exactly(tmp_path):
    """2 steps + resume to 4 equals 4 straight steps: actor adapter, critic and metrics."""
    common = ["algorithm.name=ppo", "critic.lr=0.01", "checkpoint.every=2"]
    ref = tmp_path / "ref"
    _train(ref, *common, "train.steps=4")
    part = tmp_path / "part"
    _train(part, *common, "train.steps=2")
    assert main(["resume", str(part), "train.steps=4"]) == 0
    a, b = (
        load_file(ref / "adapter" / "adapter_model.safetensors"),
        load_file(part / "adapter" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = torch.load(ref / "critic.pt"), torch.load(part / "critic.pt")
    for section in ("adapter", "value_head"):
        assert all(torch.equal(ca[section][k], cb[section][k]) for k in ca[section]), section
    ra, rb = _rows(ref), _rows(part)
    assert [r["critic/value_loss"] for r in ra] == [r["critic/value_loss"] for r in rb]


def test_reinforce_pp_logs_whitened_token_advantages(tmp_path):
    run = tmp_path / "rpp"
    rows = _train(run, "algorithm.name=reinforce_pp", "algorithm.kl_coef=0.05", "train.steps=2")
    assert all("policy/kl" in r for r in rows)
    assert "critic/value_loss" not in rows[0]
    rollouts = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    step1 = [r for r in rollouts if r["step"] == 1]
    # every completion takes part (no group filter) and advantages are centred over the batch
    assert all(r["in_update"] for r in step1)
    advs = [r["advantage"] for r in step1]
    assert len(set(round(a, 6) for a in advs)) > 1


def test_hf_sampler_logprobs_match_the_trainer(tmp_path):
    """The HF engine samples from the live adapter: its log-probs equal the trainer's."""
    rows = _train(tmp_path / "g", "train.steps=2")
    for r in rows:
        assert r["rollout/logprob_diff_max"] < 1e-3, r["rollout/logprob_diff_max"]


def test_truncated_importance_weights_are_logged_and_near_one_for_the_hf_engine(tmp_path):
    """is_cap turns on per-token IS weights; the hf engine samples the trainer's own policy,
    so the weights are 1 up to float rounding (a vLLM sampler is checked in tests/vllm)."""
    rows = _train(tmp_path / "is", "train.steps=2", "algorithm.is_cap=2.0")
    weights = [r["policy/is_weight_mean"] for r in rows if "policy/is_weight_mean" in r]
    assert weights and all(abs(w - 1.0) < 1e-3 for w in weights), weights
