"""Length shaping: DAPO soft overlong punishment and the linear length penalty."""

from __future__ import annotations

import pytest

import rewards
from rewards.shaping import completion_length, length_penalty, overlong_penalty


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
