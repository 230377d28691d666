"""Format checkers: think block then answer; a final boxed, well-formed answer."""

from __future__ import annotations

import pytest

import rewards
from rewards.format import boxed_format, find_boxes, is_number_answer, last_boxed, think_format


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>3 + 4 is 7</think>The answer is 7.", 1.0),
        ("  \n<think>\nfirst line\nsecond line\n</think>\n\n7\n", 1.0),
        ("<think>a</think> \\boxed{7}", 1.0),
        ("<think>reasoning</think>", 0.0),  # no answer
        ("<think>reasoning</think>   \n ", 0.0),  # blank answer
        ("<think>   \n </think> 7", 0.0),  # empty thinking
        ("7 <think>reasoning</think> 7", 0.0),  # text before the block
        ("<think>reasoning 7", 0.0),  # never closed
        ("reasoning</think> 7", 0.0),  # no opening tag
        ("</think><think>x</think> 7", 0.0),
        ("<think>a</think> 7 <think>b</think> 8", 0.0),  # two blocks
        ("<think>a <think> b</think> 7", 0.0),  # nested open
        ("The answer is 7.", 0.0),
        ("", 0.0),
    ],
)
def test_think_format(text, expected):
    r = think_format(text, {})
    assert r.score == expected
    assert r.correct is None


def test_think_format_open_in_prompt():
    assert think_format("reasoning\n</think>\n7", {}, open_in_prompt=True).score == 1.0
    assert think_format("<think>reasoning</think> 7", {}, open_in_prompt=True).score == 0.0
    assert think_format("reasoning 7", {}, open_in_prompt=True).score == 0.0


def test_think_format_answer_tags():
    ok = "<think>r</think>\n<answer> 7 </answer>\n"
    assert think_format(ok, {}, answer_tags=True).score == 1.0
    assert think_format("<think>r</think> 7", {}, answer_tags=True).score == 0.0
    assert think_format("<think>r</think> <answer> </answer>", {}, answer_tags=True).score == 0.0
    assert think_format("<think>r</think> <answer>7</answer> and more", {}, answer_tags=True).score == 0.0


def test_think_format_min_chars_and_reason():
    r = think_format("<think>ab</think> 7", {}, min_think_chars=5)
    assert r.score == 0.0 and r.info["reason"] == "empty thinking"
    assert think_format("<think>abcdef</think> 7", {}, min_think_chars=5).score == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"3 + 4 = \boxed{7}", 1.0),
        (r"\boxed{-12}", 1.0),
        (r"\boxed{ 3.25 }", 1.0),
        (r"\boxed{.5}", 1.0),
        (r"\boxed{1,234,567}", 1.0),
        (r"\boxed{\frac{3}{4}}", 1.0),
        (r"\boxed{\dfrac{3}{4}}", 1.0),
        (r"\boxed{-\frac{3}{4}}", 1.0),
        (r"\boxed{3/4}", 1.0),
        (r"\boxed{6\frac{1}{64}}", 1.0),
        (r"\boxed{x = 5}", 1.0),
        (r"\boxed{50\%}", 1.0),
        (r"\boxed{\$18}", 1.0),
        (r"\boxed{44^\circ}", 1.0),
        (r"\boxed{\text{12}}", 1.0),
        (r"\boxed 7", 1.0),
        (r"\fbox{7}", 1.0),
        (r"\boxed{}", 0.0),
        (r"\boxed{ }", 0.0),
        (r"\boxed{x}", 0.0),
        (r"\boxed{\text{answer}}", 0.0),
        (r"\boxed{3 + 4}", 0.0),  # restating the question is not an answer
        (r"\boxed{7 + }", 0.0),
        (r"\boxed{1,23}", 0.0),
        (r"\boxed{7", 0.0),  # unclosed
        (r"the answer is 7", 0.0),
        (r"\boxed{7} and then \boxed{seven}", 0.0),  # the last box counts
        (r"\boxed{seven} no wait \boxed{7}", 1.0),
    ],
)
def test_boxed_format_requires_number(text, expected):
    r = boxed_format(text, {})
    assert r.score == expected, r.info
    assert r.correct is None


def test_boxed_format_any_content():
    assert boxed_format(r"\boxed{x^2 + 1}", {}, require_number=False).score == 1.0
    assert boxed_format(r"\boxed{\text{yes}}", {}, require_number=False).score == 1.0
    assert boxed_format(r"\boxed{  }", {}, require_number=False).score == 0.0
    assert boxed_format("no box", {}, require_number=False).score == 0.0


def test_boxed_format_pattern_and_max_boxes():
    assert boxed_format(r"\boxed{B}", {}, pattern="[A-E]").score == 1.0
    assert boxed_format(r"\boxed{F}", {}, pattern="[A-E]").score == 0.0
    assert boxed_format(r"\boxed{B}", {}).score == 0.0
    two = r"\boxed{3} or \boxed{4}"
    assert boxed_format(two, {}).score == 1.0
    assert boxed_format(two, {}, max_boxes=1).score == 0.0


def test_boxed_format_after_think():
    text = r"<think>maybe \boxed{5}</think> I am not sure"
    assert boxed_format(text, {}).score == 0.0
    assert boxed_format(text, {}, after_think=False).score == 1.0
    assert boxed_format(r"<think>hmm</think> so \boxed{5}", {}).score == 1.0


def test_find_boxes_nested_and_escaped():
    assert find_boxes(r"\boxed{\frac{1}{\sqrt{2}}} and \boxed{\{1,2\}}") == [
        r"\frac{1}{\sqrt{2}}",
        r"\{1,2\}",
    ]
    assert last_boxed("none") is None
    assert last_boxed(r"\boxedfoo{1} \boxed{2}") == "2"


@pytest.mark.parametrize("s", ["7", "-7", "+7", "0.5", "1,000", r"\frac12", "2/3", r"\text{3}", "y=2", "−3"])
def test_is_number_answer_true(s):
    assert is_number_answer(s)


@pytest.mark.parametrize("s", ["", "x", "7x", "1e", "2^3", r"\sqrt{2}", "1 2", "--3", "3..5", "a = b"])
def test_is_number_answer_false(s):
    assert not is_number_answer(s)


def test_registered_names():
    assert rewards.resolve("think_format") is think_format
    assert rewards.resolve("boxed_format") is boxed_format
