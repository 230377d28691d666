"""Advantage estimators as pure tensor functions: group baselines (GRPO, Dr.GRPO, RLOO), token-level
returns (REINFORCE++, GAE for PPO) and the masked statistics they share.

Shapes: ``B`` sequences, ``T`` completion tokens (right-padded); ``mask`` is ``(B, T)`` with
1.0 on tokens that count. Sequence-level advantages are ``(B,)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

# --------------------------------------------------------------------------- masked statistics


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: Optional[int] = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (0 when nothing is masked in)."""
    total = (values * mask).sum(dim=dim) if dim is not None else (values * mask).sum()
    count = mask.sum(dim=dim) if dim is not None else mask.sum()
    return total / count.clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries (population std); zero outside the mask."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


# --------------------------------------------------------------------------- group baselines


def _group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Dense group numbers 0..G-1 for arbitrary integer ids, and G."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, (int(inverse.max()) + 1 if inverse.numel() else 0)


def group_mean_std(
    rewards: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample mean, sample std (n-1) and size of the sample's group.

    ``group_ids`` may be any integers (not necessarily 0..G-1 or contiguous). A group of one
    has std 0.
    """
    rewards = rewards.float()
    inverse, n_groups = _group_index(group_ids)
    count = torch.zeros(n_groups).index_add_(0, inverse, torch.ones_like(rewards))
    total = torch.zeros(n_groups).index_add_(0, inverse, rewards)
    mean = total / count
    sq = torch.zeros(n_groups).index_add_(0, inverse, (rewards - mean[inverse]) ** 2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1.0))
    return mean[inverse], std[inverse], count[inverse]


def grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: (r - group mean) / (group std + eps), std with Bessel's correction."""
    mean, std, _ = group_mean_std(rewards, group_ids)
    return (rewards.float() - mean) / (std + eps)


def dr_grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Dr.GRPO: r - group mean. No std division: it up-weights easy and hard prompts (the
    bias Dr.GRPO removes); length bias is removed by the constant-normaliser aggregation."""
    mean, _, _ = group_mean_std(rewards, group_ids)
    return rewards.float() - mean


def rloo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """RLOO: r_i minus the mean of the *other* samples of its group, n/(n-1) (r_i - mean).

    A group of one has no baseline to leave one out of, so its advantage is 0.
    """
    mean, _, count = group_mean_std(rewards, group_ids)
    scale = torch.where(count > 1, count / (count - 1).clamp(min=1.0), torch.zeros_like(count))
    return (rewards.float() - mean) * scale


def uniform_group_mask(rewards: torch.Tensor, group_ids: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """True for samples whose group's rewards are all equal (zero advantage: nothing to learn)."""
    inverse, n_groups = _group_index(group_ids)
    lo = torch.full((n_groups,), float("inf")).scatter_reduce(0, inverse, rewards.float(), "amin")
    hi = torch.full((n_groups,), float("-inf")).scatter_reduce(0, inverse, rewards.float(), "amax")
    return (hi - lo)[inverse] <= tol


# --------------------------------------------------------------------------- token-level returns


def discounted_returns(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum_{k>=t} gamma^(k-t) r_k over masked tokens, right to left."""
    B, T = token_rewards.shape
    out = torch.zeros_like(token_rewards, dtype=torch.float32)
    running = torch.zeros(B)
    for t in range(T - 1, -1, -1):
        running = token_rewards[:, t].float() + gamma * running * mask[:, t]
        out[:, t] = running
    return out * mask


def outcome_token_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place each sequence's scalar reward on its last masked token."""
    B, T = mask.shape
    out = torch.zeros(B, T)
    lengths = mask.sum(-1).long()
    has = lengths > 0
    # last masked index: position of the last 1 in each row
    idx = (mask * torch.arange(1, T + 1)).argmax(-1)
    out[torch.arange(B)[has], idx[has]] = rewards.float()[has]
    return out


def whiten(
    values: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], *, sum_fn=None, eps: float = 1e-8
) -> list[torch.Tensor]:
    """(v - mean) / (std + eps) over the masked entries of all ``values`` together (population
    std); zero outside the masks. The tensors may differ in width (micro-batches). ``sum_fn``
    adds the (sum, sum of squares, count) over processes, so every rank whitens with the
    statistics of the global batch; the sums are float64 so the split does not change them.
    """
    s = sq = n = 0.0
    for a, m in zip(values, masks):
        s, sq, n = s + float((a * m).sum()), sq + float((a * a * m).sum()), n + float(m.sum())
    if sum_fn is not None:
        s, sq, n = sum_fn([s, sq, n])
    mean = s / max(n, 1.0)
    std = math.sqrt(max(sq / max(n, 1.0) - mean * mean, 0.0))
    return [(a - mean) / (std + eps) * m for a, m in zip(values, masks)]


def reinforce_pp_advantages(
    rewards,
    mask,
    kl=None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    *,
    sum_fn=None,
    stat_mask=None,
):
    """REINFORCE++: outcome reward on the last token, minus ``kl_coef * kl`` on every token,
    discounted returns, then whitened over the whole batch (no per-prompt baseline).

    Takes one ``(B, T)`` batch, or lists of micro-batch tensors (then returns a list): the
    whitening is over all of them, and over every process when ``sum_fn`` is given.
    ``stat_mask`` (same shapes; default ``mask``) names the tokens the whitening is over and
    keeps: the model's own tokens in a multi-turn rollout.
    """
    single = isinstance(mask, torch.Tensor)
    if single:
        rewards, mask, kl = [rewards], [mask], (None if kl is None else [kl])
    returns = []
    for k, (r, m) in enumerate(zip(rewards, mask)):
        token_rewards = outcome_token_rewards(r, m)
        if kl is not None and kl_coef:
            token_rewards = token_rewards - kl_coef * kl[k] * m
        returns.append(discounted_returns(token_rewards, m, gamma))
    if stat_mask is not None and single:
        stat_mask = [stat_mask]
    out = whiten(returns, mask if stat_mask is None else stat_mask, sum_fn=sum_fn)
    return out[0] if single else out


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded sequences.

    delta_t = r_t + gamma V_{t+1} - V_t (V after the last masked token is 0);
    A_t = delta_t + gamma lam A_{t+1}. Returns (advantages, returns = A + V), zero off-mask.
    """
    B, T = token_rewards.shape
    values = values.float() * mask
    adv = torch.zeros(B, T)
    last = torch.zeros(B)
    next_value = torch.zeros(B)
    for t in range(T - 1, -1, -1):
        m = mask[:, t]
        delta = token_rewards[:, t].float() + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m
        adv[:, t] = last
        # padding after the end keeps V_{t+1} = 0 for the last real token
        next_value = values[:, t] * m
    return adv, (adv + values) * mask
