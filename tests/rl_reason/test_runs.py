"""rl_reason.runs: run-directory rules (no clobbering, no empty dir after a failed start) and
what a resume may change."""

from __future__ import annotations

import pytest

from rl_reason import checkpoint, runs
from rl_reason.config import load_config, to_dict
from rl_reason.errors import ConfigError, RunDirError


def _ckpt(run_dir, step=2):
    return checkpoint.save(run_dir, step, lambda d: (d / "adapter").mkdir(), config_hash="h", keep_last=0)


def test_a_new_run_dir_is_made_and_a_used_one_refused(tmp_path):
    run = tmp_path / "r"
    assert runs.prepare_new_run(run, overwrite=False) is True and run.is_dir()
    assert runs.prepare_new_run(run, overwrite=False) is False  # empty: fine, not created here
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunDirError, match="already holds a run \\(metrics.jsonl\\)"):
        runs.prepare_new_run(run, overwrite=False)
    _ckpt(run)
    with pytest.raises(RunDirError, match="already has checkpoints; use --resume"):
        runs.prepare_new_run(run, overwrite=False)
    assert runs.prepare_new_run(run, overwrite=True) is True and list(run.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        runs.prepare_new_run(tmp_path / "f", overwrite=True)


def test_a_failed_start_removes_only_a_dir_without_work(tmp_path):
    empty, worked = tmp_path / "empty", tmp_path / "worked"
    empty.mkdir()
    (empty / "config.yaml").write_text("model: {}\n")  # written at start: not work
    assert runs.holds_work(empty) is False and runs.discard_failed_start(empty) is True
    assert not empty.exists()
    (worked / "adapter").mkdir(parents=True)
    assert runs.holds_work(worked) is True and runs.discard_failed_start(worked) is False
    assert worked.is_dir()


def test_check_unchanged_names_every_fixed_key_changed(tmp_path):
    before = to_dict(load_config(None, []))
    after = to_dict(load_config(None, ["lora.r=8", "train.seed=3", "train.steps=99"]))
    with pytest.raises(ConfigError) as exc:
        runs.check_unchanged(before, after, tmp_path, "the recipe")
    msg = str(exc.value)
    assert "lora.r: cannot change from 16 to 8" in msg and "train.seed: cannot change from 0 to 3" in msg
    assert "train.steps" not in msg  # a resume may run longer
    runs.check_unchanged(before, to_dict(load_config(None, ["train.steps=99"])), tmp_path, "x")


def test_saved_config_needs_a_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        runs.saved_config(tmp_path / "nope")
    with pytest.raises(RunDirError, match="no config.yaml"):
        runs.saved_config(tmp_path)
    cfg = load_config(None, ["train.steps=7"])
    runs.record_config(tmp_path, cfg)
    assert runs.saved_config(tmp_path)["train"]["steps"] == 7


def test_a_finished_run_gets_its_adapter_back_from_the_last_checkpoint(tmp_path):
    ckpt = _ckpt(tmp_path)
    (ckpt / "adapter" / "adapter_model.safetensors").write_text("w")
    assert runs.restore_final_outputs(tmp_path, ckpt) == ["adapter"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_text() == "w"
    assert runs.restore_final_outputs(tmp_path, ckpt) == []  # already there: nothing to do
