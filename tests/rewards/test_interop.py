"""TRL and verl adapters, called the way those libraries call reward functions."""

from __future__ import annotations

import pickle

import pytest

from rewards import UnknownCheckerError
from rewards.interop import for_trl, for_verl, message_text

C = "tests.rewards._checkers:"


def trl_calculate_rewards(reward_funcs, inputs, prompts, completions, completion_ids_list, logged):
    """The calling convention of trl 1.16 GRPOTrainer._calculate_rewards (sync reward functions):
    dataset columns (except prompt/completion/completion_ids) as keyword lists, plus
    trainer_state, log_extra, log_metric; None becomes NaN there, so we keep None."""
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = object()
    reward_kwargs["log_extra"] = lambda column, values: logged.setdefault(column, []).extend(values)
    reward_kwargs["log_metric"] = lambda name, value: logged.setdefault(name, []).append(value)
    out = []
    for reward_func in reward_funcs:
        rewards = reward_func(
            prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs
        )
        assert len(rewards) == len(prompts)
        out.append(rewards)
    return out


def test_trl_standard_completions():
    inputs = [
        {"prompt": "What is 3+4?", "answer": "7", "level": 1},
        {"prompt": "What is 3+4?", "answer": "7", "level": 1},
        {"prompt": "What is 2+2?", "answer": "4", "level": 2},
    ]
    prompts = [x["prompt"] for x in inputs]
    completions = ["7", "8", "4"]
    ids = [[1, 2], [3], [4, 5, 6]]
    logged = {}
    fn = for_trl(C + "echo_answer")
    lengths = for_trl("overlong_penalty", max_len=3, cache_len=2)
    boxed, over = trl_calculate_rewards([fn, lengths], inputs, prompts, completions, ids, logged)
    assert boxed == [1.0, 0.0, 1.0]
    # completion_ids lengths are the token counts: 2 -> 0.5 into the soft zone, 1 -> 0, 3 -> full
    assert over == pytest.approx([-0.5, 0.0, -1.0])
    assert logged["rewards/echo_answer/errors"] == [0.0]
    assert logged["rewards/overlong_penalty/timeouts"] == [0.0]


def test_trl_conversational_completions_and_answer_key():
    inputs = [
        {"prompt": [{"role": "user", "content": "3+4?"}], "solution": "7"},
        {"prompt": [{"role": "user", "content": "2+2?"}], "solution": "4"},
    ]
    prompts = [x["prompt"] for x in inputs]
    completions = [
        [{"role": "assistant", "content": "7"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "5"}]}],
    ]
    fn = for_trl(C + "echo_answer", answer_key="solution")
    (scores,) = trl_calculate_rewards([fn], inputs, prompts, completions, [[1], [1]], {})
    assert scores == [1.0, 0.0]


def test_trl_none_errors_and_timeouts():
    inputs = [{"prompt": "p"}, {"prompt": "p", "answer": "x"}]
    # only_if_answer needs the column; a column missing from some rows is not passed at all
    (scores,) = trl_calculate_rewards(
        [for_trl(C + "only_if_answer")], inputs, ["p", "p"], ["a", "b"], [[1], [1]], {}
    )
    assert scores == [None, None]
    inputs = [{"prompt": "p", "answer": "x"}] * 3
    logged = {}
    fn = for_trl(C + "boom")
    (scores,) = trl_calculate_rewards([fn], inputs, ["p"] * 3, ["ok", "boom", "fine"], [[1]] * 3, logged)
    assert scores == [1.0, 0.0, 1.0]
    assert logged["rewards/boom/errors"] == [1.0]
    fn = for_trl(C + "sleepy", timeout_s=0.3, workers=1)
    try:
        (scores,) = trl_calculate_rewards([fn], inputs, ["p"] * 3, ["a", "sleep", "b"], [[1]] * 3, logged)
    finally:
        fn.close()
    assert scores == [1.0, 0.0, 1.0]
    assert logged["rewards/sleepy/timeouts"] == [1.0]


def test_trl_name_pickling_and_trl_helpers():
    fn = for_trl("boxed_format", require_number=False)
    assert fn.__name__ == "boxed_format"
    assert for_trl(C + "const", name="my_const").__name__ == "my_const"
    clone = pickle.loads(pickle.dumps(fn))
    assert clone(prompts=["p"], completions=[r"\boxed{x}"]) == [1.0]
    trl_utils = pytest.importorskip("trl.trainer.utils")
    assert trl_utils.get_callable_name(fn) == "boxed_format"
    assert trl_utils.is_async_callable(fn) is False


def test_trl_unknown_checker():
    with pytest.raises(UnknownCheckerError, match="known names"):
        for_trl("no_such_checker")


def test_verl_calling_convention():
    compute_score = for_verl(C + "echo_answer")
    # verl's NaiveRewardManager calls with keywords
    assert (
        compute_score(data_source="openai/gsm8k", solution_str="7", ground_truth="7", extra_info={"index": 0})
        == 1.0
    )
    assert (
        compute_score(data_source="openai/gsm8k", solution_str="8", ground_truth="7", extra_info=None) == 0.0
    )
    # positionally, as in default_compute_score(data_source, solution_str, ground_truth, extra_info)
    assert compute_score("lighteval/MATH", "7", "7") == 1.0
    # newer verl passes extra keywords; they are accepted
    assert compute_score("x", "7", "7", None, sandbox_fusion_url=None, concurrent_semaphore=None) == 1.0
    value = compute_score("x", "7", "7")
    assert isinstance(value, float)


def test_verl_fields_and_failures():
    seen = {}

    def spy(completion, fields):
        seen.update(fields)
        return None

    compute_score = for_verl(spy)
    assert compute_score("src", "text", "42", {"split": "train"}) == 0.0  # None -> 0.0
    assert seen == {"split": "train", "answer": "42", "data_source": "src"}
    assert for_verl(C + "boom")("s", "boom", "1") == 0.0
    fn = for_verl(C + "spin", timeout_s=0.3)
    try:
        assert fn("s", "spin", "1") == 0.0
        assert fn("s", "ok", "1") == 1.0
    finally:
        fn.close()


def test_verl_with_builtin_format_checker():
    compute_score = for_verl("boxed_format")
    assert compute_score("openai/gsm8k", r"so \boxed{72}", "72") == 1.0
    assert compute_score("openai/gsm8k", r"so \boxed{x}", "72") == 0.0


def test_message_text():
    assert message_text("abc") == "abc"
    assert (
        message_text(
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "t"},
                {"role": "assistant", "content": "b"},
            ]
        )
        == "a\nb"
    )
    assert message_text([{"content": "x"}]) == "x"
    assert (
        message_text({"role": "assistant", "content": [{"type": "text", "text": "y"}, {"type": "image"}]})
        == "y"
    )
