"""The one reader of final answers: ``\\boxed{}`` groups, what a reader can see, and the strategies
that find a completion's final answer. ``rewards.math``, ``rewards.format`` and ``rl_reason.data``
all read boxes here, so a box means the same thing to every checker.

Rules (docs/REWARDS.md, "The math verifier", states them for users):

- Only text after the last ``</think>`` counts; ``<think>`` without ``</think>`` has no answer.
- Only what renders counts. HTML comments, LaTeX ``%`` comments, ``\\iffalse...\\fi``,
  ``comment`` environments, ``\\phantom``-family groups and struck-out groups (``\\cancel``,
  ``\\sout``, ``~~...~~``) are dropped before boxes are looked for. A completion that redefines
  macros (``\\def``, ``\\renewcommand``, ...) or hides text (white or transparent colour, HTML
  ``display:none``) has no answer at all: what it renders cannot be known from its text.
- A box is ``\\boxed{...}`` or ``\\fbox{...}`` with balanced braces (``\\{``, ``\\}`` and ``\\\\`` are
  escapes, not braces), or ``\\boxed x`` holding one character, as TeX reads it. Unclosed boxes are
  skipped. Braces are matched in one linear pass, so many unclosed boxes cost nothing extra.
- Hedging: several boxes holding different answers pay nothing, unless each earlier one is
  retracted in words ("wait", "actually", "mistake", ...) before the next.
- Contradiction: after the final answer, a retraction word, a hedge word ("or", "maybe") or a
  different answer claim ("the answer is 3") removes it: the completion has no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

__all__ = [
    "Box",
    "FinalAnswer",
    "DEFAULT_ORDER",
    "answer_region",
    "visible_text",
    "hidden_reason",
    "find_boxes",
    "last_box",
    "final_answer",
]

DEFAULT_ORDER = ("boxed", "hash", "answer_is", "answer_colon")


@dataclass(frozen=True)
class Box:
    content: str
    start: int  # index of the backslash of \boxed
    end: int  # index after the box


@dataclass(frozen=True)
class FinalAnswer:
    """What a completion offers as its final answer; ``answer`` None with the ``reason`` why."""

    answer: Optional[str]
    reason: str  # ok | no answer | unfinished think | hidden: ... | hedged | contradicted
    strategy: Optional[str] = None
    candidates: tuple = ()


# ----------------------------------------------------------------------------- region, visibility


def answer_region(text: str) -> Optional[str]:
    """The text after the reasoning block; None for an unfinished block."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


_MACRO_DEF = re.compile(
    r"\\(?:def|edef|gdef|xdef|let|futurelet|renewcommand|newcommand|providecommand|"
    r"DeclareMathOperator|DeclareRobustCommand|renewenvironment|newenvironment|catcode|"
    r"require|unicode|href|html\w*|style|class|cssId)(?![A-Za-z])"
)
_WHITE = r"(?:white|transparent|none|invisible|#?f{3}(?:f{3})?\b|#?F{3}(?:F{3})?\b|1\s*,\s*1\s*,\s*1|255\s*,\s*255\s*,\s*255)"
_HIDDEN_COLOUR = re.compile(
    r"\\(?:color|textcolor|colorbox|pagecolor)\s*(?:\[[^\]]*\])?\s*\{\s*" + _WHITE, re.I
)
_HIDDEN_HTML = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0*)?\b|font-size\s*:\s*0|"
    r"color\s*:\s*" + _WHITE + r"|<[a-z][^>]*\shidden\b|<(?:script|style|template)\b",
    re.I,
)


def hidden_reason(text: str) -> Optional[str]:
    """Why ``text`` cannot be read as it renders (macro definitions, invisible text), or None."""
    if _MACRO_DEF.search(text):
        return "hidden: redefines macros"
    if _HIDDEN_COLOUR.search(text) or _HIDDEN_HTML.search(text):
        return "hidden: invisible text"
    return None


