"""Bad input never crashes a run or wastes one (issue 16).

A table of bad inputs, each run through the real command line in a subprocess: the exit code,
one ``error:`` line as the last line of stderr and no traceback anywhere, and the run dirs
intact afterwards (every checkpoint verifies, metrics.jsonl is strict JSON, the good run used
by the resume rows is byte for byte what it was). Then one test per point of the issue that
needs more than a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_reason import checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "recipes" / "test" / "tiny_grpo.yaml")
BAD = "tests.rl_reason._bad_checkers"
QUICK = ["eval.at_start=false", "eval.at_end=false"]


def cli(args, *, cwd, env=None, pythonpath=None, timeout=240):
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [str(p) for p in pythonpath or []])
    full_env.pop("HF_HUB_OFFLINE", None)
    full_env.pop("RL_REASON_PROGRESS", None)  # these tests read the progress line
    full_env.update(env or {})
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "rl_reason.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    out.wall_s = time.monotonic() - t0
    return out


def strict_json_rows(path: Path) -> list[dict]:
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line.strip()]


def assert_run_dir_sound(run_dir: Path) -> None:
    """Whatever the failed command left is usable: every checkpoint verifies, JSON is JSON."""
    if not run_dir.exists():
        return
    root = checkpoint.checkpoints_dir(run_dir)
    if root.exists():
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        assert [checkpoint.verify(p) for p in dirs] == [None] * len(dirs)
    for name in ("metrics.jsonl", "rollouts.jsonl"):
        if (run_dir / name).exists():
            strict_json_rows(run_dir / name)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A finished two-step run with a checkpoint; resume rows must leave it as it is."""
    base = tmp_path_factory.mktemp("good")
    run_dir = base / "run"
    out = cli(["train", TINY, "--run-dir", run_dir, "train.steps=2", *QUICK], cwd=base)
    assert out.returncode == 0, out.stderr
    return run_dir


def _files(tmp: Path) -> dict[str, Path]:
    (tmp / "mods").mkdir()
    (tmp / "mods" / "syntax_mod.py").write_text("def check(completion, fields):\n    return 1.0 +\n")
    (tmp / "mods" / "name_mod.py").write_text(
        "import os\n\nVALUE = undefined_name + 1\n\ndef check(c, f):\n    return 1.0\n"
    )
    (tmp / "empty.jsonl").write_text("")
    (tmp / "badline.jsonl").write_text('{"q": "a", "a": "1"}\n{"q": "b", "a": "2"}\n{"q": oops}\n')
    (tmp / "notobj.jsonl").write_text('{"q": "a", "a": "1"}\n[1, 2]\n')
    return {"mods": tmp / "mods"}


def checkers(spec: str) -> str:
    return f"rewards.checkers=[{spec}]"


def data(name: str) -> list[str]:
    return [f"data.source={{tmp}}/{name}", "data.prompt_field=q", "data.fields={answer: a}"]


