"""rl_reason.sharding: which parameters stay out of the shards, and the one-line refusals
(sharded training itself runs under torchrun in test_distributed.py)."""

from __future__ import annotations

import pytest
import torch

from rl_reason import sharding
from rl_reason.errors import ModelError


def _lora_model():
    from peft import LoraConfig, get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = torch.nn.Linear(4, 4)
            self.out = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.q(x))

    return get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["q"]))


def test_adapter_parameters_are_exactly_the_lora_matrices():
    model = _lora_model()
    found = sharding.adapter_parameters(model)
    names = {n for n, p in model.named_parameters() if p in found}
    assert names == {"base_model.model.q.lora_A.default.weight", "base_model.model.q.lora_B.default.weight"}
    assert sharding.is_sharded(model) is False


def test_shard_base_without_processes_is_one_line_error():
    if torch.distributed.is_initialized():  # pragma: no cover
        pytest.skip("a process group is up")
    with pytest.raises(ModelError, match="needs several processes: launch with torchrun"):
        sharding.shard_base(_lora_model(), torch.device("cpu"))
