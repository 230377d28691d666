"""Atomic checkpoints: write to a temporary directory, fsync, rename into place.

Layout of a run directory::

    RUN_DIR/checkpoints/step-000010/
        adapter/              peft adapter (loadable with PeftModel.from_pretrained)
        trainer_state.pt      optimizer, scheduler, step, data cursor, RNG, tracker state
        critic.pt             PPO only: the critic's adapter and value head
        manifest.json         step, config hash, the resolved config, sha256 of every file (written last)

A checkpoint directory without a manifest, or whose files do not match their checksums, is
never chosen for resume; ``find_latest`` skips it with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from rl_reason.errors import CheckpointError

log = logging.getLogger("rl_reason")

MANIFEST = "manifest.json"
PREFIX = "step-"


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    run_dir: Path,
    step: int,
    write: Callable[[Path], None],
    *,
    config_hash: str,
    keep_last: int,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write a checkpoint for ``step``: ``write(tmp_dir)`` fills the directory's files.

    The previous checkpoints stay intact if anything fails (the disk filling up included):
    the partial directory is removed and a CheckpointError says what happened.
    """
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".tmp-{PREFIX}{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        write(tmp)
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"step": step, "config_hash": config_hash, "files": files, **(extra or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync_tree(tmp)
        if final.exists():  # a re-run of the same step after a crash: replace it
            old = root / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = "the disk is full" if exc.errno == 28 else str(exc)
        raise CheckpointError(
            f"could not write the checkpoint for step {step} in {root}: {reason}; "
            "earlier checkpoints are intact — free space and resume"
        ) from exc
    _prune(root, keep_last)
    return final


def _prune(root: Path, keep_last: int) -> None:
    steps = sorted(list_checkpoints(root.parent, validate=False), key=lambda p: p.name)
    for old in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def verify(ckpt: Path) -> Optional[str]:
    """None if the checkpoint is whole, else a short reason it is not."""
    manifest_path = ckpt / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (interrupted while writing)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError):
        return "unreadable manifest"
    for rel, digest in files.items():
        path = ckpt / rel
        if not path.is_file():
            return f"missing file {rel}"
        if _sha256(path) != digest:
            return f"checksum mismatch in {rel}"
    return None


def list_checkpoints(run_dir: Path, validate: bool = True) -> list[Path]:
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))
    if not validate:
        return found
    return [p for p in found if verify(p) is None]


def find_latest(run_dir: Path) -> Optional[Path]:
    """The newest whole checkpoint; broken newer ones are skipped with a warning naming them."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return None
    for ckpt in sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True):
        problem = verify(ckpt)
        if problem is None:
            return ckpt
        warnings.warn(f"skipping checkpoint {ckpt}: {problem}; falling back to an earlier one")
    return None


def read_manifest(ckpt: Path) -> dict:
    return json.loads((ckpt / MANIFEST).read_text())
