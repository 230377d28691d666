"""The import graph of the two packages, read from the source (every import, lazy ones too).

Fails on: an import cycle between modules; anything importing ``rl_reason.cli`` (the CLI is a
leaf: argparse and dispatch only); ``rewards`` importing torch or rl_reason (checkers run in
worker processes and in user code that must not pay for torch); and any module outside
``rl_reason/rollout/`` importing vllm (the engines are the one place that knows vLLM).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rl_reason", "rewards")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (absolute names), at any depth of the file."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            found.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal_edges(name: str) -> set[str]:
    """Edges to project modules, leaving out a package's own __init__ seen from inside it
    (``from rewards import RewardResult`` in rewards/math.py runs rewards/__init__ first in
    any case, so it adds no ordering constraint of its own)."""
    out = set()
    for target in GRAPH[name]:
        if target not in MODULES or target == name:
            continue
        if name.startswith(target + "."):
            continue
        out.add(target)
    return out


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(_internal_edges(node)):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for mod in sorted(MODULES):
        if mod not in state:
            cycle = visit(mod)
            if cycle:
                return cycle
    return None


def _importers(pred) -> list[str]:
    return sorted(m for m, deps in GRAPH.items() if any(pred(d) for d in deps))


def test_the_walk_sees_the_packages():
    # guards against a walk that finds nothing and so passes everything below
    assert "rl_reason.trainer" in MODULES and "rewards.runner" in MODULES
    assert "rl_reason.config" in GRAPH["rl_reason.trainer"]


def test_no_import_cycle():
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_nothing_imports_the_cli():
    is_cli = lambda d: d == "rl_reason.cli" or d.startswith("rl_reason.cli.")  # noqa: E731
    assert _importers(is_cli) == []
    # the benchmark scripts are no package, but they must not need the CLI either
    scripts = sorted((ROOT / "bench").glob("*.py"))
    assert scripts and [p.name for p in scripts if any(map(is_cli, _imports(f"bench.{p.stem}", p)))] == []


def test_rewards_import_neither_torch_nor_rl_reason():
    bad = [
        m
        for m in MODULES
        if m.split(".")[0] == "rewards"
        for d in GRAPH[m]
        if d.split(".")[0] in ("torch", "rl_reason")
    ]
    assert bad == []


def test_only_the_rollout_package_imports_vllm():
    users = _importers(lambda d: d.split(".")[0] == "vllm")
    assert [m for m in users if not m.startswith("rl_reason.rollout.")] == []
