"""A step's metrics and rollouts.jsonl rows, from hand-made rollouts and scores."""

import time
from types import SimpleNamespace

import pytest
import torch

from rewards.runner import ScoreBatch
from rl_reason.distributed import LocalDist
from rl_reason.rollout import Rollout
from rl_reason.step_metrics import rollout_rows, step_metrics


def _rollouts():
    # two prompts, two completions each: lengths 3, 5 | 2, 6; the last one hit the token limit
    spec = [(0, 3, "stop"), (0, 5, "stop"), (1, 2, "stop"), (1, 6, "length")]
    return [Rollout(p, [1, 2], list(range(n)), f"c{i}", finish_reason=f) for i, (p, n, f) in enumerate(spec)]


def _scores():
    return ScoreBatch(
        total=[1.0, 0.0, 0.5, 0.5],
        scores={"math": [1.0, 0.0, 0.5, 0.5]},
        correct=[True, False, None, None],
        checker_correct={"math": [True, False, None, None]},
        info={"math": [None] * 4},
        errors={"math": 1},
        timeouts={"math": 0},
        seconds={"math": 0.2},
        wall_s=0.3,
    )


def test_step_metrics_values():
    keep = torch.tensor([True, True, False, False])
    m = step_metrics(
        LocalDist(),
        _scores(),
        _rollouts(),
        keep,
        {"loss/policy": 0.25},
        (1.0, 2.0, 3.0),
        time.perf_counter(),
        bad=False,
        lr=1e-4,
    )
    assert m["completion/len_mean"] == pytest.approx(4.0)
    assert m["completion/len_max"] == 6.0
    assert m["completion/truncated_frac"] == pytest.approx(0.25)
    assert m["groups/kept_frac"] == pytest.approx(0.5)
    assert (m["count/groups"], m["count/groups_kept"], m["count/samples"]) == (2.0, 1.0, 4.0)
    assert m["guard/bad_step"] == 0.0
    assert (m["time/generate_s"], m["time/score_s"], m["time/update_s"]) == (1.0, 2.0, 3.0)
    assert m["loss/policy"] == 0.25 and m["policy/lr"] == 1e-4
    assert m["reward/math/errors"] == 1.0
    assert m["throughput/tokens_per_s"] == pytest.approx(16 / m["time/step_s"])


def test_bad_step_is_flagged():
    m = step_metrics(
        LocalDist(),
        _scores(),
        _rollouts(),
        torch.ones(4, dtype=torch.bool),
        {},
        (0, 0, 0),
        0.0,
        bad=True,
        lr=0.0,
    )
    assert m["guard/bad_step"] == 1.0


def test_rollout_rows_zero_the_advantage_of_dropped_sequences():
    records = [SimpleNamespace(id="p0", fields={"answer": "4"}), SimpleNamespace(id="p1", fields={})]
    keep = torch.tensor([True, False, True, True])
    adv = torch.tensor([0.5, -0.5, 0.0, 0.25])
    rows = rollout_rows(7, records, _rollouts(), _scores(), adv, keep)
    assert [r["prompt_id"] for r in rows] == ["p0", "p0", "p1", "p1"]
    assert [r["advantage"] for r in rows] == [0.5, 0.0, 0.0, 0.25]
    assert [r["in_update"] for r in rows] == [True, False, True, True]
    assert rows[0]["answer"] == "4" and rows[2]["answer"] is None
    assert rows[3]["tokens"] == 6 and rows[3]["finish_reason"] == "length"
    assert rows[1]["rewards"] == {"math": 0.0} and rows[0]["step"] == 7
