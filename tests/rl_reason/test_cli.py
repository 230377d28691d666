import subprocess
import sys
from pathlib import Path

import pytest

from rl_reason.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "recipes" / "test" / "tiny_grpo.yaml")


def test_validate_prints_resolved_config(capsys):
    assert main(["validate", TINY, "train.steps=11"]) == 0
    out = capsys.readouterr().out
    assert "steps: 11" in out and "name: tiny-random" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["validate", TINY, "train.bogus=1"], "train.bogus: unknown key"),
        (["validate", TINY, "rollout.num_generations=1"], "rollout.num_generations"),
        (["validate", TINY, "train.lr=-1"], "train.lr: must be > 0"),
        (["validate", TINY, "rewards.checkers=[{name: no_such_checker}]"], "known names"),
        (["train", TINY, "model.name=x", "train.lr=-1"], "train.lr"),
        (["resume", "/nonexistent/run"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "rl_reason.cli", "validate", TINY, "train.stepz=1"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: train.stepz: unknown key")
