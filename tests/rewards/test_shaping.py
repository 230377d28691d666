"""Length shaping: DAPO soft overlong punishment and the linear length penalty."""

from __future__ import annotations

import pytest

import rewards
from rewards.shaping import (
    budget_reward,
    completion_length,
    group_length_reward,
    kimi_length_lambdas,
    length_penalty,
    overlong_penalty,
    token_cost,
)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (0, 0.0),
        (500, 0.0),
        (768, 0.0),
        (769, -1 / 256),
        (832, -0.25),
        (896, -0.5),
        (1024, -1.0),
        (5000, -1.0),
    ],
)
def test_overlong_penalty_tokens(tokens, expected):
    r = overlong_penalty("ignored text", {"completion_tokens": tokens}, max_len=1024, cache_len=256)
    assert r.score == pytest.approx(expected)
    assert r.correct is None
    assert r.info == {"length": tokens, "unit": "tokens"}


def test_overlong_penalty_factor_and_fields_max_len():
    f = {"completion_tokens": 96, "max_new_tokens": 100}
    assert overlong_penalty("x", f, cache_len=8, penalty=0.5).score == pytest.approx(-0.5 * 4 / 8)
    assert overlong_penalty("x", f, max_len=200, cache_len=8).score == 0.0


def test_overlong_penalty_words_and_chars():
    text = "one two three four five six"
    assert overlong_penalty(text, {}, max_len=6, cache_len=4).score == pytest.approx(-1.0)
    assert overlong_penalty(text, {}, max_len=8, cache_len=4).score == pytest.approx(-0.5)
    r = overlong_penalty(text, {}, max_len=20, cache_len=10, unit="chars")  # 27 chars
    assert r.score == -1.0 and r.info["unit"] == "chars"
    assert overlong_penalty("abcde", {}, max_len=10, cache_len=10, unit="chars").score == pytest.approx(-0.5)
    # tokens win over words in auto mode
    assert overlong_penalty(text, {"completion_tokens": 1}, max_len=6, cache_len=4).score == 0.0
    # forced words ignores the token count
    assert (
        overlong_penalty(text, {"completion_tokens": 1}, max_len=6, cache_len=4, unit="words").score == -1.0
    )


def test_overlong_penalty_errors():
    with pytest.raises(ValueError, match="max_len"):
        overlong_penalty("x", {})
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty("x", {}, max_len=10, cache_len=20)
    with pytest.raises(ValueError, match="completion_tokens"):
        overlong_penalty("x", {}, max_len=10, cache_len=5, unit="tokens")
    with pytest.raises(ValueError, match="unit"):
        overlong_penalty("x", {}, max_len=10, cache_len=5, unit="bytes")


@pytest.mark.parametrize("tokens, expected", [(10, 0.0), (100, 0.0), (150, -0.5), (200, -1.0), (900, -1.0)])
def test_length_penalty_default_coef(tokens, expected):
    r = length_penalty("x", {"completion_tokens": tokens}, target=100)
    assert r.score == pytest.approx(expected)
    assert r.correct is None


def test_length_penalty_params():
    f = {"completion_tokens": 300}
    assert length_penalty("x", f, target=100, coef=0.001).score == pytest.approx(-0.2)
    assert length_penalty("x", f, target=100, coef=0.1, max_penalty=2.0).score == pytest.approx(-2.0)
    assert length_penalty("x", dict(f, target_len=250), target=100).score == pytest.approx(-0.2)
    assert length_penalty("a b c d", {}, target=2).score == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        length_penalty("x", {}, target=0)


def test_completion_length():
    assert completion_length("a  b\nc", {}) == (3, "words")
    assert completion_length("a  b\nc", {}, "chars") == (6, "chars")
    assert completion_length("a", {"completion_tokens": 9}) == (9, "tokens")


def test_registered_names():
    assert rewards.resolve("overlong_penalty") is overlong_penalty
    assert rewards.resolve("length_penalty") is length_penalty


def test_through_the_runner():
    from rewards.runner import CheckerSpec, score

    b = score(
        ["a b c", "a b c d e f g h"],
        [{}, {}],
        [CheckerSpec("overlong_penalty", params={"max_len": 8, "cache_len": 4})],
        workers=0,
    )
    assert b.scores["overlong_penalty"] == pytest.approx([0.0, -1.0])
    assert b.correct == [None, None]


# ----------------------------------------------------------------------------- answer-speed rewards


def _f(tokens, step=None, **extra):
    out = [{"completion_tokens": t, **extra} for t in tokens]
    if step is not None:
        for f in out:
            f["step"] = step
    return out


