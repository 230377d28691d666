"""Losses as pure tensor functions: the clipped policy surrogate, the value loss, the token
aggregations, and the log-prob / entropy helpers they take their inputs from."""

from __future__ import annotations

from typing import Optional

import torch

from rl_reason.algorithms.advantages import masked_mean

LOSS_AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


# --------------------------------------------------------------------------- losses


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    agg: str = "token_mean",
    *,
    num_tokens: Optional[float] = None,
    num_seqs: Optional[float] = None,
    norm_len: Optional[int] = None,
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    - ``token_mean``: sum over all tokens / number of tokens (DAPO); long answers weigh more.
    - ``seq_mean_token_mean``: mean over tokens within each sequence, then over sequences
      (original GRPO); every sequence weighs the same, so long answers' tokens weigh less.
    - ``seq_mean_token_sum_norm``: token sum / (num_seqs * norm_len), a constant (Dr.GRPO).

    ``num_tokens`` / ``num_seqs`` are the counts over the *whole* batch, not this micro-batch:
    with gradient accumulation (and across ranks) the micro-batch losses then add up to the
    full-batch loss exactly, whatever the split. Default: this call's own counts.
    """
    mask = mask.float()
    if agg == "token_mean":
        denom = num_tokens if num_tokens is not None else mask.sum().clamp(min=1.0)
        return (values * mask).sum() / denom
    if agg == "seq_mean_token_mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        denom = num_seqs if num_seqs is not None else (mask.sum(-1) > 0).sum().clamp(min=1)
        return per_seq.sum() / denom
    if agg == "seq_mean_token_sum_norm":
        L = norm_len if norm_len is not None else mask.shape[-1]
        denom = (num_seqs if num_seqs is not None else mask.shape[0]) * L
        return (values * mask).sum() / denom
    raise ValueError(f"unknown loss aggregation {agg!r}; known: {', '.join(LOSS_AGGREGATIONS)}")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "token_mean",
    num_tokens: Optional[float] = None,
    num_seqs: Optional[float] = None,
    norm_len: Optional[int] = None,
    importance_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate with separate low and high clip (DAPO clip-higher).

    per token: max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high)),
    ratio = exp(logp - old_logp). ``advantages`` is (B,) or (B, T). ``importance_weights``
    (B, T), detached, corrects for a sampler that differs from the trainer (e.g. vLLM).
    Returns (loss, stats) with ``clip_frac`` (share of masked tokens where the clip is active)
    and ``ratio_mean``.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.to(logp.dtype)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if importance_weights is not None:
        per_token = per_token * importance_weights.detach()
    loss = aggregate(per_token, mask, agg, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    with torch.no_grad():
        m = mask.float()
        is_clipped = (clipped > unclipped).float()
        stats = {"clip_frac": masked_mean(is_clipped, m), "ratio_mean": masked_mean(ratio, m)}
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: Optional[float] = 0.2,
    agg: str = "token_mean",
    num_tokens: Optional[float] = None,
    num_seqs: Optional[float] = None,
    norm_len: Optional[int] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2); no clipping when ``clip`` is None."""
    err = (values - returns) ** 2
    if clip is not None:
        clipped_v = old_values + (values - old_values).clamp(-clip, clip)
        err_c = (clipped_v - returns) ** 2
        per_token = 0.5 * torch.maximum(err, err_c)
        frac = masked_mean((err_c > err).float(), mask.float())
    else:
        per_token = 0.5 * err
        frac = torch.zeros(())
    loss = aggregate(per_token, mask, agg, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    return loss, {"value_clip_frac": frac.detach()}


# --------------------------------------------------------------------------- logits helpers


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] without materialising the full (B, T, V) log-softmax.

    Row by row, so peak memory is one (T, V) slab instead of a second copy of all logits.
    """
    logits = logits.float()
    out = []
    for row_logits, row_index in zip(logits, index):
        picked = row_logits.gather(-1, row_index.unsqueeze(-1)).squeeze(-1)
        out.append(picked - torch.logsumexp(row_logits, dim=-1))
    return torch.stack(out)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) along the last axis: logsumexp(z) - sum p z.

    Row by row, like selective_log_softmax: the softmax and the product are (T, V) slabs, not
    two more (B, T, V) copies of a large-vocabulary batch.
    """
    logits = logits.float()
    if logits.dim() < 3:
        p = torch.softmax(logits, dim=-1)
        return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)
    return torch.stack([entropy_from_logits(row) for row in logits])
