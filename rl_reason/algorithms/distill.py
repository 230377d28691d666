"""On-policy distillation's per-token advantage (pure tensor functions).

The student samples; the teacher scores the student's own tokens. The advantage of token t is
``log p_teacher(y_t | y_<t) - log p_student(y_t | y_<t)``, the negative of the per-token
reverse-KL estimate (k1) on the student's samples, so the policy-gradient step lowers the
reverse KL ``KL(student || teacher)``: tokens the teacher finds likelier than the student
are pushed up, tokens it finds unlikely are pushed down. Optionally a verifiable reward is
mixed in: ``reward_weight * (r - mean r)`` on every token of the sequence (the mean over the
whole batch, every rank).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch


def reverse_kl_tokens(student_lp: torch.Tensor, teacher_lp: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(student || teacher) on tokens the student sampled."""
    return student_lp - teacher_lp


def distill_advantages(
    teacher_lp: Sequence[torch.Tensor],
    student_lp: Sequence[torch.Tensor],
    valid: Sequence[torch.Tensor],
    rewards: Optional[Sequence[torch.Tensor]] = None,
    reward_weight: float = 0.0,
    sum_fn: Optional[Callable[[Sequence[float]], Sequence[float]]] = None,
) -> list[torch.Tensor]:
    """(B, T) advantages per micro-batch: teacher minus student log-prob (+ the reward term)."""
    out = [(t - s) * v for t, s, v in zip(teacher_lp, student_lp, valid)]
    if reward_weight and rewards is not None:
        seqs = [v.sum(-1) > 0 for v in valid]
        total = sum(float(r[m].sum()) for r, m in zip(rewards, seqs))
        count = sum(float(m.sum()) for m in seqs)
        if sum_fn is not None:
            total, count = sum_fn([total, count])
        mean = total / max(count, 1.0)
        out = [a + reward_weight * (r - mean).unsqueeze(-1) * v for a, r, v in zip(out, rewards, valid)]
    return out
