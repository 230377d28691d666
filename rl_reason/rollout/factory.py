"""Pick the rollout engine a recipe names (``rollout.engine``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rl_reason.config import RolloutConfig
from rl_reason.distributed import Dist, Lockstep
from rl_reason.errors import ConfigError


def make_engine(
    rollout_cfg: RolloutConfig,
    policy,
    run_dir: Path,
    lockstep: Optional[Lockstep] = None,
    dist: Optional[Dist] = None,
):
    """The engine for ``rollout_cfg.engine``, sampling from ``policy``'s live adapter.

    ``lockstep`` (the trainer's Dist) is given when the base is sharded (train.fsdp); ``dist``
    tells the server engine its rank and the number of processes.
    """
    if rollout_cfg.engine in ("vllm", "server"):
        from rl_reason.moe import vllm_refusal  # MoE + LoRA: the hf engine only (docs/MOE.md)

        problem = vllm_refusal(policy, rollout_cfg.engine)
        if problem:
            raise ConfigError(problem)
    if rollout_cfg.engine == "hf":
        from rl_reason.rollout.hf import HFEngine

        return HFEngine(policy, batch_size=rollout_cfg.generation_batch_size, lockstep=lockstep)
    if rollout_cfg.engine == "vllm":
        if lockstep is not None:
            raise ConfigError(
                "rollout.engine=vllm with train.fsdp: colocated vLLM holds the whole base on every "
                "GPU, which sharding is meant to avoid; use rollout.engine=server, or train.fsdp=false"
            )
        from rl_reason.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(policy, rollout_cfg, run_dir)
    if rollout_cfg.engine == "server":
        from rl_reason.rollout.server import ServerEngine

        return ServerEngine(policy, rollout_cfg, run_dir, dist=dist)
    raise ConfigError(f"rollout.engine: {rollout_cfg.engine!r} is not one of hf, vllm, server")
