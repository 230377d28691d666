"""The distributed helper the loop and the engines share: a ``Dist`` protocol, a single-process
implementation (``LocalDist``, also the stand-in the unit tests use) and the accelerate /
torch.distributed one (``AccelerateDist``), plus metric reductions declared by the caller.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import torch

from rl_reason.errors import ConfigError

log = logging.getLogger("rl_reason")

Reduction = Literal["mean", "sum", "max"]


@runtime_checkable
class Lockstep(Protocol):
    """What an engine needs to keep ranks in step when every forward is a collective."""

    def max(self, value: float) -> float: ...

    def all_true(self, flag: bool) -> bool: ...


@runtime_checkable
class Dist(Lockstep, Protocol):
    rank: int
    world: int
    device: torch.device
    is_main: bool
    sharded: bool  # the frozen base is sharded with FSDP across the processes

    def sum(self, values: Sequence[float]) -> list[float]: ...

    def gather_objects(self, obj: Any) -> list[Any]: ...

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None: ...

    def barrier(self) -> None: ...


class LocalDist:
    """One process: every collective is the identity."""

    rank, world, is_main, sharded = 0, 1, True, False

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def sum(self, values: Sequence[float]) -> list[float]:
        # through float64 like the collective, so one process and many round alike
        return torch.tensor(list(values), dtype=torch.float64).tolist()

    def max(self, value: float) -> float:
        return float(torch.tensor([value], dtype=torch.float64).item())

    def all_true(self, flag: bool) -> bool:
        return flag

    def gather_objects(self, obj: Any) -> list[Any]:
        return [obj]

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        return None

    def barrier(self) -> None:
        return None


class AccelerateDist:
    """accelerate's process state over torch.distributed (torchrun or ``accelerate launch``)."""

    def __init__(self, device_name: str, fsdp: bool = False):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType, parse_flag_from_env

        if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
            # LoRA's gradients and optimizer state are a few MB: ZeRO has nothing to shard
            # there, and the frozen base is what train.fsdp shards
            raise ConfigError(
                "DeepSpeed is not supported: launch with recipes/accelerate/ddp.yaml, or with "
                "recipes/accelerate/fsdp.yaml (train.fsdp=true) to shard the frozen base"
            )
        want_cpu = device_name == "cpu" or (device_name == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=want_cpu)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        # FSDP through accelerate's config, or asked for by the recipe (torchrun, CPU/gloo)
        asked = fsdp or self.accelerator.distributed_type == DistributedType.FSDP
        if asked and parse_flag_from_env("FSDP_CPU_RAM_EFFICIENT_LOADING"):
            # transformers then loads empty weights on every rank but the first and expects
            # accelerate's broadcast, which rl_reason.sharding does not do
            raise ConfigError(
                "fsdp_cpu_ram_efficient_loading must be false for rl-reason: set it so in the "
                "accelerate config (recipes/accelerate/fsdp.yaml has it off)"
            )
        self.sharded = asked and self.world > 1
        if asked and self.world == 1:
            log.warning("train.fsdp has no effect with one process; the base is not sharded")

    def prepare_model(self, model):
        """DDP around the model for a multi-process unsharded run; the model itself otherwise."""
        return self.accelerator.prepare_model(model) if self.world > 1 and not self.sharded else model

    def sum(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())

    def gather_objects(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks, for parameters DDP does not manage (the critic). Losses
        are normalised by global counts, so the sum is the full-batch gradient."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        # one all-reduce over a flat copy, not one per matrix (hundreds of small LoRA matrices)
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` is True on every rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def reduce_metrics(dist: Dist, metrics: dict[str, float], how: Mapping[str, Reduction]) -> dict[str, float]:
    """Reduce metrics over ranks: each key as ``how`` declares it, the mean by default (every
    rank holds the same number of samples). NaN and missing values are left out."""
    if dist.world == 1:
        return metrics
    keys = sorted(metrics)
    gathered = dist.gather_objects([metrics.get(k) for k in keys])
    out = {}
    for i, k in enumerate(keys):
        vals = [
            g[i] for g in gathered if g[i] is not None and not (isinstance(g[i], float) and math.isnan(g[i]))
        ]
        if not vals:
            continue
        kind = how.get(k, "mean")
        if kind == "sum":
            out[k] = float(sum(vals))
        elif kind == "max":
            out[k] = float(max(vals))
        else:
            out[k] = float(sum(vals) / len(vals))
    return out
