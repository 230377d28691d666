"""Rollout engines: the protocol every engine meets, and the records they return.

Engines take prompts as token ids (data.py renders chat templates once, so every engine
sees the same tokens) and return one Rollout per completion, grouped prompt-major: the n
completions of prompt 0, then the n of prompt 1, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()
    greedy: bool = False

    @classmethod
    def from_config(cls, rollout_cfg) -> "SamplingParams":
        """A recipe's ``rollout:`` sampling settings."""
        r = rollout_cfg
        return cls(r.max_new_tokens, r.temperature, r.top_p, r.top_k, tuple(r.stop))


@dataclass
class Rollout:
    prompt_index: int  # index into the prompt list given to generate()
    prompt_ids: list[int]
    completion_ids: list[int]  # the sampled tokens, EOS included when it was sampled
    completion_text: str  # decoded completion, cut at a stop string if one matched
    sample_logprobs: list[float] = field(default_factory=list)  # sampler's log-prob per token
    # "stop" (EOS or stop string), "length" (hit max_new_tokens), "tool_limit" (a tool call
    # past rollout.max_tool_calls ended it)
    finish_reason: str = "length"
    # multi-turn rollouts (rl_reason.rollout.multiturn): 1 on the model's tokens, 0 on tool
    # tokens spliced in (empty: every token is the model's); the turns, in order
    loss_mask: list[int] = field(default_factory=list)
    turns: list = field(default_factory=list)  # rl_reason.rollout.multiturn.Turn

    # MoE bases, hf engine: (prompt + completion tokens, layers, top_k) experts the sampler ran
    # (rl_reason/moe.py); what routing replay gives the update's forwards
    routed_experts: Optional[Any] = None
    adapter_version: int = 0  # adapter version it was sampled with (the oldest, when partial)
    # rollout.partial: the version that sampled each completion token (empty: all adapter_version)
    token_versions: list[int] = field(default_factory=list)
    # multi-turn rollouts: the text the checkers grade, the final model turn (the environment's
    # ``answer`` of it; "" when the rollout ended on a tool turn). None: completion_text
    answer_text: Optional[str] = None

    def model_mask(self) -> list[int]:
        """1 on every token the model sampled, 0 on tool output."""
        return list(self.loss_mask) if self.loss_mask else [1] * len(self.completion_ids)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingParams) -> list[Rollout]:
        """n completions for each prompt, prompt-major."""

    def sync_weights(self) -> None:
        """Make the next generate() sample from the trainer's current adapter."""

    def close(self) -> None: ...
