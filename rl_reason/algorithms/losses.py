"""Losses as pure tensor functions: the registered policy losses (PPO clip, GSPO, CISPO,
SAPO), the value loss, the token aggregations, and the log-prob / entropy helpers they take
their inputs from."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

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


# --------------------------------------------------------------------------- policy losses
#
# A policy loss is a pure function of the per-token log-probs under the current policy
# (``logp``, with gradient), the pre-update ones (``old_logp``), the advantages broadcast to
# (B, T) and the loss mask; it returns the per-token loss and, per token, whether a clip (or
# a gate) took the gradient away or scaled it. ``policy_loss`` aggregates it; the recipe
# chooses one by name (``algorithm.policy_loss``).


@dataclasses.dataclass(frozen=True)
class LossParams:
    """The recipe's settings a policy loss may read (``algorithm.*``)."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    sapo_tau_pos: float = 1.0
    sapo_tau_neg: float = 1.05


PolicyLossFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, LossParams], tuple[torch.Tensor, torch.Tensor]
]
POLICY_LOSSES: dict[str, PolicyLossFn] = {}


def register_policy_loss(name: str, fn: PolicyLossFn, *, replace: bool = False) -> PolicyLossFn:
    if name in POLICY_LOSSES and not replace:
        raise ValueError(f"policy loss {name!r} is already registered")
    POLICY_LOSSES[name] = fn
    return fn


def get_policy_loss(name: str) -> PolicyLossFn:
    try:
        return POLICY_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown policy loss {name!r}; known: {', '.join(POLICY_LOSSES)}") from None


def _log_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    return (logp - old_logp).clamp(-20.0, 20.0)


def clip_surrogate(logp, old_logp, advantages, mask, p: LossParams):
    """PPO's clipped surrogate per token: max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)),
    r = exp(logp - old_logp). Where the clipped term wins the token has no gradient."""
    ratio = torch.exp(_log_ratio(logp, old_logp))
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - p.clip_low, 1.0 + p.clip_high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def sequence_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's length-normalised sequence ratio exp(mean over the masked tokens of logp - old),
    (B,); 1 for a row with no masked token."""
    m = mask.to(logp.dtype)
    mean = (_log_ratio(logp, old_logp) * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    return torch.exp(mean.clamp(-20.0, 20.0))


def gspo_surrogate(logp, old_logp, advantages, mask, p: LossParams):
    """GSPO (Zheng et al. 2025): the clip acts on the sequence ratio s = exp(mean_t log r_t),
    so one token's noisy ratio (an MoE router that chose other experts) cannot veto or blow
    up its own gradient. Written in the paper's "GSPO-token" form: every token's ratio is
    sg(s) * exp(logp_t - sg(logp_t)), whose value is s and whose gradient is s * grad logp_t;
    with one advantage per sequence it gives exactly GSPO's gradient
    s * A * mean_t grad logp_t (under ``seq_mean_token_mean``), and it also takes (B, T)
    advantages. A whole sequence is clipped or not. The paper's clip range is far smaller
    than PPO's (3e-4 / 4e-4), since s is a geometric mean over the tokens."""
    s = sequence_ratio(logp.detach(), old_logp, mask).unsqueeze(-1)
    ratio = s * torch.exp(logp - logp.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - p.clip_low, 1.0 + p.clip_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def cispo_surrogate(logp, old_logp, advantages, mask, p: LossParams):
    """CISPO (MiniMax-M1, 2025): clip the importance weight itself and stop its gradient,
    -sg(clip(r, 1 - clip_low, 1 + clip_high)) * A * logp, so every token keeps a gradient
    (PPO's clip zeroes the gradient of clipped tokens, often the rare "fork" tokens of a
    reasoning chain). Written with exp(logp - sg(logp)) in place of logp: same gradient,
    and the loss value is -w * A, comparable with the other losses."""
    ratio = torch.exp(_log_ratio(logp.detach(), old_logp))
    weight = ratio.clamp(1.0 - p.clip_low, 1.0 + p.clip_high)
    per_token = -advantages * weight * torch.exp(logp - logp.detach())
    return per_token, weight != ratio


def sapo_surrogate(logp, old_logp, advantages, mask, p: LossParams):
    """SAPO (Qwen, 2025): a soft gate in place of the hard clip. Per token
    -A * (4 / tau) * sigmoid(tau * (r - 1)), tau = sapo_tau_pos where A > 0 else sapo_tau_neg.
    At r = 1 its gradient equals the unclipped surrogate's (4 sigmoid' (0) = 1) and it fades
    smoothly as r leaves 1, instead of dropping to 0 at the clip edge. A token counts as
    "clipped" where the gate has cut its gradient below half of the unclipped one."""
    ratio = torch.exp(_log_ratio(logp, old_logp))
    tau = torch.where(
        advantages > 0,
        torch.full_like(ratio, p.sapo_tau_pos),
        torch.full_like(ratio, p.sapo_tau_neg),
    )
    gate = torch.sigmoid(tau * (ratio - 1.0))
    per_token = -advantages * gate * (4.0 / tau)
    with torch.no_grad():
        damped = 4.0 * gate * (1.0 - gate) < 0.5
    return per_token, damped


register_policy_loss("clip", clip_surrogate)
register_policy_loss("gspo", gspo_surrogate)
register_policy_loss("cispo", cispo_surrogate)
register_policy_loss("sapo", sapo_surrogate)


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
    kind: str = "clip",
    params: Optional[LossParams] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The registered policy loss ``kind`` (default: PPO's clipped surrogate with separate
    low and high clip, DAPO clip-higher), aggregated with ``agg``.

    ``advantages`` is (B,) or (B, T). ``importance_weights`` (B, T), detached, corrects for a
    sampler that differs from the trainer (e.g. vLLM). ``params`` overrides ``clip_low`` /
    ``clip_high`` and carries the other losses' settings. Returns (loss, stats) with
    ``clip_frac`` (share of masked tokens where the clip is active) and ``ratio_mean``.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.to(logp.dtype).expand_as(logp)
    p = params if params is not None else LossParams(clip_low=clip_low, clip_high=clip_high)
    per_token, is_clipped = get_policy_loss(kind)(logp, old_logp, advantages, mask, p)
    if importance_weights is not None:
        per_token = per_token * importance_weights.detach()
    loss = aggregate(per_token, mask, agg, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    with torch.no_grad():
        m = mask.float()
        ratio = torch.exp(_log_ratio(logp.detach(), old_logp))
        stats = {"clip_frac": masked_mean(is_clipped.float(), m), "ratio_mean": masked_mean(ratio, m)}
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
