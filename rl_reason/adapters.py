"""Adapters saved by an earlier run (an SFT output, a run's ``adapter/`` or ``best_adapter/``,
a checkpoint's ``adapter/``): checked against the model they are meant for, then loaded.

``model.init_adapter`` starts training from one; a ``teacher.adapter`` on the same base is
loaded as a second, frozen adapter of the policy's own model (no second base copy). The
checks run before any tensor is copied, and a mismatch is one line naming both sides:

- the base model the adapter was trained on (``base_model_name_or_path`` in PEFT's
  ``adapter_config.json``) must be the recipe's model (its name or resolved path);
- for ``init_adapter`` the LoRA shape must be the recipe's: rank, alpha, and the same
  adapted modules with the same tensor shapes (PEFT would otherwise load a subset silently or
  fail deep inside with a size error).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch

from rl_reason.errors import ConfigError

CONFIG_FILE = "adapter_config.json"


def read_adapter_config(path: Path, key: str) -> dict:
    """PEFT's adapter_config.json of ``path``; ConfigError naming ``key`` when it is not an adapter."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}: {path} is not a directory; give an adapter dir (a run's adapter/)")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise ConfigError(f"{key}: {path} holds no {CONFIG_FILE}; it is not a PEFT adapter directory")
    try:
        return json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{key}: {cfg_file} is not valid JSON ({exc})") from None


def _same_base(saved: Optional[str], model_name: str, resolved: str) -> bool:
    if not saved:
        return True  # nothing recorded to compare with
    if saved in (model_name, resolved):
        return True
    try:
        return os.path.realpath(saved) == os.path.realpath(resolved)
    except (OSError, ValueError):
        return False


def check_base(path: Path, model_name: str, resolved: str, key: str) -> dict:
    """The adapter's config, after checking it was trained on the recipe's base model."""
    acfg = read_adapter_config(path, key)
    saved = acfg.get("base_model_name_or_path")
    if not _same_base(saved, model_name, resolved):
        raise ConfigError(
            f"{key}: {path} was trained on base model {saved!r}, but model.name is {model_name!r} "
            f"({resolved}); use an adapter of this base, or set model.name to its base"
        )
    return acfg


def load_weights(path: Path, key: str) -> dict[str, torch.Tensor]:
    from peft import load_peft_weights

    try:
        return load_peft_weights(str(path), device="cpu")
    except Exception as exc:  # safetensors / torch raise many types
        raise ConfigError(f"{key}: cannot read the adapter weights in {path}: {exc}".splitlines()[0]) from exc


def load_init_adapter(policy, path: str, model_name: str, resolved: str, lora_cfg) -> None:
    """Copy the adapter at ``path`` into the policy's (fresh) ``default`` adapter, bitwise."""
    from peft import get_peft_model_state_dict

    key = "model.init_adapter"
    path = Path(path).expanduser()
    acfg = check_base(path, model_name, resolved, key)
    r, alpha = acfg.get("r"), acfg.get("lora_alpha")
    if (r, alpha) != (lora_cfg.r, lora_cfg.alpha):
        raise ConfigError(
            f"{key}: {path} has LoRA r={r}, alpha={alpha}, but the recipe's lora has r={lora_cfg.r}, "
            f"alpha={lora_cfg.alpha}; set lora.r / lora.alpha to the adapter's"
        )
    saved = load_weights(path, key)
    ours = get_peft_model_state_dict(policy.model)
    missing = sorted(set(ours) - set(saved))
    extra = sorted(set(saved) - set(ours))
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which this model lacks"
        raise ConfigError(
            f"{key}: {path} adapts other modules than lora.target_modules={lora_cfg.target_modules!r} "
            f"({len(missing)} missing, {len(extra)} extra; it {what}); set lora.target_modules to the "
            "adapter's"
        )
    for name, tensor in saved.items():
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise ConfigError(
                f"{key}: {path} tensor {name} has shape {tuple(tensor.shape)}, the model's has "
                f"{tuple(ours[name].shape)}; the adapter belongs to another base model or LoRA shape"
            )
    policy.load_adapter_state(saved)