_DROP = re.compile(
    r"<!--.*?(?:-->|$)"  # HTML comments (an unclosed one runs to the end)
    r"|\\iffalse\b.*?(?:\\fi\b|$)"
    r"|\\begin\{comment\}.*?(?:\\end\{comment\}|$)"
    r"|~~.*?~~",  # markdown strike-through
    re.S,
)
# a LaTeX comment: an unescaped % that does not follow a number (50% is a percentage)
_TEX_COMMENT = re.compile(r"(?<![\\\d])(?<!\d\s)%[^\n]*")
_INVISIBLE_GROUP = re.compile(
    r"\\(?:phantom|hphantom|vphantom|cancel|bcancel|xcancel|sout|st|xout|strike)\s*\{"
)


def _drop_groups(text: str, pattern: re.Pattern) -> str:
    """Remove every ``\\cmd{...}`` matched by ``pattern`` with its braced argument."""
    if not pattern.search(text):
        return text
    match = brace_matches(text)
    out, i = [], 0
    for m in pattern.finditer(text):
        if m.start() < i:
            continue
        close = match.get(m.end() - 1)
        out.append(text[i : m.start()])
        i = len(text) if close is None else close + 1
    out.append(text[i:])
    return "".join(out)


def visible_text(text: str) -> str:
    """``text`` without what a reader cannot see (comments, phantoms, struck-out groups)."""
    if "<!--" in text or "\\iffalse" in text or "comment}" in text or "~~" in text:
        text = _DROP.sub(" ", text)
    if "%" in text:
        text = _TEX_COMMENT.sub("", text)
    text = _drop_groups(text, _INVISIBLE_GROUP)
    if not text.isascii():
        # zero-width and bidirectional controls change what renders without showing
        text = re.sub("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]", "\u2063", text)
    return text


# ----------------------------------------------------------------------------- boxes


def brace_matches(text: str) -> dict[int, int]:
    """{index of '{': index of its '}'} for every balanced group, in one pass.

    ``\\{``, ``\\}`` and ``\\\\`` are escapes. An unmatched ``{`` is absent from the result.
    """
    out: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    find = re.compile(r"[\\{}]").search
    while True:
        m = find(text, i)
        if m is None:
            return out
        k = m.start()
        c = text[k]
        if c == "\\":
            i = k + 2
            continue
        if c == "{":
            stack.append(k)
        elif stack:
            out[stack.pop()] = k
        i = k + 1
        if i >= n:
            return out