def test_kimi_lambdas_hand_computed():
    assert kimi_length_lambdas([10, 20, 30]) == pytest.approx([0.5, 0.0, -0.5])
    assert kimi_length_lambdas([10, 15]) == pytest.approx([0.5, -0.5])
    assert kimi_length_lambdas([7, 7, 7]) == [0.0, 0.0, 0.0]  # ties: nothing to rank
    assert kimi_length_lambdas([]) == []


def test_group_length_reward_two_groups():
    # group a: lengths 10, 20, 30 (right, right, wrong); group b: 40, 60 (wrong, wrong)
    res = group_length_reward(
        ["x"] * 5, _f([10, 20, 30, 40, 60]), [True, True, False, False, False], ["a", "a", "a", "b", "b"]
    )
    assert [r.score for r in res] == pytest.approx([0.5, 0.0, -0.5, 0.0, -0.5])
    # a group with no correct answer: the short one is not paid, the long one loses
    assert all(r.correct is None for r in res)
    assert res[0].info == {"length": 10, "lambda": 0.5, "active": True}


def test_group_length_reward_ties_and_wrong_short():
    res = group_length_reward(["x"] * 3, _f([5, 5, 5]), [True, False, True], [0, 0, 0])
    assert [r.score for r in res] == [0.0, 0.0, 0.0]
    res = group_length_reward(["x"] * 2, _f([5, 9]), [False, True], [0, 0])
    assert [r.score for r in res] == pytest.approx([0.0, -0.5])  # wrong+short: min(0, 0.5) = 0


def test_group_length_reward_warmup_by_step_and_accuracy():
    lengths, correct, groups = [10, 30], [True, True], [0, 0]
    off = group_length_reward(["x"] * 2, _f(lengths, step=3), correct, groups, warmup_steps=3)
    assert [r.score for r in off] == [0.0, 0.0] and off[0].info["active"] is False
    on = group_length_reward(["x"] * 2, _f(lengths, step=4), correct, groups, warmup_steps=3)
    assert [r.score for r in on] == pytest.approx([0.5, -0.5])
    # accuracy gate: batch accuracy 0.5 < 0.6 -> off; 0.5 >= 0.5 -> on
    half = [True, False]
    assert [r.score for r in group_length_reward(["x"] * 2, _f(lengths), half, groups, min_accuracy=0.6)] == [
        0.0,
        0.0,
    ]
    assert [
        r.score for r in group_length_reward(["x"] * 2, _f(lengths), half, groups, min_accuracy=0.5)
    ] == pytest.approx([0.5, -0.5])


def test_token_cost_only_on_correct():
    res = token_cost(["x"] * 3, _f([100, 200, 300]), [True, False, True], [0, 0, 0], cost_per_token=0.001)
    assert [r.score for r in res] == pytest.approx([-0.1, 0.0, -0.3])
    res = token_cost(["x"] * 2, _f([100, 200], step=1), [True, True], [0, 0], warmup_steps=1)
    assert [r.score for r in res] == [0.0, 0.0]
    with pytest.raises(ValueError):
        token_cost(["x"], _f([1]), [True], [0], cost_per_token=-1)


def test_budget_reward_hand_computed():
    fields = _f([50, 100, 120, 150, 200, 80], budget=100)
    fields.append({"completion_tokens": 10})  # no budget: does not apply
    correct = [True, True, True, True, True, False, True]
    res = budget_reward(["x"] * 7, fields, correct, list(range(7)), decay=0.5)
    # over by 20 of a 50-token decay window -> 0.6; over by 50 -> 0; wrong -> 0
    assert [r.score for r in res[:6]] == pytest.approx([1.0, 1.0, 0.6, 0.0, 0.0, 0.0])
    assert res[6] is None
    assert res[2].info == {"length": 120, "budget": 100, "within": False}


