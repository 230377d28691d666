"""stages: sft then grpo in one run dir; a run killed mid-stage-2 resumes at that stage and step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_reason.errors import ConfigError
from rl_reason.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
STAGES = ROOT / "recipes" / "test" / "tiny_stages.yaml"
DATA = ROOT / "recipes" / "test" / "tiny_sft.jsonl"


def _cfg(*overrides):
    from rl_reason.config import load_config

    return load_config(STAGES, [f"sft.source={DATA}", *overrides])


def test_stage_config_merges_the_stage_sections_and_seeds_the_adapter(tmp_path):
    from rl_reason.stages import stage_config

    cfg = _cfg()
    sft = stage_config(cfg, 0, None)
    rl = stage_config(cfg, 1, str(tmp_path / "a"))
    assert sft.sft.steps == 4 and sft.checkpoint.every == 2 and sft.stages == []
    assert rl.algorithm.name == "grpo" and rl.train.steps == 6 and rl.checkpoint.every == 1
    assert rl.model.init_adapter == str(tmp_path / "a")
    assert rl.train.lr == cfg.train.lr  # what a stage does not override is the recipe's


@pytest.mark.parametrize(
    "stages, words",
    [
        ("[{name: a, kind: nope}]", "stages[0].kind: 'nope' is not one of: sft, grpo"),
        ("[{name: a, kind: grpo}, {name: a, kind: sft}]", "stages[1].name: stage name 'a' is used twice"),
        ("[{name: a, kind: grpo, train: {bogus: 1}}]", "stages[0].train.bogus: unknown key"),
        ("[{name: 'a/b', kind: grpo}]", "stages[0].name"),
        ("[{name: a, kind: sft}]", None),
    ],
)
def test_bad_stages_are_one_line_errors(stages, words):
    if words is None:  # an sft stage without a data file
        from rl_reason.config import load_config

        with pytest.raises(ConfigError, match=r"stages\[0\].sft.source"):
            load_config(STAGES, [f"stages={stages}", "sft.source=null"])
        return
    with pytest.raises(ConfigError) as exc:
        _cfg(f"stages={stages}")
    assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.slow
def test_two_stages_killed_mid_stage_2_resume_at_that_stage_and_step(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "rl_reason.cli"]
    over = [f"sft.source={DATA}", "logging.plot=false"]
    proc = subprocess.Popen(
        [*cli, "train", str(STAGES), *over, "--run-dir", str(run)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    rl = run / "stages" / "rl"
    target = rl / "checkpoints" / "step-000002" / "manifest.json"
    deadline = time.time() + 400
    while time.time() < deadline and not target.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists(), proc.stderr.read().decode()[-2000:]
    from rl_reason import checkpoint

    at_kill = checkpoint.find_latest(rl)
    assert at_kill is not None and not (rl / "stage.json").exists()
    step = int(checkpoint.read_manifest(at_kill)["step"])
    assert 2 <= step < 6
    cold = run / "stages" / "cold_start"
    assert (cold / "stage.json").is_file()
    cold_metrics = (cold / "metrics.jsonl").read_bytes()
    cold_adapter = (cold / "adapter" / "adapter_model.safetensors").read_bytes()

    done = subprocess.run(
        [*cli, "resume", str(run)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {rl} from step-{step:06d}" in done.stderr
    assert "cold_start (sft)" not in done.stderr  # the finished stage is not run again
    assert (cold / "metrics.jsonl").read_bytes() == cold_metrics
    assert (cold / "adapter" / "adapter_model.safetensors").read_bytes() == cold_adapter
    steps = [r["step"] for r in read_jsonl(rl / "metrics.jsonl")]
    assert steps == [0, 1, 2, 3, 4, 5, 6]  # every step once, none twice
    assert json.loads((rl / "stage.json").read_text())["name"] == "rl"
    assert (rl / "adapter" / "adapter_model.safetensors").is_file()
    import yaml

    rl_cfg = yaml.safe_load((rl / "config.yaml").read_text())
    assert rl_cfg["model"]["init_adapter"] == str(cold / "adapter")  # seeded by the SFT stage
    # a second resume has nothing left to do
    again = subprocess.run(
        [*cli, "resume", str(run)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "stages done" in again.stdout
