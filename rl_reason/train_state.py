"""What a run holds beyond its adapter: seeds and RNG state, LR schedules, the stop flag,
and the checkpoint's trainer_state.pt / critic.pt (checkpoint.py writes the directory).

Checkpoint layout (RUN_DIR/checkpoints/step-N/): ``adapter/`` (peft), ``critic.pt`` (PPO:
critic adapter + value head), ``trainer_state.pt`` (step, optimizers, schedules, sampler
cursor, every rank's RNG state, tracker state, best eval so far).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from rl_reason import checkpoint
from rl_reason.config import config_hash, to_dict
from rl_reason.errors import CheckpointError

STATE_FILE = "trainer_state.pt"
CRITIC_FILE = "critic.pt"  # PPO: critic adapter + value head


def step_seed(seed: int, step: int, rank: int) -> int:
    """Sampling seed of one step on one rank: a resumed run draws exactly what it would have."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_scheduler(optimizer, cfg):
    total, warm = cfg.train.steps, cfg.train.warmup_steps
    kind = cfg.train.lr_schedule

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StopFlag:
    """First SIGINT/SIGTERM: finish the current step, checkpoint, exit 0. Second: stop now."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            print("\nsecond signal: stopping now without a checkpoint", file=sys.stderr, flush=True)
            os._exit(130)
        self.requested = True
        print(
            f"\n{signal.Signals(signum).name}: finishing this step, then checkpointing "
            "(signal again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def save(trainer, step: int) -> Optional[Path]:
    """Write step ``step``'s checkpoint (rank 0 writes; every rank's RNG state goes in)."""
    lr, dist = trainer.learner, trainer.dist
    rngs = dist.gather_objects(_rng_state())
    path = None
    if dist.is_main:
        state = {
            "step": step,
            "optimizer": lr.optimizer.state_dict(),
            "scheduler": lr.scheduler.state_dict(),
            "sampler": trainer.sampler.state_dict(),
            "rng": rngs,
            "tracker": trainer.tracker.state_dict() if trainer.tracker else {},
            "best": dict(trainer.best),
            "producer": trainer.producer.state_dict(),  # rl_reason/producer.py: pending requests
        }
        if lr.critic is not None:
            state["critic_optimizer"] = lr.critic_optimizer.state_dict()
            state["critic_scheduler"] = lr.critic_scheduler.state_dict()

        def write(tmp: Path) -> None:
            lr.policy.save_adapter(tmp / "adapter")
            if lr.critic is not None:
                torch.save(lr.critic.state_dict(), tmp / CRITIC_FILE)
            torch.save(state, tmp / STATE_FILE)

        path = checkpoint.save(
            trainer.run_dir,
            step,
            write,
            config_hash=config_hash(trainer.cfg),
            keep_last=trainer.cfg.checkpoint.keep_last,
            extra={"config": to_dict(trainer.cfg)},  # a resume names each key that changed since
        )
    dist.barrier()
    return path


def load(trainer, ckpt: Path) -> dict:
    """Restore a checkpoint into the trainer's parts; returns the tracker's saved state."""
    from peft import load_peft_weights

    lr = trainer.learner
    try:
        adapter = load_peft_weights(str(ckpt / "adapter"), device="cpu")
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        critic_state = None
        if lr.critic is not None:
            critic_state = torch.load(ckpt / CRITIC_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {ckpt}: {exc}".splitlines()[0]) from exc
    lr.policy.load_adapter_state(adapter)
    if lr.critic is not None:
        lr.critic.load_state_dict(critic_state)
        lr.critic_optimizer.load_state_dict(state["critic_optimizer"])
        lr.critic_scheduler.load_state_dict(state["critic_scheduler"])
    lr.optimizer.load_state_dict(state["optimizer"])
    lr.scheduler.load_state_dict(state["scheduler"])
    trainer.sampler.load_state_dict(state["sampler"])
    trainer.producer.load_state_dict(state.get("producer"))  # after the sampler: it may rewind it
    rngs = state.get("rng") or []
    if trainer.dist.rank < len(rngs):
        rng = rngs[trainer.dist.rank]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
    trainer.start_step = int(state["step"])
    trainer.best = dict(state.get("best") or {})
    return state.get("tracker") or {}


def keep_best(trainer, step: int, eval_metrics: dict) -> None:
    """checkpoint.keep_best: keep the adapter of the best evaluation in RUN_DIR/best_adapter.

    The metric is maximised; a ``min:`` prefix minimises it. The best value so far is part
    of the checkpoint, so a resumed run keeps comparing against it.
    """
    spec = trainer.cfg.checkpoint.keep_best
    if not spec:
        return
    lower = spec.startswith("min:")
    key = spec[4:] if lower else spec
    if key not in eval_metrics:
        if trainer.dist.is_main and eval_metrics:
            logging.getLogger("rl_reason").warning(
                "checkpoint.keep_best: %r is not among the eval metrics (%s)",
                key,
                ", ".join(sorted(eval_metrics)),
            )
        return
    value = float(eval_metrics[key])
    if not math.isfinite(value):  # e.g. tokens_per_correct with no correct answer: no ranking
        return
    old = trainer.best.get("value")
    better = old is None or (value < old if lower else value > old)
    if not better:
        return
    trainer.best = {"step": step, "value": value, "metric": key}
    if trainer.dist.is_main:
        target = trainer.run_dir / "best_adapter"
        tmp = trainer.run_dir / ".best_adapter.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        trainer.policy.save_adapter(tmp)
        (tmp / "best.json").write_text(json.dumps(trainer.best, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    trainer.dist.barrier()


def make_optimizers(cfg, params, critic) -> tuple[Any, Any, Any, Any]:
    """AdamW and its LR schedule for the policy's LoRA parameters, and (PPO) for the critic's:
    (optimizer, scheduler, critic_optimizer, critic_scheduler), the critic pair None without one."""
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    critic_optimizer = critic_scheduler = None
    if critic is not None:
        critic_optimizer = torch.optim.AdamW(
            critic.parameters(), lr=cfg.critic.lr, weight_decay=cfg.train.weight_decay
        )
        critic_scheduler = make_scheduler(critic_optimizer, cfg)
    return optimizer, make_scheduler(optimizer, cfg), critic_optimizer, critic_scheduler
