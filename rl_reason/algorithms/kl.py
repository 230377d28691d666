"""KL estimators between the policy and the reference (the base with the adapter off)."""

from __future__ import annotations

import torch


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman's k1, k2, k3).

    k1 = log(pi/ref) (unbiased, high variance, can be negative); k2 = (log(pi/ref))^2 / 2;
    k3 = ref/pi - 1 - log(ref/pi) (unbiased, always >= 0). The log-ratio is clamped to
    [-20, 20] so one wild token cannot overflow exp.
    """
    log_ratio = (logp - ref_logp).clamp(-20.0, 20.0)
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.exp(-log_ratio) - 1.0 + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; known: k1, k2, k3")
