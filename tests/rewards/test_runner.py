"""The scoring runner: weighted totals, None handling, correct flags, errors, hard timeouts."""

from __future__ import annotations

import logging
import os
import time

import pytest

import rewards
from rewards import RewardResult
from rewards.runner import CheckerSpec, ScoreBatch, Scorer, score

C = "tests.rewards._checkers:"


@pytest.fixture(scope="module")
def pool():
    """One 2-worker pool shared by the tests that do not kill workers on purpose."""
    with Scorer(
        [
            CheckerSpec(C + "echo_answer", 1.0, alias="answer"),
            CheckerSpec(C + "const", 0.25, {"value": 2.0}, alias="const"),
            CheckerSpec(C + "only_if_answer", 2.0, alias="maybe"),
        ],
        workers=2,
        timeout_s=5.0,
    ) as s:
        yield s


def test_weighted_total_none_and_correct(pool):
    comps = ["4", "5", "x"]
    fields = [{"answer": "4"}, {"answer": "4"}, {}]
    b = pool.score(comps, fields)
    assert isinstance(b, ScoreBatch) and len(b) == 3
    assert b.scores["answer"] == [1.0, 0.0, 0.0]
    assert b.scores["const"] == [2.0, 2.0, 2.0]
    assert b.scores["maybe"] == [0.5, 0.5, None]
    # 1*answer + 0.25*2 + 2*0.5 ; None contributes 0
    assert b.total == pytest.approx([2.5, 1.5, 0.5])
    assert b.correct == [True, False, False]
    assert b.checker_correct["answer"] == [True, False, False]
    assert b.checker_correct["const"] == [None, None, None]
    assert b.info["answer"][0] == {"seen": "4"}
    assert b.errors == {"answer": 0, "const": 0, "maybe": 0}
    assert b.timeouts == {"answer": 0, "const": 0, "maybe": 0}


def test_metrics_keys_and_values(pool):
    b = pool.score(["4", "5", "x", "4"], [{"answer": "4"}, {"answer": "4"}, {}, {"answer": "4"}])
    m = b.metrics()
    assert m["reward/answer/mean"] == pytest.approx(0.5)
    assert m["reward/answer/accuracy"] == pytest.approx(0.5)
    assert m["reward/maybe/mean"] == pytest.approx(0.5)  # over the 3 applicable samples
    assert "reward/const/accuracy" not in m  # const reports no flag
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["reward/total/mean"] == pytest.approx((2.5 + 1.5 + 0.5 + 2.5) / 4)
    for alias in ("answer", "const", "maybe"):
        for key in ("errors", "timeouts", "seconds"):
            assert f"reward/{alias}/{key}" in m
        assert m[f"reward/{alias}/errors"] == 0.0
        assert m[f"reward/{alias}/seconds"] >= 0.0


def test_order_preserved_across_chunks(pool):
    n = 500
    comps = [str(i) for i in range(n)]
    fields = [{"answer": str(i if i % 3 else -1)} for i in range(n)]
    b = pool.score(comps, fields)
    assert b.scores["answer"] == [0.0 if i % 3 == 0 else 1.0 for i in range(n)]
    assert b.correct == [i % 3 != 0 for i in range(n)]


def test_empty_batch(pool):
    b = pool.score([], [])
    assert b.total == [] and b.correct == [] and b.scores["answer"] == []
    assert "reward/total/mean" not in b.metrics()


def test_fields_length_mismatch(pool):
    with pytest.raises(ValueError, match="2 completions but 1"):
        pool.score(["a", "b"], [{}])


def test_no_correct_reported_gives_none():
    b = score(["a", "bb"], None, [(C + "length", 1.0)], workers=0)
    assert b.correct == [None, None]
    assert b.total == [1.0, 2.0]
    assert "accuracy" not in b.metrics()


def test_correct_needs_all_reporting_checkers():
    checkers = [
        CheckerSpec(C + "echo_answer", alias="a"),
        CheckerSpec(lambda c, f: RewardResult(0.0, correct=c.startswith("4")), alias="b"),
    ]
    b = score(["4", "5", "4"], [{"answer": "4"}, {"answer": "5"}, {"answer": "x"}], checkers, workers=0)
    assert b.correct == [True, False, False]


