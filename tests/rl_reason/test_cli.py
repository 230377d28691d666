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
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: train.stepz: unknown key")


def test_demo_recipe_is_shipped_and_mirrored_in_recipes(capsys):
    """The package embeds the demo recipe (so `rl-reason demo` works from a wheel); the copy
    under recipes/ is what users read and must not drift from it."""
    from rl_reason.demo import DEMO_RECIPE

    mirror = ROOT / "recipes" / "demo" / "grpo_arith.yaml"
    assert DEMO_RECIPE.read_text() == mirror.read_text()
    assert main(["validate", str(DEMO_RECIPE)]) == 0
    out = capsys.readouterr().out
    assert "name: smollm2-135m-instruct" in out and "boxed_format" in out


def test_overrides_may_follow_options(tmp_path, capsys):
    assert main(["train", TINY, "--dry-run", "--run-dir", str(tmp_path / "r"), "train.steps=3"]) == 0
    assert "3 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["train", TINY, "--dry-run", "--bogus-flag"])
    assert exc.value.code == 2


def test_deepspeed_launch_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    code = main(["train", str(TINY), "--run-dir", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "DeepSpeed is not supported" in err and "ddp.yaml" in err


def test_fsdp_with_cpu_ram_efficient_loading_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    code = main(["train", str(TINY), "--run-dir", str(tmp_path / "f"), "train.fsdp=true"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "fsdp_cpu_ram_efficient_loading must be false" in err


def test_fresh_train_prints_the_run_dir_once(tmp_path, capsys):
    run = tmp_path / "once"
    args = ["train.steps=1", "eval.at_start=false", "eval.at_end=false", "checkpoint.every=0"]
    assert main(["train", str(TINY), "--run-dir", str(run), *args, "logging.progress=false"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"run dir: {run}") == 1, out
    assert f"adapter: {run / 'adapter'} (step 1 of 1)" in out and (run / "adapter").is_dir()
