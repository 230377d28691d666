"""The records between the rollouts and the update: a TrainBatch of kept sequences, split by a
token budget into collated MicroBatches (rows of [left-padded prompt | right-padded completion]).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch

from rl_reason.rollout import Rollout


@dataclasses.dataclass
class TrainBatch:
    """Sequences selected for the update, with everything the loss needs."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    advantages: torch.Tensor  # (N,) group advantages, or rewards for token-level algorithms
    loss_masks: list[list[float]]  # per completion token: 1 = in the loss
    sample_logprobs: Optional[list[list[float]]] = None  # the sampler's, when it reported them
    real: bool = True  # False: a placeholder row on a rank with nothing to learn from
    rows: list[int] = dataclasses.field(default_factory=list)  # index of each row in the rollouts
    # MoE, hf engine: each row's (prompt + completion, layers, top_k) sampled experts (moe.py)
    routed_experts: Optional[list[torch.Tensor]] = None
    # per completion token: 1 = sampled by the model, 0 = tool output (multi-turn); None: all model
    model_masks: Optional[list[list[float]]] = None

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def lengths(self) -> list[int]:
        return [len(p) + len(c) for p, c in zip(self.prompt_ids, self.completion_ids)]


@dataclasses.dataclass(frozen=True)
class MicroBatch:
    """One collated micro-batch. Token-level algorithms replace ``advantages`` with a (B, T)
    tensor through ``dataclasses.replace``; nothing else changes after collation."""

    index: tuple[int, ...]  # rows of the TrainBatch
    input_ids: torch.Tensor  # (B, P + C)
    attention_mask: torch.Tensor
    mask: torch.Tensor  # (B, C) 1.0 on tokens in the policy loss
    valid: torch.Tensor  # (B, C) 1.0 on every completion token (rewards, returns, critic)
    sample_logp: Optional[torch.Tensor]  # (B, C) the sampler's log-probs, when reported
    advantages: torch.Tensor  # (B,) or (B, C)
    completion_len: int
    # each distinct prompt once, and which one every row uses (prefix sharing)
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    row_prompt: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    padding: bool = False  # an empty micro-batch that only keeps ranks in step
    packed: Optional[Any] = None  # rl_reason.packing.Packed: the same rows as one packed row
    routed_experts: Optional[torch.Tensor] = None  # (B, P + C, layers, top_k), moe.layout
    model: Optional[torch.Tensor] = None  # (B, C) 1.0 on the model's tokens (None: every valid one)

    def without_loss(self) -> "MicroBatch":
        """A copy that adds nothing to any loss or metric (sharded runs pad ranks with fewer
        micro-batches with a one-row one, so every rank runs the same forwards)."""
        return dataclasses.replace(
            self,
            mask=torch.zeros_like(self.mask),
            valid=torch.zeros_like(self.valid),
            advantages=torch.zeros_like(self.advantages),
            padding=True,
        )


def train_batch(
    rollouts: Sequence[Rollout], advantages: torch.Tensor, keep: torch.Tensor, *, mask_truncated: bool
) -> TrainBatch:
    """The kept rollouts as a TrainBatch; a rank that keeps none gets one placeholder row with
    nothing in the loss (it must still join every all-reduce)."""
    idx = [i for i in range(len(rollouts)) if keep[i]]
    dummy = not idx
    if dummy:
        idx = [0]
    masks = []
    multi_turn = any(rollouts[i].loss_mask for i in idx)
    model_masks = [] if multi_turn else None
    for i in idx:
        r = rollouts[i]
        m = 0.0 if (dummy or (mask_truncated and r.truncated)) else 1.0
        if multi_turn:  # tool tokens are never in the loss
            model_masks.append([float(x) for x in r.model_mask()])
            masks.append([m * x for x in model_masks[-1]])
        else:
            masks.append([m] * len(r.completion_ids))
    has_sample = all(len(rollouts[i].sample_logprobs) == len(rollouts[i].completion_ids) for i in idx)
    return TrainBatch(
        prompt_ids=[rollouts[i].prompt_ids for i in idx],
        completion_ids=[rollouts[i].completion_ids for i in idx],
        advantages=advantages[idx].clone() if not dummy else torch.zeros(1),
        loss_masks=masks,
        sample_logprobs=[rollouts[i].sample_logprobs for i in idx] if has_sample else None,
        real=not dummy,
        rows=idx,
        routed_experts=_routed(rollouts, idx),
        model_masks=model_masks,
    )


def _routed(rollouts: Sequence[Rollout], idx: Sequence[int]) -> Optional[list[torch.Tensor]]:
    """The sampler's experts of every kept row, when it recorded them for all (MoE, hf engine)."""
    routed = [getattr(rollouts[i], "routed_experts", None) for i in idx]
    return routed if routed and all(r is not None for r in routed) else None


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Split sequence indices into micro-batches whose padded size (rows x longest) fits ``budget``.

    Sequences are taken longest first, so similar lengths share a batch and padding is small;
    a sequence longer than the budget gets a batch of its own. Deterministic for equal input.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        L = max(int(lengths[i]), 1)
        if current and max(longest, L) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, L)
    if current:
        batches.append(current)
    return batches