# id, argv after the command (``{tmp}``/``{run}``/``{good}`` filled in), code, needle, extra env
TABLE = [
    (
        "builtin_param_typo",
        ["validate", TINY, checkers('{name: regex, params: {patern: "[0-9]"}}')],
        2,
        "rewards.checkers[0].params: unknown param 'patern' for checker 'regex' (did you mean 'pattern'?)",
        {},
    ),
    (
        "custom_param_typo",
        [
            "train",
            TINY,
            "--run-dir",
            "{run}",
            checkers(f"{{name: '{BAD}:needs_threshold', params: {{threshhold: 3}}}}"),
        ],
        2,
        "unknown param 'threshhold'",
        {},
    ),
    (
        "custom_param_missing",
        ["train", TINY, "--dry-run", checkers(f"{{name: '{BAD}:needs_threshold'}}")],
        2,
        "needs param 'threshold' (no default)",
        {},
    ),
    (
        "checker_syntax_error",
        ["validate", TINY, checkers("{name: 'syntax_mod:check'}")],
        2,
        "SyntaxError: invalid syntax",
        {},
    ),
    (
        "checker_name_error",
        ["train", TINY, "--run-dir", "{run}", checkers("{name: 'name_mod:check'}")],
        2,
        "NameError: name 'undefined_name' is not defined (",
        {},
    ),
    (
        "checker_module_not_on_path",
        ["validate", TINY, checkers("{name: 'no_such_mod_xyz:check'}")],
        2,
        "set PYTHONPATH to the directory that holds it",
        {},
    ),
    (
        "empty_data_file",
        ["train", TINY, "--run-dir", "{run}", *data("empty.jsonl")],
        2,
        "empty.jsonl: the file is empty",
        {},
    ),
    (
        "bad_json_line",
        ["train", TINY, "--dry-run", *data("badline.jsonl")],
        2,
        "badline.jsonl: row 3: not valid JSON",
        {},
    ),
    (
        "json_line_not_an_object",
        ["train", TINY, "--run-dir", "{run}", *data("notobj.jsonl")],
        2,
        "notobj.jsonl: row 2: a JSON object is expected, got list",
        {},
    ),
    (
        "hub_model_offline",
        ["train", TINY, "--run-dir", "{run}", "model.name=nobody-here/no-model"],
        1,
        "model.name='nobody-here/no-model': HF_HUB_OFFLINE is set, and the model is not in the Hugging Face cache ({tmp}/hf)",
        {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "{tmp}/hf"},
    ),
    (
        "hub_dataset_unreachable",
        ["train", TINY, "--dry-run", "data.source=nobody-here/no-set"],
        2,
        "data.source='nobody-here/no-set': the hub (127.0.0.1) is not reachable",
        {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": "{tmp}/hf", "HF_DATASETS_CACHE": "{tmp}/ds"},
    ),
    (
        "resume_with_param_typo",
        ["resume", "{good}", "train.steps=4", checkers("{name: regex, params: {mod: fraction, pattern: x}}")],
        2,
        "unknown param 'mod' for checker 'regex' (did you mean 'mode'?)",
        {},
    ),
    # the run starts, then stops itself: the checker is the recipe's, the exit code is 1
    (
        "huge_reward",
        [
            "train",
            TINY,
            "--run-dir",
            "{run}",
            *QUICK,
            "train.steps=6",
            "checkpoint.keep_last=3",
            checkers(f"{{name: '{BAD}:huge_after', params: {{after: 32, counter: '{{tmp}}/n'}}}}"),
        ],
        1,
        "stopped at step 5: 3 steps in a row skipped (train.max_bad_steps=3); first: reward 1e+200",
        {},
    ),
    (
        "checker_raises_always",
        [
            "train",
            TINY,
            "--run-dir",
            "{run}",
            *QUICK,
            "train.steps=6",
            checkers(f"{{name: '{BAD}:always_raises'}}"),
        ],
        1,
        f"first: checker '{BAD}:always_raises' raised on 16/16 samples",
        {},
    ),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_bad_input_is_one_line_and_loses_nothing(row, tmp_path, good_run):
    name, argv, code, needle, env = row
    dirs = _files(tmp_path)
    run_dir = tmp_path / "run"
    fill = lambda s: (
        str(s).replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)).replace("{good}", str(good_run))
    )
    before = tree_digest(good_run)
    out = cli(
        [fill(a) for a in argv],
        cwd=tmp_path,
        env={k: fill(v) for k, v in env.items()},
        pythonpath=[dirs["mods"]],
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, out.stderr[-2000:]
    assert lines and lines[-1].startswith("error: "), out.stderr[-2000:]
    assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:]
    assert fill(needle) in lines[-1], lines[-1]
    assert "Traceback" not in out.stderr + out.stdout
    assert_run_dir_sound(run_dir)
    assert tree_digest(good_run) == before  # the good run is untouched
    if name.startswith("hub_"):
        # no minute of retries (45d180b: 50 s and 45 lines); the bound leaves room for a loaded
        # machine, where importing torch and transformers alone can take 15-20 s
        assert out.wall_s < 40, f"took {out.wall_s:.1f} s"


# --------------------------------------------------------------------------- per point