def test_exception_is_error_and_zero_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="rewards")
    with Scorer([(C + "boom", 1.0), (C + "const", 1.0)], workers=1, timeout_s=5.0) as s:
        b = s.score(["ok", "boom 1", "boom 2", "fine"], None)
        b2 = s.score(["boom 3"], None)
    assert b.scores[C + "boom"] == [1.0, 0.0, 0.0, 1.0]
    assert b.total == [2.0, 1.0, 1.0, 2.0]
    assert b.errors == {C + "boom": 2, C + "const": 0}
    assert b.metrics()[f"reward/{C}boom/errors"] == 2.0
    assert b2.errors[C + "boom"] == 1
    tracebacks = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(tracebacks) == 1
    assert "ValueError: kaboom: boom 1" in tracebacks[0].getMessage()


def test_on_error_none():
    b = score(["boom", "ok"], None, [(C + "boom", 2.0)], workers=1, on_error="none")
    assert b.scores[C + "boom"] == [None, 1.0]
    assert b.total == [0.0, 2.0]
    assert b.errors[C + "boom"] == 1


def test_errors_in_process():
    b = score(["boom", "ok"], None, [(C + "boom", 1.0)], workers=0)
    assert b.scores[C + "boom"] == [0.0, 1.0]
    assert b.errors[C + "boom"] == 1


@pytest.mark.parametrize("name", ["nan", "exits", "bad_type"])
def test_bad_checker_results_are_errors(name):
    b = score(["a"], None, [(C + name, 1.0)], workers=1)
    assert b.scores[C + name] == [0.0]
    assert b.errors[C + name] == 1
    assert b.total == [0.0]


def test_failed_correctness_checker_counts_not_correct():
    # echo_answer reports flags; when it fails on a sample, that sample is not correct
    def flaky(completion, fields):
        if completion == "boom":
            raise RuntimeError("x")
        return RewardResult(1.0, correct=True)

    b = score(["ok", "boom"], None, [CheckerSpec(flaky, alias="flaky")], workers=0)
    assert b.correct == [True, False]
    assert b.checker_correct["flaky"] == [True, False]


@pytest.mark.parametrize("hang", ["spin", "sleepy"])
def test_hanging_check_times_out_and_worker_is_replaced(hang):
    timeout = 0.5
    with Scorer([(C + hang, 1.0), (C + "pid", 0.0)], workers=1, timeout_s=timeout) as s:
        before = s.score(["x"], None).scores[C + "pid"][0]
        bad = "spin" if hang == "spin" else "sleep"
        t0 = time.perf_counter()
        b = s.score(["a", bad, "b", "c"], None)
        elapsed = time.perf_counter() - t0
        assert b.scores[C + hang] == [1.0, 0.0, 1.0, 1.0]
        assert b.timeouts == {C + hang: 1, C + "pid": 0}
        assert b.errors[C + hang] == 0
        assert b.metrics()[f"reward/{C}{hang}/timeouts"] == 1.0
        assert timeout <= elapsed < timeout + 3.0
        assert s.restarts == 1
        # the hung worker is gone and a fresh one does the later checks
        after = b.scores[C + "pid"][3]
        assert after != before
        with pytest.raises(ProcessLookupError):
            os.kill(int(before), 0)
        again = s.score(["ok"], None)
        assert again.total == [1.0] and again.timeouts[C + hang] == 0


def test_timeouts_with_on_error_none_and_parallel_workers():
    with Scorer([(C + "sleepy", 1.0)], workers=2, timeout_s=0.4, on_error="none") as s:
        t0 = time.perf_counter()
        b = s.score(["sleep", "sleep", "x", "sleep", "y"], None)
        elapsed = time.perf_counter() - t0
    assert b.scores[C + "sleepy"] == [None, None, 1.0, None, 1.0]
    assert b.timeouts[C + "sleepy"] == 3
    assert b.total == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert elapsed < 0.4 * 3 + 2.0  # two workers time out side by side


