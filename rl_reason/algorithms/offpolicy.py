"""Off-policy corrections: importance weights of the trainer's policy against the sampler's.

The behaviour log-probs are always those the sampler returned with each token
(``Rollout.sample_logprobs``): with ``rollout.max_staleness`` >= 1 the sampler ran an older
adapter, and with vLLM it is another implementation of the same weights. Each correction is a
pure function registered by name (``algorithm.is_correction``):

- ``token_truncate``: w_t = min(r_t, is_cap), r_t = exp(logp_t - behaviour_t) (truncated IS;
  on only when ``is_cap`` > 0, as before this module existed; an unset ``is_cap`` is 2 when
  ``rollout.max_staleness`` >= 1, else 0: ``effective_is_cap``).
- ``seq_truncate``: every token of sequence i gets g_i clamped to [low, high], where
  g_i = exp(mean_t (logp_t - behaviour_t)) is the sequence's geometric-mean ratio (a
  length-independent sequence-level weight).
- ``seq_mask``: a sequence whose g_i leaves [low, high] gets weight 0 (it leaves the loss);
  the others keep the token-level truncated weight when ``is_cap`` > 0, else 1.

Each returns an ``ISWeights`` record: the (B, T) weights and which tokens were clipped or
masked, for the ``policy/is_*`` metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: far past any cap, still finite in float32
# is_cap when the recipe leaves it unset and batches may be an adapter behind (max_staleness
# >= 1). Measured on the CPU demo (docs/ASYNC.md): K=1 without a correction peaked at 0.70
# held-out accuracy in 24 steps (K=0: 0.8 at step 16); with cap 2 it reached 0.8 at step 10.
ASYNC_IS_CAP = 2.0


def effective_is_cap(alg, max_staleness: int = 0) -> float:
    """``algorithm.is_cap`` as the update uses it: the recipe's value, else 2 for an
    asynchronous run (``rollout.max_staleness`` >= 1) and 0 (off) for a synchronous one."""
    cap = getattr(alg, "is_cap", None)
    if cap is not None:
        return float(cap)
    return ASYNC_IS_CAP if max_staleness >= 1 else 0.0


@dataclasses.dataclass(frozen=True)
class ISWeights:
    weights: torch.Tensor  # (B, T), detached
    clipped: torch.Tensor  # (B, T) bool: the weight was truncated
    masked: torch.Tensor  # (B, T) bool: the token left the loss


Correction = Callable[..., ISWeights]
CORRECTIONS: dict[str, Correction] = {}


def register(name: str):
    def wrap(fn: Correction) -> Correction:
        CORRECTIONS[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    return sorted(CORRECTIONS)


def log_ratio(logp: torch.Tensor, behaviour: torch.Tensor) -> torch.Tensor:
    return (logp.detach() - behaviour).clamp(max=MAX_LOG_RATIO)


def sequence_ratio(logp: torch.Tensor, behaviour: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) geometric-mean ratio of each sequence over its valid tokens (1 for an empty one)."""
    valid = valid.float()
    mean = (log_ratio(logp, behaviour) * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)
    return torch.exp(mean)


@register("token_truncate")
def token_truncate(logp, behaviour, valid, *, cap: float, low: float, high: float) -> ISWeights:
    # the same expression update.actor_loss used before this module, so is_cap runs are unchanged
    ratio = torch.exp(log_ratio(logp, behaviour))
    weights = ratio.clamp(max=cap)
    on = valid.bool()
    return ISWeights(weights, (ratio > cap) & on, torch.zeros_like(on))


@register("seq_truncate")
def seq_truncate(logp, behaviour, valid, *, cap: float, low: float, high: float) -> ISWeights:
    g = sequence_ratio(logp, behaviour, valid)
    on = valid.bool()
    weights = g.clamp(min=low, max=high)[:, None].expand_as(logp).clone()
    out = ((g < low) | (g > high))[:, None] & on
    return ISWeights(weights, out, torch.zeros_like(on))


@register("seq_mask")
def seq_mask(logp, behaviour, valid, *, cap: float, low: float, high: float) -> ISWeights:
    g = sequence_ratio(logp, behaviour, valid)
    on = valid.bool()
    keep = ((g >= low) & (g <= high))[:, None]
    if cap > 0:
        inner = token_truncate(logp, behaviour, valid, cap=cap, low=low, high=high)
        weights, clipped = inner.weights, inner.clipped & keep
    else:
        weights, clipped = torch.ones_like(logp), torch.zeros_like(on)
    return ISWeights(weights * keep, clipped, ~keep & on)


def correction(
    alg, logp: torch.Tensor, behaviour: Optional[torch.Tensor], valid: torch.Tensor, max_staleness: int = 0
):
    """The recipe's correction for one micro-batch, or None where it is off."""
    if behaviour is None:
        return None
    name = getattr(alg, "is_correction", "token_truncate")
    cap = effective_is_cap(alg, max_staleness)
    if name == "token_truncate" and cap <= 0:
        return None
    try:
        fn = CORRECTIONS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm.is_correction {name!r}; known: {', '.join(names())}") from None
    return fn(
        logp,
        behaviour,
        valid,
        cap=cap,
        low=float(getattr(alg, "is_band_low", 0.5)),
        high=float(getattr(alg, "is_band_high", 2.0)),
    )