def test_huge_reward_skips_steps_keeps_the_last_good_checkpoint(tmp_path):
    """Point 1: 1e200 from step 3 on: steps 3-5 are skipped and logged, the run stops at 5 with
    the step-2 checkpoint intact and the adapter of step 5 equal to it (nothing NaN got in)."""
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    spec = f"{{name: '{BAD}:huge_after', params: {{after: 32, counter: '{tmp_path}/n'}}}}"
    out = cli(
        [
            "train",
            TINY,
            "--run-dir",
            run_dir,
            *QUICK,
            "train.steps=6",
            "checkpoint.keep_last=3",
            checkers(spec),
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    assert "step 3 skipped (1/3 in a row): reward 1e+200; the adapter is unchanged" in out.stdout
    names = [p.name for p in checkpoint.list_checkpoints(run_dir)]
    assert names == ["step-000002", "step-000004", "step-000005"], names
    a2 = load_file(
        checkpoint.checkpoints_dir(run_dir) / "step-000002" / "adapter" / "adapter_model.safetensors"
    )
    a5 = load_file(
        checkpoint.checkpoints_dir(run_dir) / "step-000005" / "adapter" / "adapter_model.safetensors"
    )
    assert a2.keys() == a5.keys() and all(bool((a2[k] == a5[k]).all()) for k in a2)
    rows = strict_json_rows(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["guard/bad_step"] for r in rows] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert [r.get("policy/skipped") for r in rows[2:]] == [1.0] * 3
    assert "resume" in out.stderr.strip().splitlines()[-1]
    # the printed resume command continues the run (the checker is fixed by then)
    spec_ok = f"{{name: '{BAD}:huge_after', params: {{after: 100000, counter: '{tmp_path}/m'}}}}"
    out = cli(["resume", run_dir, checkers(spec_ok)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [r["step"] for r in strict_json_rows(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_no_learning_run_says_so(tmp_path):
    """Point 5: a reward that never varies: the progress line says no group was kept, and the
    run warns once, in words, what to do."""
    out = cli(
        [
            "train",
            TINY,
            "--run-dir",
            tmp_path / "run",
            *QUICK,
            "logging.progress=true",
            checkers(f"{{name: '{BAD}:zero'}}"),
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "step 1/4  reward 0.000" in out.stdout and "groups 0/4 kept" in out.stdout
    assert out.stdout.count("no update in the last 3 steps") == 1
    assert "shaping reward" in out.stdout and "rollout.num_generations" in out.stdout


def test_summary_line_counts_groups_and_shouts_timeouts():
    """Points 5 and 6 on the plain progress line."""
    from rl_reason.tracking import _summary_line

    m = {
        "reward/total/mean": 0.0,
        "count/groups": 4.0,
        "count/groups_kept": 1.0,
        "count/samples": 16.0,
        "reward/slow/timeouts": 12.0,
        "reward/math_answer/timeouts": 0.0,
        "time/step_s": 60.0,
    }
    line = _summary_line(3, 10, m)
    assert "groups 1/4 kept" in line and line.endswith("TIMEOUTS slow 12/16 checks")
    assert "TIMEOUTS" not in _summary_line(3, 10, dict(m, **{"reward/slow/timeouts": 8.0}))
    assert _summary_line(3, 10, {"guard/bad_step": 1.0}).endswith("SKIPPED (see warning)")


def test_custom_checker_path_is_recorded_so_resume_works_as_printed(tmp_path):
    """Point 10: a checker found through PYTHONPATH; the printed `rl-reason resume RUN` works
    from another directory without it."""
    mods = tmp_path / "mine"
    mods.mkdir()
    (mods / "my_checks.py").write_text(
        "def digits(c, f):\n    return float(sum(ch.isdigit() for ch in c) > 2)\n"
    )
    run_dir = tmp_path / "run"
    out = cli(
        [
            "train",
            TINY,
            "--run-dir",
            run_dir,
            *QUICK,
            "train.steps=2",
            checkers("{name: 'my_checks:digits'}"),
        ],
        cwd=tmp_path,
        pythonpath=[mods],
    )
    assert out.returncode == 0, out.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = cli(["resume", run_dir, "train.steps=3"], cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert [r["step"] for r in strict_json_rows(run_dir / "metrics.jsonl")] == [1, 2, 3]


def test_libraries_progress_bars_are_quiet_without_progress(tmp_path):
    """Point 14: logging.progress=false silences transformers' and datasets' own bars."""
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"q": f"What is {i} + 1?", "a": str(i + 1)}) + "\n" for i in range(8)))
    out = cli(
        [
            "train",
            TINY,
            "--run-dir",
            tmp_path / "run",
            *QUICK,
            "train.steps=1",
            "logging.progress=false",
            f"data.source={path}",
            "data.prompt_field=q",
            "data.fields={answer: a}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "Loading weights" not in text and "Generating train split" not in text, text[-2000:]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_non_finite_gradient_is_never_stepped_on(tmp_path, tiny_cfg, monkeypatch, algo):
    """Point 1: a NaN gradient (as a NaN loss gives) skips the optimizer step; three in a row
    stop the run with the adapter as it was and a checkpoint written."""
    import torch

    from rl_reason.errors import RunStoppedError
    from rl_reason.trainer import Trainer

    cfg = tiny_cfg(
        "train.steps=5",
        "eval.at_start=false",
        "eval.at_end=false",
        f"algorithm.name={algo}",
        "checkpoint.every=0",
    )
    trainer = Trainer(cfg, tmp_path / "run")
    before = {k: v.detach().clone() for k, v in trainer.policy.model.named_parameters() if v.requires_grad}
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: torch.tensor(float("nan"))
    )
    with pytest.raises(RunStoppedError, match=r"stopped at step 3: .*first: non-finite gradient"):
        trainer.run()
    after = dict(trainer.policy.model.named_parameters())
    assert all(torch.equal(before[k], after[k].detach()) for k in before)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == ["step-000003"]
    rows = strict_json_rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["guard/bad_step"] for r in rows] == [1.0, 1.0, 1.0]
    assert all(r["policy/grad_norm"] is None for r in rows)  # NaN is logged as null


def test_hanging_checker_says_timeouts_on_the_progress_line(tmp_path):
    """Point 6: every check of a step timed out: the progress line says so."""
    out = cli(
        [
            "train",
            TINY,
            "--run-dir",
            tmp_path / "run",
            *QUICK,
            "logging.progress=true",
            "train.steps=1",
            "rollout.prompts_per_step=2",
            "rollout.num_generations=2",
            "rewards.timeout_s=0.3",
            "rewards.workers=2",
            checkers(f"{{name: '{BAD}:hang', alias: hang}}"),
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "TIMEOUTS hang 4/4 checks" in out.stdout, out.stdout
