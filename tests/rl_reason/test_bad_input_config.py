"""Bad input around recipes, run dirs and resume: one line, the right exit code, no work lost.

Each row of CASES runs one command against a copy of a finished tiny run and asserts the exit
code, that the message is one line with no traceback, and that the run's checkpoints, adapter
and logs are untouched. Rows that must fail before any model loads run with the Trainer
replaced by a stub that fails the test if it is ever built.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from rl_reason.cli import main

from .conftest import TINY

RUN_ARGS = [
    "train.steps=2",
    "checkpoint.every=1",
    "logging.plot=false",
    "eval.limit=4",
    "data.template=plain",
    "data.system_prompt=Answer briefly.",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", str(TINY), "--run-dir", str(run_dir), *RUN_ARGS]) == 0
    return run_dir


def _snapshot(run_dir: Path) -> dict[str, str]:
    """sha256 of everything a run produced (config.yaml aside: rows edit it)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file() and p.name != "config.yaml":
            out[str(p.relative_to(run_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _edit_config(**changes):
    def edit(run: Path, tmp: Path) -> None:
        path = run / "config.yaml"
        cfg = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            section, name = key.split("__")
            cfg[section][name] = value
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    return edit


def _rows_file(name: str, rows: list) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    return make


GOOD_ROWS = [{"question": "1 + 1", "answer": "2"}, {"question": "2 + 2", "answer": "4"}]


@dataclass
class Case:
    id: str
    argv: Callable[[Path, Path], list[str]]  # (copy of the finished run, tmp dir) -> argv
    code: int
    needles: tuple[str, ...]
    prepare: Optional[Callable[[Path, Path], None]] = None
    loads_model: bool = False  # False: the Trainer must never be built
    env: dict = field(default_factory=dict)
    run_dir_removed: bool = False  # the command's own new run dir must not be left behind
    stdout_needle: Optional[str] = None


def _validate(*overrides):
    return lambda run, tmp: ["validate", str(TINY), *[o.format(tmp=tmp) for o in overrides]]


def _write(name: str, rows: list):
    make = _rows_file(name, rows)
    return lambda run, tmp: make(tmp) and None


CASES = [
    # issue 16.3: an edit of RUN_DIR/config.yaml is refused like an override, naming each key
    Case(
        "edited lora.r",
        lambda run, tmp: ["resume", str(run), "train.steps=3"],
        2,
        ("lora.r: cannot change from 4 to 8", "config.yaml was edited"),
        prepare=_edit_config(lora__r=8),
    ),
    Case(
        "edited lora.r and alpha",
        lambda run, tmp: ["resume", str(run), "train.steps=3"],
        2,
        ("lora.r: cannot change from 4 to 8", "lora.alpha: cannot change from 8 to 16"),
        prepare=_edit_config(lora__r=8, lora__alpha=16),
    ),
    Case(
        "edited algorithm",
        lambda run, tmp: ["resume", str(run), "train.steps=3"],
        2,
        ("algorithm.name: cannot change from 'grpo' to 'rloo'",),
        prepare=_edit_config(algorithm__name="rloo"),
    ),
    Case("override lora.r", lambda run, tmp: ["resume", str(run), "lora.r=8"], 2, ("lora.r: cannot change",)),
    Case(
        "train --resume, recipe differs",
        lambda run, tmp: ["train", str(TINY), "--run-dir", str(run), "--resume", *RUN_ARGS, "lora.r=8"],
        2,
        ("lora.r: cannot change from 4 to 8",),
    ),
    # issue 16.8: resuming a finished run loads nothing and says how to extend it
    Case(
        "resume finished",
        lambda run, tmp: ["resume", str(run)],
        0,
        ("is finished at step 2 (train.steps=2)", "train.steps=4"),
    ),
    Case(
        "train --resume finished",
        lambda run, tmp: ["train", str(TINY), "--run-dir", str(run), "--resume", *RUN_ARGS],
        0,
        ("is finished at step 2",),
    ),
    # issue 16.11: run dir hygiene
    Case(
        "metrics but no checkpoints",
        lambda run, tmp: ["train", str(TINY), "--run-dir", str(run)],
        2,
        ("already holds a run (metrics.jsonl)", "--overwrite"),
        prepare=lambda run, tmp: shutil.rmtree(run / "checkpoints"),
    ),
    Case(
        "failed start",
        lambda run, tmp: ["train", str(TINY), "--run-dir", str(tmp / "new")],
        2,
        ("DeepSpeed is not supported",),
        loads_model=True,
        env={"ACCELERATE_USE_DEEPSPEED": "true"},
        run_dir_removed=True,
        stdout_needle="run dir: ",
    ),
    # issue 16.7: validate checks files, columns, device and keep-best before any model loads
    Case(
        "data.source missing",
        _validate("data.source={tmp}/nope.jsonl"),
        2,
        ("data.source: file", "not found"),
    ),
    Case(
        "train data.source missing",
        lambda run, tmp: ["train", str(TINY), "--run-dir", str(tmp / "t"), f"data.source={tmp}/nope.jsonl"],
        2,
        ("data.source: file",),
        run_dir_removed=True,
    ),
    Case(
        "data prompt column",
        _validate("data.source={tmp}/q.jsonl", "data.prompt_field=problem"),
        2,
        ("data.prompt_field: 'problem' is not a column", "columns are: answer, question"),
        prepare=_write("q.jsonl", GOOD_ROWS),
    ),
    Case(
        "data answer column",
        _validate("data.source={tmp}/q.jsonl", "data.fields={{answer: solution}}"),
        2,
        ("data.fields.answer: 'solution' is not a column",),
        prepare=_write("q.jsonl", GOOD_ROWS),
    ),
    Case(
        "data bad json",
        _validate("data.source={tmp}/q.jsonl"),
        2,
        ("q.jsonl: row 2: not valid JSON",),
        prepare=_write("q.jsonl", [GOOD_ROWS[0], "{oops"]),
    ),
    Case(
        "data empty file",
        _validate("data.source={tmp}/q.jsonl"),
        2,
        ("q.jsonl: the file is empty",),
        prepare=_write("q.jsonl", []),
    ),
    Case("eval.data missing", _validate("eval.data={tmp}/e.jsonl"), 2, ("eval.data: file", "not found")),
    Case(
        "eval.data no answer",
        _validate("eval.data={tmp}/e.jsonl"),
        2,
        ("eval.data:", "no answer column"),
        prepare=_write("e.jsonl", [{"question": "1 + 1"}]),
    ),
    Case("eval.data unknown", _validate("eval.data=gsm9k"), 2, ("eval.data: 'gsm9k' is neither a built-in",)),
    Case(
        "float16 on cpu",
        _validate("model.dtype=float16"),
        2,
        ("model.dtype: float16 is not supported on the CPU",),
    ),
    Case(
        "keep_best typo",
        _validate("checkpoint.keep_best=eval/acuracy"),
        2,
        ("checkpoint.keep_best: 'eval/acuracy' is not a metric", "eval/accuracy"),
    ),
    Case(
        "keep_best no eval",
        _validate("checkpoint.keep_best=eval/accuracy", "eval.at_start=false", "eval.at_end=false"),
        2,
        ("never be logged", "no evaluation is scheduled"),
    ),
    Case(
        "keep_best file without eval set",
        _validate("checkpoint.keep_best=min:eval/len_mean", "data.source={tmp}/q.jsonl"),
        2,
        ("never be logged", "set eval.data"),
        prepare=_write("q.jsonl", GOOD_ROWS),
    ),
    Case(
        "data error exits 2",
        lambda run, tmp: ["train", str(TINY), "--dry-run", "data.source=synthetic:nope"],
        2,
        ("unknown synthetic task",),
    ),
    # issue 16.13: eval without --model needs a run's adapter
    Case(
        "eval adapter outside a run",
        lambda run, tmp: [
            "eval",
            "--adapter",
            str(run / "checkpoints" / "step-000002" / "adapter"),
            "--data",
            "arith",
            "--no-run-config",
        ],
        2,
        ("--model is required unless --adapter is a run's adapter",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, finished_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if case.prepare:
        case.prepare(run, tmp_path)
    before = _snapshot(run)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if not case.loads_model:
        import rl_reason.trainer

        def no_model(*a, **k):
            raise AssertionError("the Trainer was built: this must fail before any model loads")

        monkeypatch.setattr(rl_reason.trainer, "Trainer", no_model)
    capsys.readouterr()
    code = main(case.argv(run, tmp_path))
    out, err = capsys.readouterr()
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    if case.stdout_needle:
        assert case.stdout_needle in out
    assert _snapshot(run) == before  # checkpoints, adapter and logs intact
    for made in (tmp_path / "new", tmp_path / "t"):
        if case.run_dir_removed:
            assert not made.exists(), f"{made} left behind"


# --------------------------------------------------------------------------- beyond the table


def test_resume_after_a_safe_edit_of_config_yaml_continues(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _edit_config(train__steps=3)(run, tmp_path)
    assert main(["resume", str(run)]) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    manifest = json.loads((run / "checkpoints" / "step-000003" / "manifest.json").read_text())
    assert manifest["config"]["train"]["steps"] == 3 and manifest["config"]["lora"]["r"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 3


def test_resume_of_a_finished_run_restores_a_missing_final_adapter(
    finished_run, tmp_path, capsys, monkeypatch
):
    import rl_reason.trainer

    monkeypatch.setattr(rl_reason.trainer, "Trainer", None)  # nothing may build it
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "adapter")
    assert main(["resume", str(run)]) == 0
    assert "restored adapter from step-000002" in capsys.readouterr().err
    ckpt = run / "checkpoints" / "step-000002" / "adapter" / "adapter_model.safetensors"
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == ckpt.read_bytes()


def test_keep_best_choices_are_the_metrics_training_logs(finished_run):
    from rl_reason.preflight import EVAL_METRICS

    rows = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in rows for k in r if k.startswith("eval/")}
    assert logged == set(EVAL_METRICS)


def test_test_recipes_show_progress_and_the_suite_turns_it_off(tmp_path, capsys, monkeypatch):
    from rl_reason.config import load_config
    from rl_reason.tracking import PROGRESS_ENV, Tracker

    cfg = load_config(TINY)
    assert cfg.logging.progress is True  # a user who copies recipes/test/ sees progress
    monkeypatch.setenv("CI", "1")
    for value, lines in (("0", 0), ("1", 1)):
        monkeypatch.setenv(PROGRESS_ENV, value)
        with Tracker(tmp_path / value, cfg.logging, total_steps=2, config_dict={}) as t:
            t.log(1, {"reward/total/mean": 0.5})
        assert len(capsys.readouterr().out.splitlines()) == lines


def test_eval_of_a_runs_adapter_takes_the_runs_settings(finished_run, tmp_path):
    out = tmp_path / "e"
    adapter = finished_run / "adapter"
    assert (
        main(
            [
                "eval",
                "--adapter",
                str(adapter),
                "--data",
                "arith",
                "--limit",
                "2",
                "--max-new-tokens",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    assert report["model"] == "tiny-random"
    assert report["template"] == "plain" and report["system_prompt"] == "Answer briefly."
    assert [c["name"] for c in report["checkers"]] == ["regex", "math_answer"]
    assert report["checkers"][0]["alias"] == "digits"
    assert report["run_config"] == str(finished_run / "config.yaml")

    plain = tmp_path / "p"  # --no-run-config: the flags and the set's own defaults only
    assert (
        main(
            [
                "eval",
                "--model",
                "tiny-random",
                "--adapter",
                str(adapter),
                "--no-run-config",
                "--data",
                "arith",
                "--limit",
                "2",
                "--max-new-tokens",
                "3",
                "--out",
                str(plain),
            ]
        )
        == 0
    )
    report = json.loads((plain / "eval.json").read_text())
    assert report["template"] == "chat" and report["system_prompt"] is None and report["run_config"] is None
    assert [c["name"] for c in report["checkers"]] == ["math_answer"]


def test_eval_compare_wall_time_covers_both_passes(finished_run, tmp_path, capsys):
    out = tmp_path / "c"
    assert (
        main(
            [
                "eval",
                "--adapter",
                str(finished_run / "adapter"),
                "--data",
                "arith",
                "--limit",
                "2",
                "--max-new-tokens",
                "3",
                "--compare",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    runs = report["runs"]
    assert report["wall_s"] == pytest.approx(runs["base"]["wall_s"] + runs["adapter"]["wall_s"])
    assert report["wall_s"] > runs["adapter"]["wall_s"]
    assert "for both passes" in capsys.readouterr().out
