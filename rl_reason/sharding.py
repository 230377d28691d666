"""FSDP for a LoRA policy: shard the frozen base across processes, keep the adapters whole.

Why not accelerate's FSDP preparation: it shards *every* parameter, adapters included, so the
adapter becomes a set of DTensor shards that peft can neither save nor load nor fold into the
base, and every optimizer and checkpoint path would need a gather. Here only the frozen base
weights are sharded (torch's ``fully_shard`` per decoder layer, then the root); the LoRA
matrices (actor and critic) are ``ignored_params``: plain tensors, the same on every rank,
whose gradients the trainer all-reduces itself (``Dist.sum_grads``), exactly as it does for a
PPO critic under DDP. Nothing downstream (checkpoints, adapter saving, resume, the engines'
adapter sync) sees a DTensor.

The price of sharding is that every forward is a collective: all ranks must run the same
number of forwards in the same order. The HF engine keeps decoding until every rank is done
and runs empty batches for ranks with fewer prompts (``HFEngine(lockstep=...)``); the trainer
pads every rank to the same number of micro-batches with rows that carry no loss.
"""

from __future__ import annotations

import inspect

import torch

from rl_reason.errors import ModelError


def adapter_parameters(model) -> set[torch.nn.Parameter]:
    """Every LoRA matrix of every adapter (``lora_A``/``lora_B``/embedding variants)."""
    return {p for n, p in model.named_parameters() if ".lora_" in n}


def shard_base(model, device: torch.device) -> int:
    """Shard ``model``'s frozen base in place with FSDP2; returns the number of units sharded.

    Units are the modules named in the transformers model's ``_no_split_modules`` (its decoder
    layers); the root unit holds the rest (embeddings, final norm, head, tied or not). The
    mesh is on ``device``'s type: fully_shard's default mesh is CUDA whenever CUDA exists, which
    would move the base of a ``model.device=cpu`` run away from its adapters.
    """
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError as exc:  # torch < 2.6
        raise ModelError("train.fsdp needs torch >= 2.7 (torch.distributed.fsdp.fully_shard)") from exc
    if "ignored_params" not in inspect.signature(fully_shard).parameters:
        raise ModelError("train.fsdp needs torch >= 2.7 (fully_shard(ignored_params=...))")
    if not torch.distributed.is_initialized():
        raise ModelError("train.fsdp needs several processes: launch with torchrun or accelerate launch")
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    unit_names = set(getattr(inner, "_no_split_modules", None) or ())
    if not unit_names:
        raise ModelError(
            f"train.fsdp: {type(inner).__name__} names no decoder-layer class (_no_split_modules); "
            "train it with DDP (train.fsdp=false)"
        )
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    ignored = adapter_parameters(model)
    units = [m for m in inner.modules() if type(m).__name__ in unit_names]
    if not units:
        raise ModelError(f"train.fsdp: no module of class {sorted(unit_names)} in {type(inner).__name__}")
    for unit in units:
        fully_shard(unit, mesh=mesh, ignored_params=ignored & set(unit.parameters()))
    fully_shard(model, mesh=mesh, ignored_params=ignored)
    return len(units) + 1


def reshard(model) -> None:
    """Free every gathered unit of a sharded model (on every rank at once).

    FSDP2 keeps the root unit gathered after a forward that no backward follows (sampling,
    evaluation). A ``state_dict()`` on one rank alone (rank 0 saving the adapter) would then
    reshard it on that rank only, and the next forward's all-gathers would no longer match
    across ranks. Called after sampling and before rank-0-only saves.
    """
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def local_fraction(model) -> float:
    """Share of the base's parameter elements held on this rank (1.0 when unsharded)."""
    from torch.distributed.tensor import DTensor

    local = full = 0
    for p in model.parameters():
        if isinstance(p, DTensor):
            local += p.to_local().numel()
            full += p.numel()
        elif not p.requires_grad:
            local += p.numel()
            full += p.numel()
    return local / max(full, 1)