def collate(batch: TrainBatch, idx: Sequence[int], pad_id: int, device) -> MicroBatch:
    """Rows of [left-padded prompt | right-padded completion] for a micro-batch."""
    P = max(len(batch.prompt_ids[i]) for i in idx)
    C = max(max(len(batch.completion_ids[i]) for i in idx), 1)
    n = len(idx)
    input_ids = torch.full((n, P + C), pad_id, dtype=torch.long)
    attention = torch.zeros((n, P + C), dtype=torch.long)
    mask = torch.zeros((n, C), dtype=torch.float32)
    valid = torch.zeros((n, C), dtype=torch.float32)
    sample = torch.zeros((n, C), dtype=torch.float32) if batch.sample_logprobs is not None else None
    model = torch.zeros((n, C), dtype=torch.float32) if batch.model_masks is not None else None
    for row, i in enumerate(idx):
        p, c = batch.prompt_ids[i], batch.completion_ids[i]
        input_ids[row, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        attention[row, P - len(p) : P] = 1
        if c:
            input_ids[row, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
            attention[row, P : P + len(c)] = 1
            mask[row, : len(c)] = torch.tensor(batch.loss_masks[i], dtype=torch.float32)
            valid[row, : len(c)] = 1.0 if batch.real else 0.0
            if sample is not None:
                sample[row, : len(c)] = torch.tensor(batch.sample_logprobs[i], dtype=torch.float32)
            if model is not None:
                model[row, : len(c)] = torch.tensor(batch.model_masks[i], dtype=torch.float32)
    return MicroBatch(
        index=tuple(idx),
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        mask=mask.to(device),
        valid=valid.to(device),
        sample_logp=sample.to(device) if sample is not None else None,
        advantages=batch.advantages[list(idx)].to(device),
        completion_len=C,
        **_distinct_prompts(input_ids, attention, P, device),
        routed_experts=_routed_layout(batch, idx, P, C, device),
        model=model.to(device) if model is not None else None,
    )


def _routed_layout(batch: TrainBatch, idx: Sequence[int], P: int, C: int, device) -> Optional[torch.Tensor]:
    if batch.routed_experts is None:
        return None
    from rl_reason.moe import layout

    rows = [batch.routed_experts[i] for i in idx]
    prompt_lens = [len(batch.prompt_ids[i]) for i in idx]
    completion_lens = [len(batch.completion_ids[i]) for i in idx]
    return layout(rows, prompt_lens, completion_lens, P, C).to(device)


def _distinct_prompts(input_ids: torch.Tensor, attention: torch.Tensor, P: int, device) -> dict:
    """Each distinct prompt of a micro-batch once, and which one every row uses (prefix sharing)."""
    seen: dict[tuple, int] = {}
    row_prompt = []
    for row in range(input_ids.shape[0]):
        key = tuple(input_ids[row, :P][attention[row, :P].bool()].tolist())
        row_prompt.append(seen.setdefault(key, len(seen)))
    firsts = [row_prompt.index(u) for u in range(len(seen))]
    return {
        "prompt_ids": input_ids[firsts, :P].to(device),
        "prompt_mask": attention[firsts, :P].to(device),
        "row_prompt": torch.tensor(row_prompt, dtype=torch.long, device=device),
        "completion_ids": input_ids[:, P:].to(device),
        "completion_mask": attention[:, P:].to(device),
    }


def micro_batches(
    batch: TrainBatch, budget: int, pad_id: int, dist, layout: Optional[str] = None
) -> list[MicroBatch]:
    """The batch cut to the token budget; under a sharded base every rank gets as many micro-
    batches as the rank with the most (each forward is a collective), padded with empty rows.
    With a packing ``layout`` (rl_reason.packing) the budget counts packed tokens."""
    if layout is None:
        split = token_budget_batches(batch.lengths(), budget)
        mbs = [collate(batch, mb, pad_id, dist.device) for mb in split]
    else:
        from rl_reason import packing

        split = packing.split(batch.prompt_ids, batch.completion_ids, budget, layout == packing.TREE)
        mbs = [
            dataclasses.replace(
                collate(batch, mb, pad_id, dist.device),
                packed=packing.pack(batch.prompt_ids, batch.completion_ids, mb, layout, dist.device),
            )
            for mb in split
        ]
    if dist.sharded:
        missing = int(dist.max(len(mbs))) - len(mbs)
        if missing:
            one_row = collate(batch, split[0][:1], pad_id, dist.device).without_loss()
            mbs += [one_row] * missing
    return mbs
