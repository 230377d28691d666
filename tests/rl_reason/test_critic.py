"""rl_reason.critic: the value head starts near zero; the critic's LoRA config follows the
recipe (the critic's training is in test_ppo.py)."""

from __future__ import annotations

import math

import torch

from rl_reason import critic
from rl_reason.config import load_config


def test_value_head_starts_near_zero_and_is_seeded():
    head = critic.init_value_head(576, seed=3)
    assert head.weight.shape == (1, 576) and float(head.bias.detach()) == 0.0
    std = float(head.weight.detach().std())
    assert 0.8 * 0.01 / math.sqrt(576) < std < 1.2 * 0.01 / math.sqrt(576)
    # RMS-normalised hidden states (entries of order 1) give first values within ~0.05 of 0
    with torch.no_grad():
        values = head(torch.randn(256, 576))
    assert float(values.abs().max()) < 0.05
    assert torch.equal(head.weight, critic.init_value_head(576, seed=3).weight)
    assert not torch.equal(head.weight, critic.init_value_head(576, seed=4).weight)


def test_critic_lora_rank_and_scale_follow_the_recipe():
    cfg = load_config(None, ["lora.r=8", "lora.alpha=16"])
    same = critic._peft_lora_config(cfg.lora, cfg.critic)
    assert (same.r, same.lora_alpha) == (8, 16)
    cfg = load_config(None, ["lora.r=8", "lora.alpha=16", "critic.r=32"])
    own = critic._peft_lora_config(cfg.lora, cfg.critic)
    assert (own.r, own.lora_alpha) == (32, 64)  # the same alpha / r scale as the actor
