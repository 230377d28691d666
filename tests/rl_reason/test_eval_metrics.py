"""Answer-speed metrics: hand-computed values, and eval.json recomputed from samples.jsonl."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rl_reason.eval_metrics import (
    answer_seconds,
    budget_row,
    percentile,
    read_samples,
    speed_metrics,
)

ROOT = Path(__file__).resolve().parents[2]
MATH_ROWS = [
    {"question": "What is 2 + 3?", "answer": "#### 5"},
    {"question": "What is 4 + 4?", "answer": "#### 8"},
    {"question": "What is 1 + 1?", "answer": "#### 2"},
]


def test_answer_seconds_lockstep():
    assert answer_seconds(2.0, [10, 5, 20]) == pytest.approx([1.0, 0.5, 2.0])
    assert answer_seconds(1.5, [0, 0]) == [1.5, 1.5]
    assert answer_seconds(1.0, []) == []


def test_percentile_matches_linear_interpolation():
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert percentile([7], 95) == 7.0
    assert percentile([], 50) is None


def test_speed_metrics_hand_computed():
    rows = [
        {"tokens": 10, "correct": True, "seconds": 1.0},
        {"tokens": 30, "correct": True, "seconds": 3.0},
        {"tokens": 60, "correct": False, "seconds": 6.0},
        {"tokens": 100, "correct": False, "seconds": 10.0},
    ]
    m = speed_metrics(rows)
    assert m["tokens_per_correct"] == pytest.approx(20.0)  # mean of the correct answers' 10 and 30
    assert m["accuracy_per_1k_tokens"] == pytest.approx(1000 * 2 / 200)
    assert m["seconds_per_answer_p50"] == pytest.approx(4.5)
    assert m["seconds_per_answer_p95"] == pytest.approx(6.0 + 0.85 * 4.0)
    none_right = speed_metrics([{"tokens": 5, "correct": False, "seconds": 1.0}])
    assert none_right["tokens_per_correct"] is None and none_right["accuracy_per_1k_tokens"] == 0.0


def test_budget_row():
    rows = [{"tokens": 5, "correct": True, "seconds": 1}, {"tokens": 20, "correct": False, "seconds": 2}]
    row = budget_row(16, "adapter", rows)
    assert row["budget"] == 16 and row["variant"] == "adapter" and row["n_samples"] == 2
    assert row["accuracy"] == 0.5 and row["within_budget_frac"] == 0.5 and row["tokens_per_correct"] == 5.0


@pytest.fixture()
def math_file(tmp_path):
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MATH_ROWS))
    return path


def _eval(*argv) -> int:
    from rl_reason.cli import main

    return main(["eval", "--model", "tiny-random", "--max-new-tokens", "6", *map(str, argv)])


def test_eval_speed_figures_recompute_from_samples(math_file, tmp_path):
    out = tmp_path / "out"
    assert _eval("--data", math_file, "--samples", 2, "--batch-size", 2, "--out", out) == 0
    report = json.loads((out / "eval.json").read_text())
    rows = read_samples(out / "samples.jsonl")
    assert len(rows) == 6 and all(r["seconds"] > 0 for r in rows)
    again = speed_metrics(rows)
    for key, value in again.items():
        assert report[key] == (pytest.approx(value) if value is not None else None), key
    assert report["seconds_per_answer_p50"] is not None
    assert report["engine"] == "hf" and report["batch_size"] == 2
    # each batch (one prompt x 2 samples here) ends with its longest answer: the per-answer
    # seconds of a batch add up to the generate time in proportion to the tokens
    longest = max(r["seconds"] for r in rows)
    assert longest <= report["gen_s"] + 1e-9


def test_budget_sweep_writes_one_row_per_budget(math_file, tmp_path):
    out = tmp_path / "sweep"
    assert (
        _eval("--data", math_file, "--budgets", "8,2,4", "--budget-template", " Max {budget}.", "--out", out)
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    assert [r["budget"] for r in report["budgets"]] == [2, 4, 8]
    with open(out / "budgets.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["budget"]) for r in table] == [2, 4, 8] and {r["variant"] for r in table} == {"model"}
    assert (out / "budgets.png").read_bytes().startswith(b"\x89PNG")
    rows = read_samples(out / "samples.jsonl")
    assert sorted({r["budget"] for r in rows}) == [2, 4, 8] and len(rows) == 9
    for r in report["budgets"]:
        mine = [x for x in rows if x["budget"] == r["budget"]]
        assert r["accuracy"] == pytest.approx(sum(x["correct"] for x in mine) / len(mine))
        assert r["within_budget_frac"] == pytest.approx(sum(x["tokens"] <= r["budget"] for x in mine) / 3)
    assert report["n_samples"] == 3  # top level: the largest budget's pass


def test_budget_reaches_the_prompt_in_eval():
    from rl_reason.eval_cli import budget_sets
    from rl_reason.eval_sets import load_eval_set

    es = load_eval_set("arith", limit=2)
    sets = budget_sets(es, [16, 32])
    assert [b for b, _ in sets] == [16, 32]
    rec = sets[1][1].records[0]
    assert rec.fields["budget"] == 32
    text = rec.messages[-1]["content"] if rec.messages else rec.text
    assert text.endswith(" Think for at most 32 tokens.")
    assert "budget" not in es.records[0].fields  # the original set is left alone


def test_bad_budgets_exit_2(capsys):
    assert _eval("--data", "arith", "--budgets", "64,x") == 2
    assert "--budgets" in capsys.readouterr().err
