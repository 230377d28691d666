"""rl_reason.judging: a math_judge backend on a rollout engine (the tiny random model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.math.judge import math_judge, set_judge

WORDS = r"\boxed{\text{a squared minus b squared}}"
GOLD = {"answer": "a^2 - b^2"}


@pytest.fixture(autouse=True)
def _no_backend():
    yield
    set_judge(None)


def test_engine_backend_with_the_tiny_model():
    from rl_reason.config import load_config
    from rl_reason.judging import engine_judge
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_policy
    from rl_reason.rollout.hf import HFEngine

    cfg = load_config(Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml", [])
    resolve_model("tiny-random")
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    backend = engine_judge(HFEngine(policy), policy.tokenizer, max_new_tokens=4)
    replies = backend(["Is 1/2 equal to 0.5?", "Is 2 equal to 3?"])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    set_judge(backend)
    r = math_judge(WORDS, GOLD)
    # a random model answers noise: whatever it says is read only as yes / no / undecided
    assert r.info["judge"] in ("yes", "no", "undecided") and r.correct is (r.info["judge"] == "yes")
