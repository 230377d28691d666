"""Out-of-memory back-off for the update: halve the micro-batch and run the step again, once.

An update that runs out of memory (``torch.OutOfMemoryError`` on a GPU, ``MemoryError`` on
the CPU) has done part of its work: gradients of some micro-batches, and, with a critic or
several epochs, maybe an optimizer step. Before the retry the gradients are dropped and, where
a step may already have been taken, the adapters, optimizer states and LR schedules are put
back as they were when the update began (a copy is taken up front only in those cases). The
retry then runs the same step with half the token budget, and the halved budget stays for the
rest of the run (a later step would run out of memory the same way). A second out-of-memory
error is raised as it is.

One process only: under DDP / FSDP the other ranks would be waiting in a collective, so an
out-of-memory error there is raised at once.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
from typing import Any, Callable, Optional

import torch

log = logging.getLogger("rl_reason")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError))


@dataclasses.dataclass
class Snapshot:
    """What an optimizer step changes: trainable tensors, optimizer and schedule states."""

    params: list[tuple[torch.nn.Parameter, torch.Tensor]]
    optimizers: list[tuple[Any, dict]]
    schedulers: list[tuple[Any, dict]]

    @classmethod
    def take(cls, lr) -> "Snapshot":
        params = list(lr.params) + (list(lr.critic.parameters()) if lr.critic is not None else [])
        optimizers = [o for o in (lr.optimizer, lr.critic_optimizer) if o is not None]
        schedulers = [s for s in (lr.scheduler, lr.critic_scheduler) if s is not None]
        return cls(
            params=[(p, p.detach().to("cpu", copy=True)) for p in params],
            optimizers=[(o, copy.deepcopy(_to_cpu(o.state_dict()))) for o in optimizers],
            schedulers=[(s, copy.deepcopy(s.state_dict())) for s in schedulers],
        )

    def restore(self) -> None:
        with torch.no_grad():
            for p, saved in self.params:
                p.copy_(saved.to(p.device))
        for o, state in self.optimizers:
            o.load_state_dict(state)  # moves the state back to each parameter's device
        for s, state in self.schedulers:
            s.load_state_dict(state)


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", copy=True)
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def may_step_before_the_end(lr) -> bool:
    """Whether an optimizer step can come before the last of the update's work (a critic step
    before the actor's, or one actor step per epoch)."""
    return lr.critic is not None or lr.cfg.algorithm.epochs > 1


def _drop_grads(lr) -> None:
    for opt in (lr.optimizer, lr.critic_optimizer):
        if opt is not None:
            opt.zero_grad(set_to_none=True)


def with_backoff(lr, run: Callable[[int], tuple[dict, Any]], budget: int) -> tuple[dict, Any]:
    """``run(budget)``; on an out-of-memory error, once more with ``budget // 2``."""
    snap: Optional[Snapshot] = None
    if lr.dist.world == 1 and may_step_before_the_end(lr):
        snap = Snapshot.take(lr)
    try:
        return run(budget)
    except BaseException as exc:  # noqa: BLE001 (re-raised unless it is an out-of-memory error)
        if not is_oom(exc) or lr.dist.world > 1 or budget <= 1:
            raise
        kind = type(exc).__name__
    # outside the except block: the traceback (and the tensors its frames hold) is gone
    _drop_grads(lr)
    if snap is not None:
        snap.restore()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = max(budget // 2, 1)
    lr.micro_batch_tokens = half
    log.warning(
        f"out of memory in the update ({kind}) with micro-batches of {budget} tokens; "
        f"running the step again with {half} (kept for the rest of the run)"
    )
    stats, extra = run(half)
    stats["update/oom_retries"] = 1.0
    stats["update/micro_batch_tokens"] = float(half)
    return stats, extra
