import json
import math

import pytest
import torch

from rl_reason import guards
from rl_reason.errors import RunStoppedError


def test_unfit_values_names_non_finite_and_too_large():
    assert guards.unfit_values({"reward": [0.0, 1.0, -3e38]}) == []
    assert guards.unfit_values({"reward": [0.0, 1e200]}) == ["reward 1e+200"]
    assert guards.unfit_values({"advantage": torch.tensor([0.0, float("nan")])}) == ["advantage nan"]
    assert guards.unfit_values({"loss": float("inf"), "ok": 1.0}) == ["loss inf"]
    assert guards.unfit_values({"none": None}) == []


def test_step_problems_names_the_cause_not_its_consequence():
    rewards = [1e200, 0.0, 1.0, 0.0]
    adv = torch.tensor(rewards, dtype=torch.float32)  # inf and then NaN after normalising
    adv = (adv - adv.mean()) / adv.std()
    assert guards.step_problems(rewards, adv, {"m": 0}, 4, 0.5) == ["reward 1e+200"]
    assert guards.step_problems([0.0, 1.0], torch.tensor([0.0, float("nan")]), {}, 2, 0.5) == [
        "advantage nan"
    ]
    assert guards.step_problems([0.0, 1.0], torch.zeros(2), {}, 2, 0.5) == []


def test_checker_failures_over_the_fraction():
    assert guards.checker_failures({"a": 2, "b": 3}, 4, 0.5) == ["checker 'b' raised on 3/4 samples"]
    assert guards.checker_failures({"a": 4}, 4, 1.0) == []  # 1.0 turns the check off
    assert guards.checker_failures({"a": 1}, 0, 0.0) == []


def test_bad_step_guard_counts_in_a_row_and_stops():
    g = guards.BadStepGuard(max_bad_steps=3)
    assert g.observe(1, []) is None
    assert "step 2 skipped (1/3 in a row): reward inf" in g.observe(2, ["reward inf"])
    assert g.observe(3, []) is None  # a good step resets the streak
    g.observe(4, ["reward inf"])
    g.observe(5, ["advantage nan"])
    with pytest.raises(RunStoppedError) as exc:
        g.observe(6, ["advantage nan"], hint="; resume")
    msg = str(exc.value)
    assert msg.startswith("stopped at step 6: 3 steps in a row skipped (train.max_bad_steps=3)")
    assert "first: reward inf" in msg and msg.endswith("; resume") and "\n" not in msg
    assert g.total == 4


def test_no_update_watch_warns_once_after_n_steps():
    w = guards.NoUpdateWatch(after=2)
    none_kept = {"count/groups_kept": 0.0, "reward/total/mean": 0.0}
    assert w.observe({"count/groups_kept": 2.0}) is None
    assert w.observe(none_kept) is None
    msg = w.observe(none_kept)
    assert "no update in the last 2 steps" in msg and "shaping reward" in msg and "num_generations" in msg
    assert w.observe(none_kept) is None  # once


def test_json_safe_writes_valid_json():
    row = {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -math.inf}, "e": "x", "f": 2}
    text = json.dumps(guards.json_safe(row), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": "x", "f": 2}
