"""vLLM and mixture-of-experts bases with LoRA: what the installed vLLM can do.

Measured with vllm 0.32 (CPU build): its CPU LoRA backend (``PunicaWrapperCPU``) has no
fused-MoE kernels (``add_lora_fused_moe`` and ``moe_lora_align_block_size`` are the base
class's ``NotImplementedError``), so an MoE base with a LoRA cannot sample there; the trainer
refuses ``rollout.engine: vllm | server`` on an MoE base in one line naming ``hf``
(rl_reason.moe.vllm_refusal). When a vLLM release implements them, the first test fails: lift
the refusal then and add a log-prob match test like test_vllm_engine.py's.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vllm


def test_vllm_cpu_has_no_fused_moe_lora():
    from vllm.lora.punica_wrapper.punica_base import PunicaWrapperBase
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    for name in ("add_lora_fused_moe", "moe_lora_align_block_size"):
        assert getattr(PunicaWrapperCPU, name) is getattr(PunicaWrapperBase, name), name


def test_the_trainer_refuses_vllm_on_an_moe_base(tmp_path):
    from rl_reason.config import LoraConfig, ModelConfig, RolloutConfig
    from rl_reason.errors import ConfigError
    from rl_reason.model_zoo import build_tiny_random_moe
    from rl_reason.policy import load_policy
    from rl_reason.rollout.factory import make_engine

    build_tiny_random_moe(tmp_path / "moe", hidden_size=128)  # head_dim 32, as vLLM's CPU needs
    policy = load_policy(
        ModelConfig(name=str(tmp_path / "moe"), dtype="float32", device="cpu"),
        LoraConfig(r=4, alpha=8, target_modules="all-linear"),
        seed=0,
    )
    with pytest.raises(ConfigError, match="use rollout.engine=hf"):
        make_engine(RolloutConfig(engine="vllm"), policy, tmp_path)
