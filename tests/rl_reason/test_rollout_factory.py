"""rollout.engine picks the engine (rl_reason/rollout/factory.py); refusals are one line."""

from types import SimpleNamespace

import pytest

from rl_reason.config import RolloutConfig
from rl_reason.errors import ConfigError
from rl_reason.rollout.factory import make_engine


def test_hf_engine_with_the_recipe_batch_size(tiny_policy, tmp_path):
    from rl_reason.rollout.hf import HFEngine

    engine = make_engine(RolloutConfig(engine="hf", generation_batch_size=3), tiny_policy, tmp_path)
    assert isinstance(engine, HFEngine) and engine.batch_size == 3


def test_colocated_vllm_with_a_sharded_base_is_refused(tiny_policy, tmp_path):
    with pytest.raises(ConfigError, match="rollout.engine=server, or train.fsdp=false"):
        make_engine(RolloutConfig(engine="vllm"), tiny_policy, tmp_path, lockstep=object())


@pytest.mark.parametrize("engine", ["vllm", "server"])
def test_vllm_engines_refuse_an_moe_base(engine, tmp_path):
    moe_policy = SimpleNamespace(routing=object())  # what load_policy sets on an MoE base
    with pytest.raises(ConfigError, match="use rollout.engine=hf"):
        make_engine(RolloutConfig(engine=engine, servers=["http://127.0.0.1:1"]), moe_policy, tmp_path)
