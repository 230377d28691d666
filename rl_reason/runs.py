"""Run directories: where a run lives, when it may be written, and what a resume may change.

Which keys a resume may change is read from the schema (``config.fixed_on_resume()``, the
``resume_safe`` metadata of each field). A resume compares the config it would continue with
against the config stored in the latest checkpoint's manifest, so an edit of
``RUN_DIR/config.yaml`` is caught exactly like a command-line override.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rl_reason import checkpoint
from rl_reason.config import (
    RunConfig,
    _Converter,
    apply_overrides,
    dump_yaml,
    fixed_on_resume,
    from_dict,
    read_yaml_sections,
    to_dict,
)
from rl_reason.errors import ConfigError, RunDirError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CRITIC_FILE = "critic.pt"


def default_run_dir(cfg: RunConfig) -> Path:
    return Path(cfg.logging.runs_dir) / str(cfg.logging.run_name)


def _has_rows(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def holds_work(run_dir: Path) -> bool:
    """Whether a run dir holds anything a run produced: checkpoints, logged steps, an adapter."""
    run_dir = Path(run_dir)
    return bool(
        checkpoint.list_checkpoints(run_dir, validate=False)
        or _has_rows(run_dir / METRICS_FILE)
        or (run_dir / "adapter").exists()
    )


def prepare_new_run(run_dir: Path, *, overwrite: bool) -> bool:
    """Refuse to clobber a run unless told to overwrite it; True when the dir was created here.

    A run dir with checkpoints, or with logged steps (``metrics.jsonl``) but no checkpoint,
    is a run: starting another one there would mix or overwrite its files.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} is a file; choose another --run-dir")
    if not overwrite:
        if checkpoint.list_checkpoints(run_dir, validate=False):
            raise RunDirError(
                f"run dir {run_dir} already has checkpoints; use --resume to continue it, "
                "--overwrite to start over, or --run-dir to choose another"
            )
        if _has_rows(run_dir / METRICS_FILE):
            raise RunDirError(
                f"run dir {run_dir} already holds a run (metrics.jsonl) but no checkpoint to "
                "resume from; use --overwrite to start over, or --run-dir to choose another"
            )
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    return created


def discard_failed_start(run_dir: Path) -> bool:
    """After a start that failed: remove the run dir if nothing of value was written to it."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not holds_work(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    return False


# --------------------------------------------------------------------------- resume


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
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} does not exist; give the directory a run wrote")
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} is not an rl-reason run dir (no config.yaml); give the directory a run wrote"
        )
    return read_yaml_sections(path, "a run's config")


def checkpoint_config(ckpt: Path) -> Optional[dict]:
    """The resolved config a checkpoint was trained with (None for checkpoints that predate it)."""
    stored = checkpoint.read_manifest(ckpt).get("config")
    if not isinstance(stored, dict):
        return None
    try:  # fill fields added to the schema since, so they do not read as changes
        return to_dict(_Converter(str(ckpt)).build(RunConfig, stored, ""))
    except ConfigError:
        return stored


@dataclass
class Resume:
    """What a resume continues: the config, the checkpoint, and the step it holds."""

    cfg: RunConfig
    checkpoint: Path
    step: int

    @property
    def finished(self) -> bool:
        return self.step >= self.cfg.train.steps


def _fmt(value: Any) -> str:
    return repr(value)


def check_unchanged(before: dict, after: dict, run_dir: Path, where: str) -> None:
    """Refuse, in one line naming each key, changes to keys a resume may not change."""
    old, new = _flatten(before), _flatten(after)
    changed = []
    for key in fixed_on_resume():
        if old.get(key) != new.get(key):
            changed.append(f"{key}: cannot change from {_fmt(old.get(key))} to {_fmt(new.get(key))}")
    if changed:
        raise ConfigError(
            f"{'; '.join(changed)} when resuming {run_dir} ({where}; it would not continue the "
            "same run); put the old value back, or start a new run instead"
        )


def plan_resume(run_dir: Path, overrides: list[str], new_cfg: Optional[RunConfig] = None) -> Resume:
    """The config a resume continues with (``RUN_DIR/config.yaml`` plus safe overrides, or the
    recipe of ``train --resume``), checked against the latest checkpoint's own config."""
    run_dir = Path(run_dir)
    saved = saved_config(run_dir)
    source = str(run_dir / CONFIG_FILE)
    if new_cfg is not None:  # train RECIPE --resume: the recipe must agree on fixed keys
        data, source = to_dict(new_cfg), "the recipe"
    elif overrides:
        data, source = apply_overrides(saved, overrides), source + " + overrides"
    else:
        data = saved
    cfg = from_dict(data, source)
    ckpt = checkpoint.find_latest(run_dir)
    if ckpt is None:
        raise RunDirError(f"{run_dir} has no usable checkpoint to resume from; start it with train")
    stored = checkpoint_config(ckpt)
    if stored is not None:
        edited = _flatten(stored) != _flatten(to_dict(from_dict(saved, str(run_dir / CONFIG_FILE))))
        where = f"checkpoint {ckpt.name} was trained with the old value"
        if edited and new_cfg is None:
            where += f"; {CONFIG_FILE} was edited since"
        check_unchanged(stored, to_dict(cfg), run_dir, where)
    else:  # a checkpoint from before configs were stored in manifests
        check_unchanged(saved, to_dict(cfg), run_dir, f"{CONFIG_FILE} has the old value")
    step = int(checkpoint.read_manifest(ckpt).get("step", 0))
    return Resume(cfg=cfg, checkpoint=ckpt, step=step)


def resume_config(run_dir: Path, overrides: list[str], new_cfg: Optional[RunConfig] = None) -> RunConfig:
    """The config a resume continues with; see ``plan_resume``."""
    return plan_resume(run_dir, overrides, new_cfg).cfg


def record_config(run_dir: Path, cfg: RunConfig) -> None:
    """Write the config a resumed run continues with as ``RUN_DIR/config.yaml`` (atomically)."""
    path = Path(run_dir) / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    tmp.write_text(dump_yaml(cfg))
    os.replace(tmp, path)


def restore_final_outputs(run_dir: Path, ckpt: Path) -> list[str]:
    """A finished run whose final adapter is missing (killed after its last checkpoint): copy
    it from that checkpoint, so nothing needs the model. Returns what was restored."""
    run_dir, restored = Path(run_dir), []
    if not (run_dir / "adapter").exists() and (ckpt / "adapter").is_dir():
        shutil.copytree(ckpt / "adapter", run_dir / "adapter")
        restored.append("adapter")
    if (ckpt / CRITIC_FILE).is_file() and not (run_dir / CRITIC_FILE).exists():
        shutil.copy2(ckpt / CRITIC_FILE, run_dir / CRITIC_FILE)
        restored.append(CRITIC_FILE)
    return restored


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    return checkpoint.find_latest(run_dir)
