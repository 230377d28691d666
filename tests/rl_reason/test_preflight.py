"""rl_reason.preflight: a valid recipe checked against its files and the machine, before any
model loads (the CLI cases are in test_bad_input_config.py; these call the functions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_reason import preflight
from rl_reason.config import load_config
from rl_reason.errors import ConfigError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_peek_rows_reads_jsonl_json_arrays_and_says_which_line_is_bad(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(5)]
    assert preflight.peek_rows(_jsonl(tmp_path / "a.jsonl", rows), n=2) == rows[:2]
    (tmp_path / "b.json").write_text("  " + json.dumps(rows))
    assert preflight.peek_rows(tmp_path / "b.json", n=3) == rows[:3]
    (tmp_path / "c.jsonl").write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(ValueError, match="^line 3 is not valid JSON"):
        preflight.peek_rows(tmp_path / "c.jsonl")


def test_check_data_names_the_missing_column_and_the_columns_there(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [{"question": "1+1?", "answer": "2"}])
    ok = load_config(None, [f"data.source={f}"])
    preflight.check_data(ok, "r.yaml")
    bad = load_config(None, [f"data.source={f}", "data.prompt_field=problem"])
    with pytest.raises(ConfigError) as exc:
        preflight.check_data(bad, "r.yaml")
    assert str(exc.value) == (
        f"data.prompt_field: 'problem' is not a column of {f} (first {preflight.PEEK_ROWS} rows "
        "read); columns are: answer, question (in r.yaml)"
    )
    preflight.check_data(load_config(None, ["data.source=synthetic:arithmetic"]), "r.yaml")  # no file


def test_check_eval_data_wants_a_question_and_an_answer(tmp_path):
    f = _jsonl(tmp_path / "e.jsonl", [{"problem": "x", "solution": "y"}])
    with pytest.raises(ConfigError, match="eval.data: .* has no answer column \\(looked for answer\\)"):
        preflight.check_eval_data(load_config(None, [f"eval.data={f}"]), "r")
    preflight.check_eval_data(load_config(None, ["eval.data=gsm8k"]), "r")  # a built-in name
    with pytest.raises(ConfigError, match="neither a built-in eval set"):
        preflight.check_eval_data(load_config(None, ["eval.data=nonsense"]), "r")


def test_keep_best_needs_a_logged_metric_and_an_evaluation():
    preflight.check_keep_best(load_config(None, ["checkpoint.keep_best=eval/accuracy"]), "r")
    with pytest.raises(ConfigError, match="'eval/nope' is not a metric this run logs"):
        preflight.check_keep_best(load_config(None, ["checkpoint.keep_best=eval/nope"]), "r")
    never = ["checkpoint.keep_best=eval/accuracy", "eval.at_start=false", "eval.at_end=false"]
    cfg = load_config(None, never)
    assert preflight.evaluation_runs(cfg).startswith("no evaluation is scheduled")
    with pytest.raises(ConfigError, match="eval/accuracy will never be logged: no evaluation"):
        preflight.check_keep_best(cfg, "r")


def test_float16_on_the_cpu_is_refused():
    with pytest.raises(ConfigError, match="^model.dtype: float16 is not supported on the CPU"):
        preflight.check_device(load_config(None, ["model.dtype=float16", "model.device=cpu"]), "r")
    preflight.check_device(load_config(None, ["model.dtype=bfloat16", "model.device=cpu"]), "r")


def test_async_with_several_processes_is_refused_before_the_model_loads(monkeypatch, tmp_path, capsys):
    from rl_reason.cli import main

    k1 = load_config(None, ["rollout.max_staleness=1"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as exc:
        preflight.check_processes(k1, "r.yaml")
    assert str(exc.value).startswith("rollout.max_staleness: 1 (asynchronous) runs in one training process")
    assert "has 2 (WORLD_SIZE)" in str(exc.value) and "max_staleness=0" in str(exc.value)
    preflight.check_processes(load_config(None, []), "r.yaml")  # K = 0: any number of processes
    monkeypatch.setenv("WORLD_SIZE", "1")
    preflight.check_processes(k1, "r.yaml")  # one process: fine
    # through the CLI: exit 2 with the one line, and no run directory made (nothing loaded)
    monkeypatch.setenv("WORLD_SIZE", "4")
    tiny = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"
    run_dir = tmp_path / "run"
    assert main(["train", str(tiny), "rollout.max_staleness=1", "--run-dir", str(run_dir)]) == 2
    assert "has 4 (WORLD_SIZE)" in capsys.readouterr().err and not run_dir.exists()
