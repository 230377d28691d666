"""One registration per algorithm: what the loop needs to know to run it.

The trainer, the update step, config validation and the critic read an ``AlgorithmSpec``
instead of comparing names. Adding an algorithm is one ``register(AlgorithmSpec(...))`` plus
its pure functions (advantages.py); the loop does not change.

- ``level="sequence"``: ``sequence_advantages(rewards, group_ids) -> (B,)``, computed on each
  rank from its own groups (a prompt's group never spans ranks).
- ``level="token"``: ``token_advantages(TokenInputs) -> (advantages, returns)``, one
  ``(B, T)`` tensor per micro-batch; ``returns`` are the critic's targets (None without one).
- ``kl``: where the ``algorithm.kl_coef`` penalty goes: ``"loss"`` (a KL term in the actor
  loss), ``"reward"`` (subtracted from the per-token rewards), or ``"either"``
  (``algorithm.kl_in_reward`` chooses).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Optional, Sequence

import torch

from rl_reason.algorithms import advantages as adv

__all__ = [
    "AlgorithmSpec",
    "TokenInputs",
    "stat_masks",
    "register",
    "get",
    "names",
    "kl_in_reward",
    "loss_aggregation",
]


@dataclasses.dataclass(frozen=True)
class TokenInputs:
    """What a per-token advantage function gets: one entry per micro-batch."""

    rewards: Sequence[torch.Tensor]  # (B,) outcome rewards
    valid: Sequence[torch.Tensor]  # (B, T) 1.0 on every completion token
    kl: Optional[Sequence[torch.Tensor]]  # (B, T) per-token KL when it goes into the reward
    values: Sequence[Optional[torch.Tensor]]  # (B, T) the critic's old values, when there is one
    alg: Any  # the recipe's AlgorithmConfig (gamma, lam, kl_coef, whiten_advantages, ...)
    sum_fn: Optional[Callable[[Sequence[float]], Sequence[float]]] = None  # sum over processes
    old_lp: Optional[Sequence[torch.Tensor]] = None  # (B, T) the policy's pre-update log-probs
    teacher_lp: Optional[Sequence[torch.Tensor]] = None  # (B, T) the teacher's (needs_teacher)
    # (B, T) 1.0 on the model's own tokens; multi-turn rollouts have tool output in ``valid``
    # too. None: every valid token is the model's. Whitening statistics use these tokens only.
    model: Optional[Sequence[Optional[torch.Tensor]]] = None


def stat_masks(x: TokenInputs) -> list[torch.Tensor]:
    """The tokens batch statistics (whitening) are taken over: the model's own completion tokens.

    Returns and GAE still run over every valid token (tool output sits between the model's
    turns, and a recurrence that stopped at it would cut the earlier turns off from the
    outcome reward), but a tool turn is not an action, so its returns must not move the mean
    and std every action's advantage is measured against.
    """
    if x.model is None:
        return list(x.valid)
    return [v if m is None else v * m for v, m in zip(x.valid, x.model)]


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    level: Literal["sequence", "token"]
    sequence_advantages: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    token_advantages: Optional[Callable[[TokenInputs], tuple[list, list]]] = None
    needs_critic: bool = False
    needs_groups: bool = False  # compares completions of one prompt: num_generations >= 2
    kl: Literal["loss", "reward", "either"] = "loss"
    default_loss_agg: str = "token_mean"
    doc: str = ""
    needs_teacher: bool = False  # the frozen pass scores the tokens with the recipe's teacher
    needs_old_logprobs: bool = False  # token_advantages reads the pre-update log-probs

    def __post_init__(self) -> None:
        fn = self.sequence_advantages if self.level == "sequence" else self.token_advantages
        if fn is None:
            raise ValueError(
                f"algorithm {self.name!r}: level={self.level!r} needs its {self.level}_advantages"
            )


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec, *, replace: bool = False) -> AlgorithmSpec:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"algorithm {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> AlgorithmSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(_REGISTRY)}") from None


def kl_in_reward(alg) -> bool:
    """Whether the KL penalty of this recipe's ``algorithm`` section goes into the reward."""
    where = get(alg.name).kl
    return alg.kl_coef > 0 and (where == "reward" or (where == "either" and alg.kl_in_reward))


def loss_aggregation(alg) -> str:
    return alg.loss_agg if alg.loss_agg != "auto" else get(alg.name).default_loss_agg


# --------------------------------------------------------------------------- the built-ins


def _outcome_rewards(x: TokenInputs) -> list[torch.Tensor]:
    """Each sequence's reward on its last token, minus the per-token KL when it is in the reward."""
    out = []
    for k, (r, v) in enumerate(zip(x.rewards, x.valid)):
        tr = adv.outcome_token_rewards(r, v)
        if x.kl is not None:
            tr = tr - x.alg.kl_coef * x.kl[k] * v
        out.append(tr)
    return out


def _reinforce_pp(x: TokenInputs):
    a = adv.reinforce_pp_advantages(
        list(x.rewards),
        list(x.valid),
        kl=x.kl,
        kl_coef=x.alg.kl_coef,
        gamma=x.alg.gamma,
        sum_fn=x.sum_fn,
        stat_mask=stat_masks(x),
    )
    return a, [None] * len(a)


def _ppo(x: TokenInputs):
    """GAE on the critic's old values; returns with the critic's own lambda as its targets."""
    alg = x.alg
    critic_lam = alg.critic_lam if alg.critic_lam is not None else alg.lam
    advs, rets = [], []
    for tr, v, values in zip(_outcome_rewards(x), x.valid, x.values):
        a, _ = adv.gae(tr, values, v, alg.gamma, alg.lam)
        _, ret = adv.gae(tr, values, v, alg.gamma, critic_lam)
        advs.append(a)
        rets.append(ret)
    if alg.whiten_advantages:
        advs = adv.whiten(advs, stat_masks(x), sum_fn=x.sum_fn)
    return advs, rets


register(
    AlgorithmSpec("grpo", "sequence", adv.grpo_advantages, needs_groups=True, doc="group mean/std baseline")
)
register(
    AlgorithmSpec(
        "dr_grpo",
        "sequence",
        adv.dr_grpo_advantages,
        needs_groups=True,
        default_loss_agg="seq_mean_token_sum_norm",
        doc="group mean baseline, constant normaliser",
    )
)
register(
    AlgorithmSpec("rloo", "sequence", adv.rloo_advantages, needs_groups=True, doc="leave-one-out baseline")
)
register(
    AlgorithmSpec(
        "ppo", "token", token_advantages=_ppo, needs_critic=True, kl="either", doc="GAE on a LoRA critic"
    )
)
register(
    AlgorithmSpec(
        "reinforce_pp", "token", token_advantages=_reinforce_pp, kl="reward", doc="whitened returns"
    )
)


def _distill(x: TokenInputs):
    """On-policy distillation: teacher minus student log-prob per token (+ reward term)."""
    from rl_reason.algorithms.distill import distill_advantages

    a = distill_advantages(
        x.teacher_lp,
        x.old_lp,
        x.valid,
        rewards=x.rewards,
        reward_weight=x.alg.distill_reward_weight,
        sum_fn=x.sum_fn,
    )
    return a, [None] * len(a)


register(
    AlgorithmSpec(
        "distill",
        "token",
        token_advantages=_distill,
        needs_teacher=True,
        needs_old_logprobs=True,
        doc="on-policy distillation: teacher minus student log-prob per token",
    )
)
