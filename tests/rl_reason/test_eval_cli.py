"""``rl-reason eval`` and the eval sets: outputs, grading, --compare, and one-line errors."""

import json
from pathlib import Path

import pytest

from rl_reason.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"

MATH_ROWS = [
    {"question": "What is 2 + 3?", "answer": "#### 5"},
    {"question": "What is 4 + 4?", "answer": "#### 8"},
    {"question": "No answer here", "answer": None},  # skipped with a warning
    {"question": "What is 1 + 1?", "answer": "#### 2"},
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def math_file(tmp_path):
    return _jsonl(tmp_path / "sums.jsonl", MATH_ROWS)


@pytest.fixture(scope="module")
def zero_adapter(tmp_path_factory):
    """A fresh LoRA adapter on tiny-random: B = 0, so base and base + adapter are the same model."""
    from rl_reason.config import load_config
    from rl_reason.policy import load_policy

    cfg = load_config(ROOT / "recipes" / "test" / "tiny_grpo.yaml", [])
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    load_policy(cfg.model, cfg.lora, seed=0).save_adapter(path)
    return path


def _eval(*argv) -> int:
    return main(["eval", "--model", "tiny-random", "--max-new-tokens", "6", *map(str, argv)])


# --------------------------------------------------------------------------- end to end


def test_eval_writes_metrics_and_samples(math_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _eval("--data", math_file, "--samples", 3, "--k", "1,3", "--out", out) == 0
    report = json.loads((out / "eval.json").read_text())
    for key in ("accuracy", "tokens_mean", "tokens_median", "extract_fail_rate", "wall_s", "tokens_per_s"):
        assert isinstance(report[key], float), key
    assert report["n_prompts"] == 3 and report["n_samples"] == 9 and report["skipped_rows"] == 1
    assert set(report["pass_at_k"]) == {"1", "3"}
    assert report["model"] == "tiny-random" and report["adapter"] is None
    assert report["data"] == str(math_file) and report["kind"] == "math"
    assert report["greedy"] is False and report["temperature"] == 1.0  # samples > 1: sampling
    assert 1 <= report["tokens_mean"] <= 6
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    assert {r["prompt_id"] for r in rows} == {"0", "1", "3"}
    assert sorted(r["sample"] for r in rows if r["prompt_id"] == "0") == [0, 1, 2]
    assert {r["gold"] for r in rows} == {"5", "8", "2"}
    first = rows[0]
    assert set(first) == {
        "prompt_id",
        "sample",
        "completion",
        "extracted",
        "gold",
        "correct",
        "tokens",
        "reward",
        "seconds",
        "budget",
    }
    assert "pass@3" in capsys.readouterr().out


def test_compare_same_seeds_gives_zero_deltas(math_file, zero_adapter, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        _eval(
            "--data",
            math_file,
            "--limit",
            2,
            "--samples",
            2,
            "--adapter",
            zero_adapter,
            "--compare",
            "--out",
            out,
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    assert set(report["runs"]) == {"base", "adapter"}
    assert set(report["delta"]) >= {
        "accuracy",
        "pass@1",
        "pass@2",
        "reward_mean",
        "tokens_mean",
        "extract_fail_rate",
    }
    # wall-clock seconds differ between two passes; every other delta is exactly 0
    assert all(v == 0.0 for k, v in report["delta"].items() if not k.startswith("seconds_")), report["delta"]
    assert {"seconds_per_answer_p50", "accuracy_per_1k_tokens"} <= set(report["delta"])
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    base = [r["completion"] for r in rows if r["variant"] == "base"]
    adapter = [r["completion"] for r in rows if r["variant"] == "adapter"]
    assert len(base) == 4 and base == adapter  # same seeds, identical weights -> identical samples
    printed = capsys.readouterr().out
    assert "base" in printed and "delta" in printed


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--data", "no-such-set"], "unknown eval set"),
        (["--data", "missing.jsonl"], "file not found"),
        (["--data", "gsm8k", "--k", "1,8"], "pass@8 needs at least 8 samples"),
        (["--data", "gsm8k", "--samples", 2, "--k", "0"], "not a positive whole number"),
        (["--data", "gsm8k", "--compare"], "--compare needs --adapter"),
        (["--data", "gsm8k", "--adapter", "no/such/dir"], "no such directory"),
        (["--data", "gsm8k", "--prompt-template", "no slot"], "{prompt}"),
        # policy.load_saved_policy's checks, named by the eval flags
        (["--data", "arith", "--device", "cpu", "--dtype", "float16"], "--dtype float16 is not supported"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _eval(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_adapter_dir_without_config_is_rejected(tmp_path, capsys):
    (tmp_path / "notadapter").mkdir()
    assert _eval("--data", "gsm8k", "--adapter", tmp_path / "notadapter") == 2
    assert "adapter_config.json" in capsys.readouterr().err


def test_vllm_engine_unavailable_is_one_line(capsys):
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert _eval("--data", "gsm8k", "--engine", "vllm") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not available" in err[0]
    else:  # pragma: no cover
        pytest.skip("vllm is installed")


# --------------------------------------------------------------------------- eval sets


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data dir missing")
@pytest.mark.parametrize(
    "name, file, gold",
    [
        ("gsm8k", "gsm8k_test.jsonl", "18"),
        ("math500", "math500_test.jsonl", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("aime24", "aime24.jsonl", "204"),
        ("amc23", "amc23.jsonl", "27.0"),
    ],
)
def test_builtin_names_resolve_to_data_dir(name, file, gold, monkeypatch):
    from rl_reason.eval_sets import load_eval_set

    monkeypatch.setenv("RL_REASON_DATA_DIR", str(SHARED))
    es = load_eval_set(name, limit=2)
    assert es.source == str(SHARED / file) and es.kind == "math" and len(es.records) == 2
    assert es.records[0].fields["answer"] == gold
    assert "\\boxed{}" in es.records[0].messages[-1]["content"]
    assert [c["name"] for c in es.checkers] == ["math_answer"]


def test_builtin_without_local_copy_names_the_hub(tmp_path):
    from rl_reason.eval_sets import BUILTIN, resolve_source

    assert resolve_source("gsm8k", data_dir=str(tmp_path)) == ("openai/gsm8k", BUILTIN["gsm8k"])
    assert resolve_source("humaneval", data_dir=str(tmp_path))[0] == "openai/openai_humaneval"


def test_prompt_options_reach_the_records(math_file):
    from rl_reason.eval_sets import load_eval_set

    es = load_eval_set(
        str(math_file), template="plain", prompt_template="Q: {prompt}\nA:", system_prompt="Be brief."
    )
    assert es.records[0].text == "Be brief.\n\nQ: What is 2 + 3?\nA:" and es.records[0].messages is None
    assert es.skipped == 1 and [r.id for r in es.records] == ["0", "1", "3"]


@pytest.mark.skipif(not (SHARED / "humaneval.jsonl").is_file(), reason="shared humaneval missing")
def test_humaneval_grades_canonical_solution_right_and_empty_wrong(monkeypatch):
    from rewards.runner import Scorer
    from rl_reason.eval_sets import load_eval_set

    monkeypatch.setenv("RL_REASON_DATA_DIR", str(SHARED))
    es = load_eval_set("humaneval", limit=1)
    assert es.kind == "code" and [c["name"] for c in es.checkers] == ["code_tests"]
    rec = es.records[0]
    assert "```python" in rec.messages[-1]["content"]
    row = json.loads((SHARED / "humaneval.jsonl").read_text().splitlines()[0])
    good = "Here it is:\n```python\n" + row["prompt"] + row["canonical_solution"] + "```\n"
    bad = "I cannot do that."
    with Scorer(es.checker_specs(), timeout_s=es.timeout_s, workers=1) as scorer:
        batch = scorer.score([good, bad], [rec.fields, rec.fields])
    assert batch.correct == [True, False]
    assert es.extract(good).startswith("from typing import List") and es.extract(bad) is None


def test_math_extraction_marks_failures():
    from rl_reason.eval_sets import extract_final

    assert extract_final("math", "so it is \\boxed{12}.") == "12"
    assert extract_final("math", "The answer is 7.") == "7"
    assert extract_final("math", "no idea") is None


def test_sampling_defaults_and_out_dir():
    from rl_reason.eval_cli import default_out_dir, parse_ks, sampling_settings

    assert sampling_settings(1, None) == (True, 0.0)  # one sample: greedy
    assert sampling_settings(8, None) == (False, 1.0)  # several: the policy's own distribution
    assert sampling_settings(1, 0.7) == (False, 0.7)
    assert sampling_settings(4, 0.0) == (True, 0.0)
    assert parse_ks(None, 8) == [1, 8] and parse_ks("8, 1,4", 8) == [1, 4, 8]
    assert default_out_dir("gsm8k", "HuggingFaceTB/SmolLM2-135M", now=0) == Path(
        "evals/gsm8k-SmolLM2-135M-19700101-000000"
    )


def test_arith_is_the_demo_held_out_set():
    from rl_reason.config import load_config
    from rl_reason.data import load_records
    from rl_reason.demo import DEMO_RECIPE
    from rl_reason.eval_sets import load_eval_set

    es = load_eval_set("arith")
    cfg = load_config(DEMO_RECIPE, [])
    held = load_records(cfg.data, seed=cfg.train.seed, held_out=True)
    # the same prompts as the demo's held-out evaluation (which shuffles them)
    key = lambda r: (str(r.messages), r.fields["answer"])  # noqa: E731
    assert sorted(map(key, es.records)) == sorted(map(key, held))
    assert len(es.records) == cfg.data.synthetic.num_eval
    assert es.checkers == [{"name": "math_answer", "params": {"numeric_only": True, "order": ["boxed"]}}]


def test_eval_with_tools_runs_multi_turn_and_grades_the_transcript(math_file, tmp_path):
    """--tools: the environment of tests/rl_reason/_envs.py (which the random model triggers)
    answers in the completions that are graded; the settings record it."""
    out = tmp_path / "out"
    argv = ["--data", math_file, "--samples", 2, "--out", out, "--tools", "tests.rl_reason._envs:Letters"]
    assert (
        main(
            [
                "eval",
                "--model",
                "tiny-random",
                "--max-new-tokens",
                "24",
                *map(str, argv),
                "--max-tool-calls",
                "2",
            ]
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    assert report["tools"] == "tests.rl_reason._envs:Letters" and report["max_tool_calls"] == 2
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert any(" <" in r["completion"] and ":1> " in r["completion"] for r in rows)
    assert all(r["completion"].count(":3> ") == 0 for r in rows)  # at most 2 calls
    assert all(r["tokens"] <= 24 for r in rows)  # the model's tokens only
