import json

import pytest

from rl_reason.evaluate import length_stats, mean_pass_at_k, pass_at_k


def test_pass_at_k_hand_values():
    # n=5, c=2, k=1: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4 (= c/n)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=4: every draw includes the right one
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(8, 0, 8) == 0.0
    # n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)


def test_pass_at_k_large_n_no_overflow():
    v = pass_at_k(2000, 1, 100)
    assert v == pytest.approx(100 / 2000)


def test_pass_at_k_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 8 samples"):
        pass_at_k(4, 1, 8)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_mean_pass_at_k_and_lengths():
    out = mean_pass_at_k([(4, 0), (4, 2), (4, 4)], [1, 2, 8])
    assert out[1] == pytest.approx((0 + 0.5 + 1) / 3)
    # C(2,2)/C(4,2) = 1/6 -> 5/6 for the middle problem
    assert out[2] == pytest.approx((0 + 5 / 6 + 1) / 3)
    assert 8 not in out
    assert length_stats([1, 2, 9]) == {"tokens_mean": 4.0, "tokens_median": 2.0}


def _results(correct_by_prompt, tokens=3, extracted="x"):
    from rl_reason.evaluate import SampleResult

    return [
        SampleResult(
            prompt_id=pid, sample=i, completion="", extracted=extracted, gold="1", correct=ok, tokens=tokens
        )
        for pid, flags in correct_by_prompt.items()
        for i, ok in enumerate(flags)
    ]


def test_summarize_hand_computed():
    from rl_reason.evaluate import SampleResult, summarize

    results = _results({"a": [True, False, False, False], "b": [True, True, False, False]})
    results.append(SampleResult("c", 0, "", None, "1", False, 10))
    results += [SampleResult("c", i, "", "9", "1", False, 2) for i in (1, 2, 3)]
    m = summarize(results, [1, 2, 4], wall_s=2.0)
    assert m["accuracy"] == pytest.approx(3 / 12)
    # per prompt (n=4): c=1 -> pass@2 = 1 - C(3,2)/C(4,2) = 1/2; c=2 -> 1 - 1/6; c=0 -> 0
    assert m["pass_at_k"]["1"] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    assert m["pass_at_k"]["2"] == pytest.approx((1 / 2 + 5 / 6 + 0) / 3)
    assert m["pass_at_k"]["4"] == pytest.approx(2 / 3)
    assert m["extract_fail_rate"] == pytest.approx(1 / 12)
    assert m["n_prompts"] == 3 and m["n_samples"] == 12
    assert m["tokens_mean"] == pytest.approx((8 * 3 + 10 + 3 * 2) / 12)
    assert m["tokens_median"] == 3.0
    assert m["tokens_per_s"] == pytest.approx((8 * 3 + 10 + 3 * 2) / 2.0)
    assert json.loads(json.dumps(m)) == m  # JSON-safe as written to eval.json


def test_compare_and_flat_metrics():
    from rl_reason.evaluate import compare, flat_metrics, summarize

    base = summarize(_results({"a": [False, False], "b": [True, False]}, tokens=4), [1, 2], 1.0)
    tuned = summarize(_results({"a": [True, False], "b": [True, True]}, tokens=2), [1, 2], 1.0)
    d = compare(base, tuned)
    assert d["accuracy"] == pytest.approx(0.75 - 0.25)
    assert d["pass@2"] == pytest.approx(1.0 - 0.5)
    assert d["tokens_mean"] == pytest.approx(-2.0)
    assert list(flat_metrics(tuned)) == [
        "accuracy",
        "pass@1",
        "pass@2",
        "reward_mean",
        "tokens_mean",
        "tokens_median",
        "extract_fail_rate",
        "tokens_per_correct",
        "accuracy_per_1k_tokens",
        "seconds_per_answer_p50",
        "seconds_per_answer_p95",
    ]


def test_reward_mean_is_the_mean_total():
    from rl_reason.evaluate import SampleResult, summarize

    rows = [SampleResult("a", i, "", "1", "1", i == 0, 3, reward=r) for i, r in enumerate((1.0, 0.5, -0.3))]
    assert summarize(rows, [1], 1.0)["reward_mean"] == pytest.approx(1.2 / 3)


def test_eval_cli_and_training_share_one_evaluation_path(tmp_path, monkeypatch):
    """``rl-reason eval`` and the trainer's eval.every go through the same generate_and_grade
    and summarize, and the trainer logs eval.json's names under ``eval/``."""
    from rl_reason import evaluate
    from rl_reason.cli import main

    from .conftest import TINY

    calls = {"generate_and_grade": [], "summarize": 0}
    real_gag, real_summarize = evaluate.generate_and_grade, evaluate.summarize

    def gag_spy(*args, **kwargs):
        calls["generate_and_grade"].append(kwargs.get("seed"))
        return real_gag(*args, **kwargs)

    def summarize_spy(*args, **kwargs):
        calls["summarize"] += 1
        return real_summarize(*args, **kwargs)

    monkeypatch.setattr(evaluate, "generate_and_grade", gag_spy)
    monkeypatch.setattr(evaluate, "summarize", summarize_spy)

    run = tmp_path / "run"
    assert (
        main(
            ["train", str(TINY), "--run-dir", str(run), "train.steps=2", "eval.every=1", "logging.plot=false"]
        )
        == 0
    )
    # before training, after step 1, at the end (step 2): three evaluations, unseeded
    assert calls == {"generate_and_grade": [None, None, None], "summarize": 3}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in rows for k in r if k.startswith("eval/")}
    assert logged == set(evaluate.TRAINING_METRICS)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 1, 2]
    # the random model is never right: no tokens per correct answer (null), not a made-up 0
    assert all(r["eval/tokens_per_correct"] is None for r in rows if "eval/n" in r)

    out = tmp_path / "eval"
    held = tmp_path / "held.jsonl"
    held.write_text(
        "".join(json.dumps({"question": f"{i} + 1 = ?", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    argv = ["eval", "--model", "tiny-random", "--data", str(held), "--max-new-tokens", "4", "--out", str(out)]
    assert main(argv) == 0
    assert calls["generate_and_grade"][3:] == [0] and calls["summarize"] == 4  # the CLI seeds its pass
    report = json.loads((out / "eval.json").read_text())
    names = {k[len("eval/") :] for k in evaluate.TRAINING_METRICS if k not in evaluate.LEGACY_ALIASES}
    assert names == set(evaluate.TRAINING_KEYS) and names <= set(report)
    last = rows[-1]
    for alias, key in evaluate.LEGACY_ALIASES.items():
        assert last[alias] == last[f"eval/{key}"]
