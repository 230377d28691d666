"""Run by torchrun in test_distributed: train the tiny recipe, dump each rank's adapter (and critic)."""

import sys
from pathlib import Path

import torch

from rl_reason.config import load_config
from rl_reason.trainer import Trainer


def local_fraction(model) -> float:
    """Share of the base's parameter elements held on this rank (1.0 when unsharded)."""
    from torch.distributed.tensor import DTensor

    local = full = 0
    for p in model.parameters():
        if isinstance(p, DTensor):
            local, full = local + p.to_local().numel(), full + p.numel()
        elif not p.requires_grad:
            local, full = local + p.numel(), full + p.numel()
    return local / max(full, 1)


if __name__ == "__main__":
    recipe, run_dir = sys.argv[1], Path(sys.argv[2])
    cfg = load_config(recipe, sys.argv[3:])
    trainer = Trainer(cfg, run_dir)
    trainer.run()
    torch.save(trainer.policy.adapter_state(), run_dir / f"adapter_rank{trainer.dist.rank}.pt")
    frac = local_fraction(trainer.policy.model)
    (run_dir / f"base_fraction_rank{trainer.dist.rank}.txt").write_text(f"{frac:.4f}")
    if trainer.critic is not None:
        torch.save(trainer.critic.state_dict(), run_dir / f"critic_rank{trainer.dist.rank}.pt")
