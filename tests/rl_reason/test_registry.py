"""Adding an algorithm is one registration: a toy one registered here trains two steps of the
tiny recipe, and config validation, the trainer and the critic read the registry."""

import json

import pytest
import torch

from rl_reason.algorithms import registry
from rl_reason.config import load_config
from rl_reason.errors import ConfigError
from rl_reason.trainer import Trainer

from .conftest import TINY

QUIET = ["eval.at_start=false", "eval.at_end=false", "logging.plot=false", "checkpoint.every=0"]


def batch_baseline(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Toy: the reward minus the batch mean, no groups."""
    return rewards.float() - rewards.float().mean()


@pytest.fixture
def toy():
    calls = []

    def fn(rewards, group_ids):
        calls.append(rewards.clone())
        return batch_baseline(rewards, group_ids)

    registry.register(
        registry.AlgorithmSpec("toy_baseline", "sequence", fn, default_loss_agg="seq_mean_token_mean")
    )
    yield calls
    registry.unregister("toy_baseline")


def test_a_registered_toy_algorithm_trains_two_steps(tmp_path, toy):
    cfg = load_config(
        TINY,
        QUIET
        + [
            "algorithm.name=toy_baseline",
            "train.steps=2",
            "rollout.num_generations=1",
            "algorithm.drop_uniform_groups=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.critic is None
    before = [p.detach().clone() for p in trainer.params]
    trainer.run()
    assert len(toy) == 2  # the registered function is the one the loop ran, once a step
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all("policy/grad_norm" in r for r in rows)
    moved = max(float((p - q).abs().max()) for p, q in zip(trainer.params, before))
    assert moved > 0  # the adapter learnt from the toy advantages
    ro = [json.loads(x) for x in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    step1 = [r for r in ro if r["step"] == 1]
    want = batch_baseline(torch.tensor([r["total"] for r in step1]), None)
    assert [r["advantage"] for r in step1] == pytest.approx(want.tolist(), abs=1e-6)


def test_unknown_algorithm_names_the_registered_ones():
    with pytest.raises(ConfigError, match="algorithm.name.*grpo.*reinforce_pp"):
        load_config(TINY, ["algorithm.name=nope"])


def test_the_registry_answers_what_the_loop_asks():
    assert registry.get("ppo").needs_critic and not registry.get("grpo").needs_critic
    assert registry.get("dr_grpo").default_loss_agg == "seq_mean_token_sum_norm"
    assert registry.get("grpo").needs_groups and not registry.get("reinforce_pp").needs_groups

    class Alg:
        def __init__(self, name, kl_coef, kl_in_reward=False):
            self.name, self.kl_coef, self.kl_in_reward, self.loss_agg = name, kl_coef, kl_in_reward, "auto"

    assert registry.kl_in_reward(Alg("reinforce_pp", 0.1))
    assert not registry.kl_in_reward(Alg("reinforce_pp", 0.0))
    assert not registry.kl_in_reward(Alg("ppo", 0.1)) and registry.kl_in_reward(Alg("ppo", 0.1, True))
    assert not registry.kl_in_reward(Alg("grpo", 0.1, True))  # grpo: KL is a loss term
    assert registry.loss_aggregation(Alg("dr_grpo", 0.0)) == "seq_mean_token_sum_norm"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("grpo"))