def test_each_check_gets_its_own_deadline():
    # 6 checks of 0.2 s in one worker, 0.5 s timeout each: chunked together, none times out
    with Scorer([CheckerSpec(C + "nap", params={"seconds": 0.2})], workers=1, timeout_s=0.5) as s:
        b = s.score(["a"] * 6, None)
    assert b.timeouts[C + "nap"] == 0
    assert b.total == [1.0] * 6


def test_worker_that_dies_is_an_error_and_replaced():
    with Scorer([(C + "die", 1.0)], workers=1, timeout_s=5.0) as s:
        b = s.score(["a", "die", "b"], None)
        assert b.scores[C + "die"] == [1.0, 0.0, 1.0]
        assert b.errors[C + "die"] == 1
        assert s.restarts == 1


def test_runtime_registered_checker_seen_by_workers():
    @rewards.register("test_runner_runtime_double")
    def double(completion, fields, factor=2.0):
        return factor * len(completion)

    try:
        with Scorer([CheckerSpec("test_runner_runtime_double", params={"factor": 3.0})], workers=1) as s:
            b = s.score(["ab", "abc"], None)
        assert b.scores["test_runner_runtime_double"] == [6.0, 9.0]
    finally:
        rewards._REGISTERED.pop("test_runner_runtime_double", None)


def test_spec_forms_and_validation():
    s = Scorer(
        [
            "tests.rewards._checkers:const",
            (C + "length", 2.0),
            (C + "const", 1.0, {"value": 3}, "three"),
            {"name": C + "nap", "params": {"seconds": 0}, "alias": "nap"},
        ],
        workers=0,
    )
    assert s.aliases == [C + "const", C + "length", "three", "nap"]
    assert s.score(["abc"], None).total == [1.0 + 6.0 + 3.0 + 1.0]
    with pytest.raises(ValueError, match="alias"):
        Scorer([(C + "const", 1.0), (C + "const", 2.0)], workers=0)
    with pytest.raises(rewards.UnknownCheckerError, match="math_answer"):
        Scorer(["no_such_checker"], workers=0)
    with pytest.raises(ValueError, match="on_error"):
        Scorer([C + "const"], workers=0, on_error="raise")


def test_pool_is_reused_across_batches():
    with Scorer([(C + "pid", 1.0)], workers=2) as s:
        pids = set()
        for _ in range(5):
            pids.update(s.score(["a"] * 20, None).total)
        assert len(pids) <= 2 and s.restarts == 0
        procs = [w.proc for w in s._workers]
    assert all(not p.is_alive() for p in procs)  # closed


def test_closed_scorer_refuses():
    s = Scorer([C + "const"], workers=1)
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.score(["a"], None)


def test_throughput_trivial_checker():
    with Scorer([C + "const"], workers=2) as s:
        s.score(["a"] * 10, None)
        t0 = time.perf_counter()
        b = s.score(["a"] * 4000, None)
        rate = 4000 / (time.perf_counter() - t0)
    assert b.total == [1.0] * 4000
    assert rate > 2000  # measured ~70k/s on 2 cores; a loose floor for loaded CI machines


@pytest.mark.parametrize("workers", [0, 1])
def test_checker_stdout_is_captured_and_counted(workers, capfd):
    """A checker that prints does not reach the console; its lines are counted."""
    from rewards.runner import Scorer

    with Scorer(["tests.rl_reason._bad_checkers:chatty"], workers=workers, timeout_s=10) as scorer:
        batch = scorer.score(["a", "b"], [{}, {}])
    assert batch.total == [1.0, 1.0]
    out = capfd.readouterr().out
    assert "debug line" not in out
    per_check = 500 if workers == 0 else 501  # in-process: Python-level prints only
    assert batch.stdout_lines == {"tests.rl_reason._bad_checkers:chatty": 2 * per_check}
    assert batch.metrics()["reward/tests.rl_reason._bad_checkers:chatty/stdout_lines"] == 2 * per_check


def test_scorer_refuses_unknown_params():
    from rewards.runner import Scorer

    with pytest.raises(ValueError, match="unknown param 'patern'"):
        Scorer([("regex", 1.0, {"patern": "x"})], workers=0)
