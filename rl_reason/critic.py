"""PPO's critic: a second LoRA adapter plus a value head, on the policy's own frozen base.

One copy of the base weights serves three roles: the actor (adapter ``default``), the
reference (adapters disabled) and the critic (adapter ``critic`` + ``value_head``). The
critic therefore costs its LoRA matrices, a ``Linear(hidden, 1)`` and activations, not a
second model. ``critic.shared_base: false`` loads a separate base copy instead; it exists so
the memory saving can be measured (bench/ppo_memory.py), not because it trains better.

peft marks only the active adapter's matrices ``requires_grad``; ``Critic.active()`` switches
to the critic adapter for a forward/backward and back to ``default`` afterwards, so actor
and critic gradients never mix even though they share every base layer.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch

from rl_reason.config import CriticConfig, LoraConfig, ModelConfig
from rl_reason.errors import ModelError
from rl_reason.sharding import is_sharded

ADAPTER = "critic"
ACTOR_ADAPTER = "default"


def init_value_head(hidden: int, seed: int) -> torch.nn.Linear:
    """Linear(hidden, 1) whose first outputs are ~0.

    The backbone's final hidden states are RMS-normalised (entries of order 1), so a default
    (Kaiming-uniform) head starts with values of order 1 and random sign: the first value
    losses are large and the first GAE advantages are dominated by that noise. A weight of
    std 0.01/sqrt(hidden) and a zero bias start every value within ~0.01 of 0, the mean
    outcome reward of a policy that is rarely right, and the head still gets gradients.
    """
    head = torch.nn.Linear(hidden, 1)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01 / math.sqrt(hidden), generator=gen)
        head.bias.zero_()
    return head


def _peft_lora_config(lora_cfg: LoraConfig, critic_cfg: CriticConfig, targets=None):
    from peft import LoraConfig as PeftLoraConfig

    r = critic_cfg.r or lora_cfg.r
    # an MoE base: the actor's targets (PEFT wants one set of target_parameters for all adapters)
    target_modules, target_parameters = targets or (lora_cfg.target_modules, None)
    return PeftLoraConfig(
        r=r,
        lora_alpha=lora_cfg.alpha * r // lora_cfg.r if critic_cfg.r else lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=target_modules,
        target_parameters=target_parameters,
        task_type="CAUSAL_LM",
    )


class Critic:
    """Token-level values V(prompt + completion[:t]) for every completion position t."""

    def __init__(self, model, value_head: torch.nn.Linear, *, shared: bool):
        self.model = model  # a peft.PeftModel holding an adapter named "critic"
        self.value_head = value_head
        self.shared = shared

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list[torch.nn.Parameter]:
        lora = [p for n, p in self.model.named_parameters() if f".{ADAPTER}." in n]
        return lora + list(self.value_head.parameters())

    def state_dict(self) -> dict:
        from peft import get_peft_model_state_dict

        adapter = get_peft_model_state_dict(self.model, adapter_name=ADAPTER)
        return {
            "adapter": {k: v.detach().cpu().clone() for k, v in adapter.items()},
            "value_head": {k: v.detach().cpu().clone() for k, v in self.value_head.state_dict().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state["adapter"], adapter_name=ADAPTER)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ModelError(f"critic state has keys this model lacks: {unexpected[:3]}")
        self.value_head.load_state_dict(state["value_head"])

    # ------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The critic adapter on (and trainable) for the duration; the actor's back after."""
        self.model.set_adapter(ADAPTER)
        try:
            yield
        finally:
            if self.shared:
                self.model.set_adapter(ACTOR_ADAPTER)

    def values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int
    ) -> torch.Tensor:
        """(B, completion_len) values; rows are [left-padded prompt | right-padded completion].

        Value t is read at the position that predicts completion token t, i.e. the state
        before the token is chosen. Call it inside ``active()``, and keep the backward pass
        inside too: peft only lets the active adapter's matrices take gradients. Only the
        backbone runs: the critic never needs the vocabulary projection, the largest single
        matmul of a small model.
        """
        backbone = self.model.get_base_model().base_model
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = dict(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        if is_sharded(self.model):
            # FSDP gathers the embeddings and final norm in the root module's forward, which a
            # direct backbone call would skip; read the backbone's output with a hook instead
            # (the head then runs for one position only)
            seen = []
            hook = backbone.register_forward_hook(lambda mod, args, output: seen.append(output))
            try:
                self.model(**kwargs, logits_to_keep=1)
            finally:
                hook.remove()
            out = seen[-1]
        else:
            out = backbone(**kwargs)
        hidden = out.last_hidden_state[:, -(completion_len + 1) : -1, :].float()
        return self.value_head(hidden).squeeze(-1)


def attach_critic(
    policy,
    model_cfg: ModelConfig,
    lora_cfg: LoraConfig,
    critic_cfg: CriticConfig,
    *,
    seed: int,
) -> Critic:
    """Add the critic adapter to the policy's model (or to a separate base copy)."""
    from rl_reason import moe

    hidden = policy.model.get_base_model().config.hidden_size
    peft_cfg = _peft_lora_config(lora_cfg, critic_cfg, moe.adapter_targets(policy.model))
    with torch.random.fork_rng(devices=[]), moe.peft_targets_as_given(policy.model):
        torch.manual_seed(seed + 1)
        if critic_cfg.shared_base:
            policy.model.add_adapter(ADAPTER, peft_cfg)
            policy.model.set_adapter(ACTOR_ADAPTER)
            model = policy.model
        else:
            model = _separate_base(model_cfg, peft_cfg, policy.device)
    head = init_value_head(hidden, seed + 2).to(policy.device)
    return Critic(model, head, shared=critic_cfg.shared_base)


def _separate_base(model_cfg: ModelConfig, peft_cfg, device: torch.device):
    """A second frozen base with only the critic adapter: the memory-hungry alternative."""
    from peft import get_peft_model

    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_base

    base = load_base(model_cfg, resolve_model(model_cfg.name), device)
    return get_peft_model(base, peft_cfg, adapter_name=ADAPTER)


def critic_for(policy, cfg) -> Optional[Critic]:
    """The run's critic when the algorithm needs one (PPO), else None."""
    from rl_reason.algorithms import registry

    if not registry.get(cfg.algorithm.name).needs_critic:
        return None
    return attach_critic(policy, cfg.model, cfg.lora, cfg.critic, seed=cfg.train.seed)
