"""Run directories: where a run lives, when it may be written, and what a resume may change."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import yaml

from rl_reason import checkpoint
from rl_reason.config import RunConfig, apply_overrides, from_dict, to_dict
from rl_reason.errors import ConfigError, RunDirError

# Keys whose change makes a checkpoint meaningless or the continued run different in kind.
BREAKING_KEYS = (
    "model.name",
    "model.dtype",
    "lora.r",
    "lora.alpha",
    "lora.target_modules",
    "algorithm.name",
    "data.source",
    "data.config_name",
    "data.split",
    "data.prompt_field",
    "data.fields",
    "data.shuffle",
    "data.limit",
    "data.synthetic",
    "rollout.prompts_per_step",
    "rollout.num_generations",
    "train.seed",
)


def default_run_dir(cfg: RunConfig) -> Path:
    return Path(cfg.logging.runs_dir) / str(cfg.logging.run_name)


def prepare_new_run(run_dir: Path, *, overwrite: bool) -> None:
    """Refuse to clobber a run with checkpoints unless told to overwrite it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} is a file; choose another --run-dir")
    has_ckpt = bool(checkpoint.list_checkpoints(run_dir, validate=False))
    if has_ckpt and not overwrite:
        raise RunDirError(
            f"run dir {run_dir} already has checkpoints; use --resume to continue it, "
            "--overwrite to start over, or --run-dir to choose another"
        )
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("params", "fields"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def saved_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} does not exist; give the directory a run wrote")
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} is not an rl-reason run dir (no config.yaml); give the directory a run wrote"
        )
    return yaml.safe_load(path.read_text()) or {}


def resume_config(run_dir: Path, overrides: list[str], new_cfg: Optional[RunConfig] = None) -> RunConfig:
    """The config a resume continues with: the saved one plus safe overrides."""
    saved = saved_config(run_dir)
    data = apply_overrides(saved, overrides) if overrides else saved
    if new_cfg is not None:  # train RECIPE --resume: the recipe must agree on breaking keys
        data = to_dict(new_cfg)
    cfg = from_dict(data, f"{run_dir / 'config.yaml'}" + (" + overrides" if overrides else ""))
    before, after = _flatten(saved), _flatten(to_dict(cfg))
    for key in BREAKING_KEYS:
        changed = [k for k in after if (k == key or k.startswith(key + ".")) and before.get(k) != after.get(k)]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"{k}: cannot change from {before.get(k)!r} to {after.get(k)!r} when resuming "
                f"{run_dir} (it would not continue the same run); start a new run instead"
            )
    return cfg


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    return checkpoint.find_latest(run_dir)
