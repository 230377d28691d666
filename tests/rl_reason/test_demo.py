import ast
from pathlib import Path

from rl_reason.demo import DEMO_RECIPE, demo_config, held_out_rows

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, function-level (lazy) imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_in_the_packages_imports_the_cli():
    """cli -> eval_cli -> eval_sets -> cli was a cycle: the demo recipe now lives in demo.py."""
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in ("rl_reason", "rewards", "bench")
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if p.name != "cli.py" and "rl_reason.cli" in _imported_modules(p)
    ]
    assert offenders == []


def test_held_out_rows_follow_the_demo_recipe():
    cfg = demo_config()
    rows, template, checkers = held_out_rows()
    assert len(rows) == cfg.data.synthetic.num_eval
    assert rows[0]["id"] == "heldout-0" and rows[0]["answer"]
    assert template == cfg.data.prompt_template
    assert [c["name"] for c in checkers] == ["math_answer"]
    assert DEMO_RECIPE.is_file()
