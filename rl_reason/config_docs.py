"""docs/RECIPES.md, generated from the schema in ``rl_reason.config``.

    python -m rl_reason.config_docs > docs/RECIPES.md      # or: make docs

The page is the ``RunConfig`` docstring, then one table per section (every field's default,
what values it takes, whether a resume may change it, and its one-line doc), framed by the
section's docstring: its first paragraph goes above the table, the rest below.
``tests/rl_reason/test_config_docs.py`` fails when the checked-in page is stale.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import typing
from typing import Any, Literal, Union

from rl_reason.config import RunConfig, field_meta

HEADER = (
    "<!-- Generated from rl_reason/config.py by `python -m rl_reason.config_docs` (make docs); "
    "edit the field docs there, not this file. -->"
)
COLUMNS = ("field", "default", "values", "resume", "meaning")


def _code(text: str) -> str:
    return f"`{text}`"


def _type_label(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_label(a) for a in typing.get_args(tp))
    if origin is Literal:
        return ", ".join(_code(str(a)) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return "list of " + ("mappings" if dataclasses.is_dataclass(arg) else _type_label(arg))
    if origin is dict:
        return "mapping"
    return {bool: "true/false", int: "integer", float: "number", str: "text"}.get(tp, "any")


def _values(f: dataclasses.Field, tp: Any) -> str:
    """What a field takes: its type or choices, its bounds, and whether null is allowed."""
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args
    if optional:
        rest = tuple(a for a in args if a is not type(None))
        tp = rest[0] if len(rest) == 1 else Union[rest]
    bounds = field_meta(f).bounds.describe()
    label = _type_label(tp) + (f" {bounds}" if bounds else "")
    return label + " or null" if optional else label


def _default(f: dataclasses.Field) -> str:
    meta = field_meta(f)
    if meta.shown is not None:
        return meta.shown
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        value = f.default
    if value is None:
        return _code("null")
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, (list, dict)):
        return _code(json.dumps(value))
    return _code(str(value))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(cls: type, prefix: str) -> list[str]:
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, path = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += _rows(tp, path + ".")
            continue
        meta = field_meta(f)
        values = _values(f, tp)
        if path == "algorithm.name":  # the registry's names are its choices
            from rl_reason.algorithms import registry

            values = ", ".join(_code(n) for n in registry.names())
        cells = (_code(path), _default(f), values, "may change" if meta.resume_safe else "fixed", meta.doc)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if item is not None and dataclasses.is_dataclass(item):
            rows += _rows(item, path + "[].")
    return rows


def _split_doc(cls: type) -> tuple[str, str]:
    doc = inspect.getdoc(cls) or ""
    head, _, rest = doc.partition("\n\n")
    return head.replace("\n", " "), rest.strip()


def render() -> str:
    """The whole of docs/RECIPES.md."""
    out = ["# Recipes", "", HEADER, "", inspect.getdoc(RunConfig) or "", ""]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        cls, prefix, own = hints[f.name], f.name + ".", []
        if typing.get_origin(cls) is list:  # a list of sections (stages): its row, then the item's
            meta = field_meta(f)
            cells = (
                _code(f.name),
                _default(f),
                _values(f, cls),
                "may change" if meta.resume_safe else "fixed",
                meta.doc,
            )
            own = ["| " + " | ".join(_cell(c) for c in cells) + " |"]
            (cls,), prefix = typing.get_args(cls), f.name + "[]."
        above, below = _split_doc(cls)
        out += [f"## {f.name}", "", above, ""]
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
        out += own + _rows(cls, prefix)
        out.append("")
        if below:
            out += [below, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
