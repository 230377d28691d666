"""Long jobs survive: kill, resume, and get the same run; bad situations give clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rl_reason import checkpoint
from rl_reason.cli import main

from .conftest import ROOT, TINY

COMMON = ["train.steps=6", "checkpoint.every=2", "logging.plot=false"]
VOLATILE = ("time/", "throughput/")


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # wall-clock figures (time/*, throughput/*, reward/<checker>/seconds) differ run to run
    return [
        {k: v for k, v in r.items() if not k.startswith(VOLATILE) and not k.endswith("/seconds")}
        for r in rows
    ]


def _adapter(run_dir: Path) -> dict:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rl_reason.cli",
            "train",
            str(TINY),
            "--run-dir",
            str(run_dir),
            *COMMON,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, timeout=300.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", str(TINY), "--run-dir", str(run_dir), *COMMON]) == 0
    return run_dir


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("kill_at", ["checkpoint-2", "step-3-logged"])
def test_sigkill_then_resume_matches_uninterrupted_run(reference_run, tmp_path, kill_at):
    # Kill points are events, not delays: a fixed sleep let a fast machine finish the run first.
    run_dir = tmp_path / "killed"
    proc = _start(run_dir)
    if kill_at == "checkpoint-2":  # right after a checkpoint: resume redoes nothing
        _wait_for(
            lambda: (
                (run_dir / "checkpoints" / "step-000002" / "manifest.json").exists()
                or proc.poll() is not None
            )
        )
    else:  # mid-way between checkpoints: step 3 is lost and must be redone identically
        _wait_for(lambda: _logged_steps(run_dir) >= 4 or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "adapter").exists() or proc.returncode == 0
    assert main(["resume", str(run_dir)]) == 0
    want, got = _adapter(reference_run), _adapter(run_dir)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k  # bitwise
    want_rows, got_rows = _metrics(reference_run), _metrics(run_dir)
    assert [r["step"] for r in got_rows] == list(range(0, 7))  # no duplicate, no missing step
    assert got_rows == want_rows
    steps = [json.loads(x)["step"] for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == 6 * 16


def test_sigterm_checkpoints_prints_resume_and_exits_0(tmp_path):
    run_dir = tmp_path / "term"
    proc = _start(run_dir, "checkpoint.every=0", "train.steps=50")
    metrics = run_dir / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    assert f"rl-reason resume {run_dir}" in out
    latest = checkpoint.find_latest(run_dir)
    assert latest is not None
    done = int(latest.name.split("-")[1])
    assert 1 <= done < 50
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()][-1] == done
    assert main(["resume", str(run_dir), f"train.steps={done + 1}"]) == 0
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()][-1] == done + 1


def test_corrupted_latest_checkpoint_falls_back_with_warning(reference_run, tmp_path):
    import shutil

    run_dir = tmp_path / "corrupt"
    shutil.copytree(reference_run, run_dir)
    latest = checkpoint.find_latest(run_dir)
    assert latest.name == "step-000006"
    state = latest / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="step-000006.*checksum mismatch"):
        assert checkpoint.find_latest(run_dir).name == "step-000004"
    (run_dir / "checkpoints" / "step-000004" / "manifest.json").unlink()  # interrupted write
    with pytest.warns(UserWarning, match="no manifest"):
        assert checkpoint.find_latest(run_dir) is None


def test_disk_full_keeps_previous_checkpoint(tmp_path):
    def ok(d: Path):
        (d / "a.bin").write_bytes(b"1" * 10)

    checkpoint.save(tmp_path, 1, ok, config_hash="h", keep_last=3)

    def full(d: Path):
        (d / "a.bin").write_bytes(b"2" * 5)
        raise OSError(28, "No space left on device")

    with pytest.raises(Exception) as err:
        checkpoint.save(tmp_path, 2, full, config_hash="h", keep_last=3)
    assert "disk is full" in str(err.value) and "step 2" in str(err.value)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000001"]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert (tmp_path / "checkpoints" / "step-000001" / "a.bin").read_bytes() == b"1" * 10


def test_keep_last_prunes_old_checkpoints(tmp_path):
    for step in range(1, 5):
        checkpoint.save(tmp_path, step, lambda d: (d / "x").write_text("x"), config_hash="h", keep_last=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


def test_train_refuses_to_clobber_and_resume_refuses_breaking_changes(reference_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "existing"
    shutil.copytree(reference_run, run_dir)
    assert main(["train", str(TINY), "--run-dir", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["resume", str(run_dir), "lora.r=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lora.r: cannot change") and len(err.strip().splitlines()) == 1
    assert main(["resume", str(run_dir), "algorithm.name=rloo"]) == 2
    assert "algorithm.name" in capsys.readouterr().err


def test_resume_errors_for_missing_or_foreign_dirs(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    assert main(["resume", str(tmp_path / "foreign")]) == 2
    assert "not an rl-reason run dir" in capsys.readouterr().err
