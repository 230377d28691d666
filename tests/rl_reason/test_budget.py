"""Budget-conditioned prompts: the budget reaches the prompt text and the checker's fields."""

from __future__ import annotations

import pytest

from rl_reason.budget import parse_budget_list, parse_ranges, sample_budget, with_budget
from rl_reason.config import ConfigError, RunConfig, from_dict, validate
from rl_reason.data import PromptRecord, load_records


def test_parse_ranges():
    assert parse_ranges([8, 16]) == [(8, 16)]
    assert parse_ranges([[8, 16], [64, 64]]) == [(8, 16), (64, 64)]
    assert parse_ranges([]) == []
    for bad in ([16, 8], [[0, 4]], [[1, 2, 3]], [[1.5, 2]]):
        with pytest.raises(ValueError):
            parse_ranges(bad)


def test_sample_budget_in_range_and_stable():
    ranges = [(8, 16), (100, 120)]
    got = [sample_budget(ranges, 0, f"p{i}") for i in range(200)]
    assert all(8 <= b <= 16 or 100 <= b <= 120 for b in got)
    assert any(b <= 16 for b in got) and any(b >= 100 for b in got)
    assert got == [sample_budget(ranges, 0, f"p{i}") for i in range(200)]
    assert got != [sample_budget(ranges, 1, f"p{i}") for i in range(200)]


def test_with_budget_chat_and_plain():
    chat = PromptRecord(
        "a",
        messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "1+1?"}],
        fields={"answer": "2"},
    )
    out = with_budget(chat, 32, " Use at most {budget} tokens.")
    assert out.messages[-1]["content"] == "1+1? Use at most 32 tokens."
    assert out.messages[0]["content"] == "s"
    assert out.fields == {"answer": "2", "budget": 32}
    assert chat.messages[-1]["content"] == "1+1?" and "budget" not in chat.fields  # a copy
    plain = with_budget(PromptRecord("b", text="Q: 2+2\nA:"), 7)
    assert plain.text == "Q: 2+2\nA: Think for at most 7 tokens." and plain.fields["budget"] == 7


def test_parse_budget_list():
    assert parse_budget_list("64, 128,256") == [64, 128, 256]
    with pytest.raises(ValueError):
        parse_budget_list("64,x")


def test_budget_field_reaches_prompt_and_checker():
    cfg = from_dict(
        {
            "data": {
                "budget": [[10, 12]],
                "budget_template": " Budget: {budget}.",
                "synthetic": {"num_train": 20, "num_eval": 5},
            }
        }
    )
    validate(cfg)
    recs = load_records(cfg.data, seed=0)
    assert recs and all(10 <= r.fields["budget"] <= 12 for r in recs)
    for r in recs:
        assert r.messages[-1]["content"].endswith(f" Budget: {r.fields['budget']}.")
    # the checker sees it through the runner, as the trainer passes fields
    from rewards.runner import Scorer

    rec = recs[0]
    with Scorer([("math_answer", 1.0), ("budget_reward", 1.0)], workers=0) as scorer:
        batch = scorer.score([rf"\boxed{{{rec.fields['answer']}}}"], [dict(rec.fields, completion_tokens=5)])
    assert batch.info["budget_reward"][0] == {"length": 5, "budget": rec.fields["budget"], "within": True}
    assert batch.scores["budget_reward"][0] == 1.0


def test_bad_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="data.budget"):
        validate(from_dict({"data": {"budget": [[5, 1]]}}))
    with pytest.raises(ConfigError, match="data.budget_template"):
        validate(from_dict({"data": {"budget": [[1, 5]], "budget_template": "no placeholder"}}))
    assert RunConfig().data.budget == []
