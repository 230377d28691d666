"""Budget-conditioned prompts (L1-style): a token budget stated in the prompt and in the fields.

``data.budget`` holds ranges, ``[lo, hi]`` or a list of them (``[[32, 64], [128, 256]]``). Each
prompt gets one budget: a range picked uniformly, then a whole number uniformly in it, drawn
from a generator seeded by the run seed and the prompt id, so the same prompt keeps its budget
across epochs and a resumed run. The budget goes into ``fields["budget"]`` (``budget_reward``
reads it) and into the prompt text through ``data.budget_template`` (``{budget}`` is replaced),
appended to the user turn (chat) or the prompt text (plain). At inference the user states the
budget the same way: ``rl-reason eval --budgets 64,128,256``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

DEFAULT_TEMPLATE = " Think for at most {budget} tokens."

__all__ = [
    "DEFAULT_TEMPLATE",
    "parse_budget_list",
    "parse_ranges",
    "sample_budget",
    "with_budget",
    "with_budgets",
]


def parse_ranges(spec: Any) -> list[tuple[int, int]]:
    """``[lo, hi]`` or ``[[lo, hi], ...]`` -> [(lo, hi), ...]; ValueError says what is wrong."""
    if not spec:
        return []
    items = [spec] if all(isinstance(v, (int, float)) for v in spec) else list(spec)
    out = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"each budget range is [lo, hi], got {item!r}")
        lo, hi = item
        if isinstance(lo, bool) or isinstance(hi, bool) or int(lo) != lo or int(hi) != hi:
            raise ValueError(f"budget ranges hold whole token counts, got {item!r}")
        if not 0 < int(lo) <= int(hi):
            raise ValueError(f"a budget range needs 0 < lo <= hi, got {item!r}")
        out.append((int(lo), int(hi)))
    return out


def sample_budget(ranges: Sequence[tuple[int, int]], seed: int, prompt_id: str) -> int:
    """One budget for one prompt, the same for the same (seed, prompt id)."""
    rng = random.Random(f"budget:{seed}:{prompt_id}")
    lo, hi = ranges[rng.randrange(len(ranges))]
    return rng.randint(lo, hi)


def with_budget(record, budget: int, template: str = DEFAULT_TEMPLATE):
    """A copy of a PromptRecord whose prompt states ``budget`` and whose fields hold it."""
    note = template.replace("{budget}", str(int(budget)))
    fields = dict(record.fields, budget=int(budget))
    if record.messages is not None:
        messages = [dict(m) for m in record.messages]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        last = users[-1] if users else len(messages) - 1
        messages[last]["content"] = str(messages[last]["content"]) + note
        return dataclasses.replace(record, messages=messages, fields=fields)
    return dataclasses.replace(record, text=(record.text or "") + note, fields=fields)


def with_budgets(records: Sequence[Any], spec: Any, template: str, seed: int) -> list:
    """``data.budget``: every record with its own budget drawn from the ranges in ``spec``."""
    ranges = parse_ranges(spec)
    return [with_budget(r, sample_budget(ranges, seed, r.id), template) for r in records]


def parse_budget_list(text: str) -> list[int]:
    """``"64,128,256"`` -> [64, 128, 256] (for ``eval --budgets``); ValueError on a bad entry."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"{part!r} is not a positive whole number of tokens; write e.g. 64,128,256")
        out.append(int(part))
    return out
