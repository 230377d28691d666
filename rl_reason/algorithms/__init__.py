"""The RL math as pure tensor functions, and the registry that names each algorithm.

Nothing here touches a model, an optimizer or a process group. Every function takes tensors
and returns tensors, so each is unit-tested against hand-computed values (tests/rl_reason/
test_algorithms.py). GRPO, Dr.GRPO, RLOO, REINFORCE++ and PPO share one loop and differ only
by their ``AlgorithmSpec`` (registry.py) and the functions it names:

- advantages.py  group baselines, token returns, GAE, whitening
- losses.py      policy losses by name (clip, gspo, cispo, sapo), value loss, token aggregations, log-prob helpers
- kl.py          KL estimators to the reference
- registry.py    AlgorithmSpec, register / get, where the KL goes, default aggregation
"""

from __future__ import annotations

import torch

from rl_reason.algorithms.advantages import (
    discounted_returns,
    dr_grpo_advantages,
    gae,
    group_mean_std,
    grpo_advantages,
    masked_mean,
    masked_whiten,
    outcome_token_rewards,
    reinforce_pp_advantages,
    rloo_advantages,
    uniform_group_mask,
    whiten,
)
from rl_reason.algorithms.kl import kl_estimate
from rl_reason.algorithms.losses import (
    LOSS_AGGREGATIONS,
    POLICY_LOSSES,
    LossParams,
    aggregate,
    entropy_from_logits,
    get_policy_loss,
    policy_loss,
    register_policy_loss,
    selective_log_softmax,
    value_loss,
)
from rl_reason.algorithms.registry import AlgorithmSpec, get, names, register
from rl_reason.batching import token_budget_batches

__all__ = [
    "ADVANTAGES",
    "AlgorithmSpec",
    "LOSS_AGGREGATIONS",
    "LossParams",
    "POLICY_LOSSES",
    "aggregate",
    "compute_advantages",
    "discounted_returns",
    "dr_grpo_advantages",
    "entropy_from_logits",
    "gae",
    "get",
    "get_policy_loss",
    "group_mean_std",
    "grpo_advantages",
    "kl_estimate",
    "masked_mean",
    "masked_whiten",
    "names",
    "outcome_token_rewards",
    "policy_loss",
    "register",
    "register_policy_loss",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "selective_log_softmax",
    "token_budget_batches",
    "uniform_group_mask",
    "value_loss",
    "whiten",
]

# the built-in sequence-level estimators by name (kept for callers of the old module)
ADVANTAGES = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}


def compute_advantages(name: str, rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Sequence-level advantages for a registered sequence-level algorithm."""
    try:
        spec = get(name)
    except ValueError:
        spec = None
    if spec is None or spec.level != "sequence":
        known = [n for n in names() if get(n).level == "sequence"]
        raise ValueError(f"no group advantage for {name!r}; known: {', '.join(known)}")
    return spec.sequence_advantages(rewards, group_ids)