def test_batch_level_checkers_through_the_runner():
    """The runner calls batch-level checkers with the per-sample correctness and the groups."""
    from rewards.runner import Scorer

    comps = [r"\boxed{4}", r"\boxed{4} because 2 + 2 = 4 surely", r"\boxed{5}", r"\boxed{4}"]
    fields = [
        {"answer": "4", "completion_tokens": 10, "step": 5},
        {"answer": "4", "completion_tokens": 30, "step": 5},
        {"answer": "4", "completion_tokens": 20, "step": 5},
        {"answer": "4", "completion_tokens": 8, "step": 5, "budget": 6},
    ]
    specs = [
        ("math_answer", 1.0),
        ("group_length_reward", 0.5, {"warmup_steps": 2}),
        ("token_cost", 1.0, {"cost_per_token": 0.01}),
        ("budget_reward", 1.0, {"decay": 1.0}),
    ]
    with Scorer(specs, workers=0) as scorer:
        batch = scorer.score(comps, fields, groups=[0, 0, 0, 1])
    assert batch.correct == [True, True, False, True]
    # group 0: lengths 10, 30, 20 -> lambda 0.5, -0.5, 0; sample 2 is wrong -> min(0, 0) = 0
    assert batch.scores["group_length_reward"] == pytest.approx([0.5, -0.5, 0.0, 0.0])
    assert batch.scores["token_cost"] == pytest.approx([-0.1, -0.3, 0.0, -0.08])
    # only the last sample has a budget: 8 tokens for 6, decay window 6 -> 1 - 2/6
    assert batch.scores["budget_reward"][:3] == [None, None, None]
    assert batch.scores["budget_reward"][3] == pytest.approx(1 - 2 / 6)
    assert batch.total == pytest.approx([1 + 0.25 - 0.1, 1 - 0.25 - 0.3, 0.0, 1 - 0.08 + 1 - 2 / 6])
    assert batch.errors["group_length_reward"] == 0


def test_batch_level_checker_error_is_counted_not_raised():
    from rewards.runner import Scorer

    def broken(completions, fields_list, correct, groups):
        raise RuntimeError("boom")

    broken.batch_level = True
    with Scorer([("math_answer", 1.0), (broken, 1.0)], workers=1) as scorer:
        batch = scorer.score([r"\boxed{1}", r"\boxed{2}"], [{"answer": "1"}, {"answer": "1"}])
    assert batch.errors["broken"] == 2
    assert batch.scores["broken"] == [0.0, 0.0]
    assert batch.total == [1.0, 0.0]


def test_batch_level_params_are_checked_against_the_signature():
    with pytest.raises(ValueError, match="did you mean 'warmup_steps'"):
        rewards.check_params(rewards.resolve("group_length_reward"), {"warmup_step": 1}, "glr")
    rewards.check_params(rewards.resolve("token_cost"), {"cost_per_token": 0.01, "min_accuracy": 0.2})

    def too_few(completions, fields_list):
        return [0.0] * len(completions)

    too_few.batch_level = True
    with pytest.raises(ValueError, match="completions, fields_list, correct, groups"):
        rewards.check_params(too_few, {})


@pytest.mark.parametrize(
    "hack",
    [
        r"\boxed{3} or \boxed{4}",  # hedging: a run of boxes
        r"\boxed{3, 4}",  # hedging: candidates in one box
        r"<!-- \boxed{4} --> \boxed{7}",  # hidden: a box in a comment
        r"\phantom{\boxed{4}} \boxed{7}",  # hidden: a box nobody sees
        r"\boxed{\text{not } 4}",  # a qualifier that changes the claim
        r"\boxed{4}. Hmm, actually the answer is 3.",  # contradicted after the box
        "",  # the shortest answer of all: nothing
    ],
)
def test_length_rewards_never_pay_a_short_hack(hack):
    """The length rewards pay for short *right* answers: a policy cannot earn them with a short
    hedge, a hidden box, a qualifier or an empty reply, however short it is, in the same group
    as long honest answers; the budget reward does not pay it for being within budget either."""
    from rewards.runner import Scorer

    honest = r"Two and two make four, so the answer is \boxed{4}"
    comps = [hack, honest, honest + " indeed"]
    fields = [{"answer": "4", "completion_tokens": t, "step": 50, "budget": 64} for t in (2, 30, 40)]
    specs = [
        ("math_answer", 1.0),
        ("group_length_reward", 1.0, {"warmup_steps": 0}),
        ("token_cost", 1.0, {"cost_per_token": 0.001}),
        ("budget_reward", 1.0),
    ]
    with Scorer(specs, workers=0) as scorer:
        batch = scorer.score(comps, fields, groups=[0, 0, 0])
    assert batch.correct == [False, True, True]
    assert batch.scores["math_answer"][0] == 0.0
    assert batch.scores["group_length_reward"][0] <= 0.0  # never a bonus for being short
    assert (batch.scores["token_cost"][0] or 0.0) == 0.0
    assert (batch.scores["budget_reward"][0] or 0.0) <= 0.0
    assert batch.total[0] <= 0.0 < batch.total[1]
    # the honest answers are paid, the shorter more than the longer
    assert batch.scores["group_length_reward"][1] > batch.scores["group_length_reward"][2]
