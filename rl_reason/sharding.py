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


def shard_base(model, device: torch.device) -> None:
    """Shard ``model``'s frozen base in place with FSDP2.

    Units are the modules named in the transformers model's ``_no_split_modules`` (its decoder
    layers); the root unit holds the rest (embeddings, final norm, head, tied or not). The
    mesh is on ``device``'s type: fully_shard's default mesh is CUDA whenever CUDA exists, which
    would move the base of a ``model.device=cpu`` run away from its adapters.
    """
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError as exc:  # older torch: fully_shard is not public yet
        raise ModelError("train.fsdp needs torch >= 2.7 (torch.distributed.fsdp.fully_shard)") from exc
    if "ignored_params" not in inspect.signature(fully_shard).parameters:
        raise ModelError("train.fsdp needs torch >= 2.7 (fully_shard(ignored_params=...))")
    if not torch.distributed.is_initialized():
        raise ModelError("train.fsdp needs several processes: launch with torchrun or accelerate launch")
    from torch.distributed.device_mesh import init_device_mesh

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    unit_names = set(getattr(inner, "_no_split_modules", None) or ())
    units = [m for m in inner.modules() if type(m).__name__ in unit_names]
    if not units:
        raise ModelError(
            f"train.fsdp: found no decoder layers to shard in {type(inner).__name__} "
            f"(its _no_split_modules: {sorted(unit_names)}); train it with train.fsdp=false"
        )
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    ignored = adapter_parameters(model)
    for unit in units:
        fully_shard(unit, mesh=mesh, ignored_params=ignored & set(unit.parameters()))
    fully_shard(model, mesh=mesh, ignored_params=ignored)


def is_sharded(model) -> bool:
    """Whether ``shard_base`` has run on ``model``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch too old to shard at all
        return False
    return isinstance(model, FSDPModule)


def reshard(model) -> None:
    """Free every gathered unit of a sharded model (on every rank at once).

    FSDP2 keeps the root unit gathered after a forward that no backward follows. A
    ``state_dict()`` on one rank alone (rank 0 saving the adapter) would then reshard it on
    that rank only, and the next forward's all-gathers would no longer match across ranks.
    Sampling (the HF engine, also for evaluation) is the only place forwards run without a
    backward after them (the update's no-grad forwards precede its backward), so the engine
    calls this when it is done.
    """
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()