_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def find_boxes(text: str) -> list[Box]:
    """Every complete box in ``text``, in order; a box nested in another is part of it."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    match = brace_matches(text)
    out: list[Box] = []
    i = 0
    for m in _BOX_CMD.finditer(text):
        if m.start() < i:
            continue  # inside the previous box
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            close = match.get(j)
            if close is None:
                continue  # unclosed
            out.append(Box(text[j + 1 : close], m.start(), close + 1))
            i = close + 1
        elif m.group(0) == "\\boxed" and m.end() < j < len(text) and text[j] not in "\\${}\n":
            # "\boxed 5": TeX takes one character as the argument
            out.append(Box(text[j], m.start(), j + 1))
            i = j + 1
    return out


def last_box(text: str) -> Optional[str]:
    """The content of the last complete box in ``text`` (no visibility rules), or None."""
    boxes = find_boxes(text)
    return boxes[-1].content if boxes else None


# ----------------------------------------------------------------------------- final answer

_RETRACT = re.compile(
    r"\b(?:wait|actually|hmm+|oops|mistake|wrong|incorrect|correction|scratch that|instead|"
    r"rather|recheck|recompute|redo|reconsider|on second thought|not quite|not right|"
    r"let me (?:re|double|check|fix)|no,|no\.|no!)",
    re.I,
)
_HEDGE = re.compile(r"(?:^|[\s(,;])(?:or|maybe|perhaps|possibly|probably|either|alternatively)\b", re.I)
_CLAIM = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+(?:is|would be|should be)\s*:?|(?:^|\s|\*)answer\s*\**\s*:\**|####)",
    re.I,
)


def _key(s: str) -> str:
    """A cheap text key for "the same candidate written twice"."""
    s = re.sub(r"\\(?:left|right|displaystyle)|\\[,;!]|[\s$]", "", s)
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").rstrip(".")


def _line_value(text: str, end: int) -> str:
    rest = text[end:].split("\n", 1)[0]
    return re.split(r"\.(?:\s|$)", rest, 1)[0]


def _claims(text: str, pattern: re.Pattern) -> list[tuple[str, int, int]]:
    """(value, start, end of the value's line) of every claim made with ``pattern``."""
    out = []
    for m in pattern.finditer(text):
        value = _line_value(text, m.end())
        out.append((value, m.start(), m.end() + len(value)))
    return out


_STRATEGIES = {
    "hash": re.compile(r"####"),
    "answer_is": re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?", re.I),
    "answer_colon": re.compile(r"(?:^|\s|\*)answer\s*\**\s*:\**", re.I),
}


def _same(a: str, b: str, same: Optional[Callable[[str, str], bool]]) -> bool:
    if _key(a) == _key(b):
        return True
    return bool(same and same(a, b))


def _tidy(value: str) -> str:
    value = value.strip().strip("*").strip()
    value = re.sub(r"^\$+|\$+$", "", value).strip()
    value = re.sub(r"^\\[(\[]|\\[)\]]$", "", value).strip()
    return _drop_full_stop(value)


def _drop_full_stop(value: str) -> str:
    """A sentence's full stop is not part of the answer; ``\\right.`` (an empty delimiter) is."""
    while value.endswith(".") and not value.endswith("\\right."):
        value = value[:-1].rstrip()
    return value


def _judge(cands: list[tuple[str, int, int]], text: str, strategy: str, same) -> FinalAnswer:
    """Hedging and contradiction rules over the candidates one strategy found."""
    final, _, final_end = cands[-1]
    for (value, _, end), (nxt, nxt_start, _) in zip(cands, cands[1:]):
        if not _same(value, nxt, same) and not _RETRACT.search(text[end:nxt_start]):
            return FinalAnswer(None, "hedged", strategy, tuple(c[0] for c in cands))
    tail = text[final_end:]
    if _RETRACT.search(tail) or _HEDGE.search(tail):
        return FinalAnswer(None, "contradicted", strategy, (final,))
    for value, _, _ in _claims(tail, _CLAIM):
        v = _tidy(value)
        if v and not _same(_tidy(final), v, same) and not _same(final, v, same):
            return FinalAnswer(None, "contradicted", strategy, (final, v))
    return FinalAnswer(final, "ok", strategy, (final,))


def final_answer(
    text: str,
    order: Optional[Sequence[str]] = None,
    same: Optional[Callable[[str, str], bool]] = None,
) -> FinalAnswer:
    """The final answer of a completion under the module's rules.

    ``order`` names the strategies tried in turn (``boxed``, ``hash`` = ``#### n``, ``answer_is``
    = "The answer is ...", ``answer_colon`` = "Answer: ..."); the first that finds a candidate
    decides. ``same(a, b)`` tells two candidates that are one answer written twice (the math
    checker passes its equivalence); without it only equal text is the same.
    """
    if not isinstance(text, str):
        return FinalAnswer(None, "no answer")
    region = answer_region(text)
    if region is None:
        return FinalAnswer(None, "unfinished think")
    hidden = hidden_reason(region)
    if hidden:
        return FinalAnswer(None, hidden)
    vis = visible_text(region)
    for name in order or DEFAULT_ORDER:
        if name == "boxed":
            cands = [(b.content, b.start, b.end) for b in find_boxes(vis)]
        elif name in _STRATEGIES:
            cands = [c for c in _claims(vis, _STRATEGIES[name]) if _tidy(c[0])]
        else:
            raise ValueError(
                f"unknown extraction strategy {name!r}; known: {sorted(('boxed', *_STRATEGIES))}"
            )
        if cands:
            if name == "boxed" and not any(c[0].strip() for c in cands):
                continue
            return _judge(cands, vis, name, same)
    return FinalAnswer(None, "no answer")
