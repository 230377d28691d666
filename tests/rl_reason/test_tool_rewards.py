"""Rewards on tool rollouts grade the model's final turn, never the tool's output.

A policy with the python tool could otherwise be paid for code that prints ``\\boxed{...}`` (of
a computed or a guessed value) without ever stating an answer itself. Each case below is a
scripted rollout through the real driver and sandbox, graded by the built-in checkers as the
trainer and ``rl-reason eval`` grade it (``multiturn.graded_text`` and ``checker_fields``).
"""

import pytest

from rl_reason.data import PromptRecord
from rl_reason.envs.python_tool import PythonTool, strip_calls
from rl_reason.rollout import SamplingParams, multiturn
from rl_reason.rollout.multiturn import ToolSettings

CHECKERS = [("math_answer", 1.0, {"numeric_only": True, "order": ["boxed"]}), ("boxed_format", 0.1)]


class Script:
    """An engine whose k-th round writes turn k of the script (exact ids, as a sampler would);
    a turn that ends a fence stops there, the others end with EOS; past the script, EOS alone."""

    def __init__(self, tok, turns):
        self.tok, self.turns, self.round = tok, list(turns), 0

    def continue_rows(self, seqs, sampling):
        if self.round >= len(self.turns):
            return [([], [], "eos") for _ in seqs]
        text = self.turns[self.round]
        self.round += 1
        ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
        return [(ids, [0.0] * len(ids), "stop" if text.endswith("```") else "eos") for _ in seqs]


@pytest.fixture(scope="module")
def tok(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


@pytest.fixture(scope="module")
def scorer():
    from rewards.runner import Scorer

    with Scorer(CHECKERS, workers=0) as s:
        yield s


def rollout(tok, turns, max_tool_calls=2, max_new_tokens=200):
    rec = PromptRecord(
        id="q", messages=[{"role": "user", "content": "What is 6 * 7?"}], fields={"answer": "42"}
    )
    tools = ToolSettings(make_env=lambda: PythonTool(timeout_s=5.0), max_tool_calls=max_tool_calls)
    (r,) = multiturn.generate(
        Script(tok, turns), [rec], 1, SamplingParams(max_new_tokens=max_new_tokens), tools, tok
    )
    return r, rec


def grade(scorer, r, rec):
    batch = scorer.score([multiturn.graded_text(r)], [multiturn.checker_fields(rec.fields, r)])
    return batch.scores["math_answer"][0], batch.scores["boxed_format"][0], batch.correct[0]


HACKS = {
    # the code prints the box of a value it computed; the model never states it
    "code prints a computed box": ['```python\nprint("\\\\boxed{" + str(6 * 7) + "}")\n```', "Done."],
    # the code prints a guessed box
    "code prints a guessed box": ['```python\nprint("\\\\boxed{42}")\n```', "Done."],
    # the box is in a traceback the tool returned
    "tool error holds a box": ['```python\nraise ValueError("\\\\boxed{42}")\n```', "It failed."],
    # the rollout ends on the tool turn: the model has no last word
    "box only in tool output": ['```python\nprint("\\\\boxed{42}")\n```'],
    # a call past max_tool_calls ends the rollout; its code (box inside) is not an answer
    "box inside the code of the last turn": ['```python\nprint("\\\\boxed{42}")\n```'] * 2,
    # out of budget inside an open block: code, not an answer
    "box in an unclosed block": ['Let me see.\n```python\nprint("\\\\boxed{42}")\n'],
}


@pytest.mark.parametrize("name", list(HACKS))
def test_boxes_from_tool_output_or_code_never_pay(tok, scorer, name):
    turns = HACKS[name]
    r, rec = rollout(tok, turns, max_tool_calls=1 if name == "box inside the code of the last turn" else 2)
    if name == "box inside the code of the last turn":
        assert r.finish_reason == "tool_limit"
    if name != "box in an unclosed block":
        assert "\\boxed{42}" in r.completion_text  # the hack is there, in the transcript
    assert grade(scorer, r, rec) == (0.0, 0.0, False)


def test_the_rollout_ended_on_a_tool_turn_grades_nothing(tok):
    r, _ = rollout(tok, HACKS["box only in tool output"])  # the model's next turn is EOS alone
    assert [t.role for t in r.turns] == ["model", "tool"] and r.finish_reason == "stop"
    assert multiturn.graded_text(r) == "" and r.answer_text == ""


def test_an_honest_final_turn_after_reading_the_tool_pays(tok, scorer):
    r, rec = rollout(tok, ["```python\nprint(6 * 7)\n```", "The tool says 42, so \\boxed{42}."])
    assert [t.role for t in r.turns] == ["model", "tool", "model"]
    assert "42" in r.turns[1].text and not r.turns[1].error
    assert multiturn.graded_text(r) == "The tool says 42, so \\boxed{42}."
    assert grade(scorer, r, rec) == (1.0, 1.0, True)
    fields = multiturn.checker_fields(rec.fields, r)
    assert fields["transcript"] == r.completion_text and fields["turns"][1]["role"] == "tool"


def test_a_wrong_final_turn_does_not_borrow_the_tools_box(tok, scorer):
    r, rec = rollout(tok, ['```python\nprint("\\\\boxed{42}")\n```', "So \\boxed{41}."])
    assert grade(scorer, r, rec) == (0.0, 1.0, False)


def test_prose_of_a_last_turn_that_was_a_call_is_graded(tok, scorer):
    # the answer stated before a call that max_tool_calls refused still counts
    r, rec = rollout(tok, ["It is \\boxed{42}.\n```python\nprint(6 * 7)\n```"], max_tool_calls=0)
    assert r.finish_reason == "tool_limit" and multiturn.graded_text(r) == "It is \\boxed{42}.\n"
    assert grade(scorer, r, rec)[0] == 1.0


def test_single_turn_rollouts_are_graded_whole():
    from rl_reason.rollout import Rollout

    r = Rollout(0, [1], [2, 3], "x \\boxed{1}")
    assert multiturn.graded_text(r) == "x \\boxed{1}"
    assert "transcript" not in multiturn.checker_fields({}, r)


def test_strip_calls():
    assert strip_calls("a\n```python\nprint(1)\n```\nb") == "a\n\nb"
    assert strip_calls("a\n```py\nx = 1\n") == "a\n"
    assert strip_calls("a ```text\nkeep\n``` b") == "a ```text\nkeep\n``` b"  # not a call
    assert strip_calls("no code") == "no code"


def test_eval_grades_the_final_turn(tok):
    """rl-reason eval (generate_and_grade): the extracted answer and correctness come from the
    final model turn; the whole transcript stays in the sample's completion."""
    from rewards.runner import Scorer
    from rl_reason.evaluate import generate_and_grade

    rec = PromptRecord(id="q", messages=[{"role": "user", "content": "6 * 7?"}], fields={"answer": "42"})
    tools = ToolSettings(make_env=lambda: PythonTool(timeout_s=5.0), max_tool_calls=2)
    with Scorer(CHECKERS, workers=0) as scorer:
        for turns, correct in (
            (HACKS["code prints a guessed box"], False),
            (["```python\nprint(42)\n```", "\\boxed{42}"], True),
        ):
            graded = generate_and_grade(
                Script(tok, turns),
                [[]],
                [rec],
                scorer,
                SamplingParams(max_new_tokens=100),
                tools=tools,
                tokenizer=tok,
            )
            (res,) = graded.results
            assert res.correct is correct and res.extracted == ("42" if correct else None)
            assert "```output" in res.completion
