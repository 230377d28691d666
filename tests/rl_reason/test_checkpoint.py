"""rl_reason.checkpoint: atomic write, verify, find the latest whole one, prune."""

from __future__ import annotations

import json

import pytest

from rl_reason import checkpoint
from rl_reason.errors import CheckpointError


def _writer(text: str):
    def write(d):
        (d / "adapter").mkdir()
        (d / "adapter" / "weights.bin").write_text(text)
        (d / "trainer_state.pt").write_text("state " + text)

    return write


def test_save_writes_a_manifest_with_checksums_and_prunes(tmp_path):
    for step in (1, 2, 3):
        path = checkpoint.save(tmp_path, step, _writer(f"w{step}"), config_hash="abc", keep_last=2)
        assert path.name == f"step-{step:06d}"
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["step-000002", "step-000003"]  # keep_last=2 pruned step 1
    manifest = checkpoint.read_manifest(tmp_path / "checkpoints" / "step-000003")
    assert manifest["step"] == 3 and manifest["config_hash"] == "abc"
    assert sorted(manifest["files"]) == ["adapter/weights.bin", "trainer_state.pt"]
    assert all(len(d) == 64 for d in manifest["files"].values())
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_verify_names_what_is_wrong(tmp_path):
    ckpt = checkpoint.save(tmp_path, 5, _writer("x"), config_hash="h", keep_last=0, extra={"seed": 1})
    assert checkpoint.verify(ckpt) is None and checkpoint.read_manifest(ckpt)["seed"] == 1
    (ckpt / "trainer_state.pt").write_text("tampered")
    assert checkpoint.verify(ckpt) == "checksum mismatch in trainer_state.pt"
    (ckpt / "trainer_state.pt").unlink()
    assert checkpoint.verify(ckpt) == "missing file trainer_state.pt"
    (ckpt / "manifest.json").write_text("{not json")
    assert checkpoint.verify(ckpt) == "unreadable manifest"
    (ckpt / "manifest.json").unlink()
    assert checkpoint.verify(ckpt) == "no manifest (interrupted while writing)"


def test_find_latest_skips_a_broken_newer_one(tmp_path):
    good = checkpoint.save(tmp_path, 1, _writer("a"), config_hash="h", keep_last=0)
    bad = checkpoint.save(tmp_path, 2, _writer("b"), config_hash="h", keep_last=0)
    (bad / "adapter" / "weights.bin").write_text("torn")
    with pytest.warns(UserWarning, match="step-000002: checksum mismatch"):
        assert checkpoint.find_latest(tmp_path) == good
    assert checkpoint.find_latest(tmp_path / "nowhere") is None
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path, validate=False)] == [good.name, bad.name]


def test_a_failed_write_leaves_earlier_checkpoints_and_no_partial_dir(tmp_path):
    first = checkpoint.save(tmp_path, 1, _writer("a"), config_hash="h", keep_last=0)

    def fails(d):
        (d / "half").write_text("x")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="step 2 .*the disk is full; earlier checkpoints are intact"):
        checkpoint.save(tmp_path, 2, fails, config_hash="h", keep_last=0)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [first.name]
    assert checkpoint.verify(first) is None


def test_saving_a_step_again_replaces_it(tmp_path):
    checkpoint.save(tmp_path, 4, _writer("old"), config_hash="h", keep_last=0)
    path = checkpoint.save(tmp_path, 4, _writer("new"), config_hash="h2", keep_last=0)
    assert (path / "adapter" / "weights.bin").read_text() == "new"
    assert json.loads((path / "manifest.json").read_text())["config_hash"] == "h2"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000004"]
