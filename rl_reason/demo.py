"""The CPU demo: its recipe (shipped inside the package) and its held-out set.

``rl-reason demo`` trains with ``DEMO_RECIPE``; ``rl-reason eval --data arith`` scores
``held_out_rows()``, the same prompts the demo's before/after line reports.
"""

from __future__ import annotations

from pathlib import Path

# inside the package, so `rl-reason demo` works from a wheel; recipes/demo/grpo_arith.yaml mirrors it
DEMO_RECIPE = Path(__file__).resolve().parent / "demo_recipe.yaml"


def demo_config(overrides: list[str] | None = None):
    from rl_reason.config import load_config

    return load_config(DEMO_RECIPE, list(overrides or []))


def held_out_rows() -> tuple[list[dict], str, list[dict]]:
    """(rows, prompt template, checkers) of the demo's held-out problems, asked and graded as
    the demo does.

    They are generated from the demo recipe's synthetic settings and seed, so ``rl-reason
    eval --data arith`` scores exactly the prompts the demo's before/after line reports.
    """
    from rl_reason.data import synthetic_problems

    cfg = demo_config()
    _, held_out = synthetic_problems(cfg.data.synthetic, cfg.train.seed)
    rows = [{"id": f"heldout-{i}", "question": q, "answer": a} for i, (q, a) in enumerate(held_out)]
    checkers = [
        {"name": c.name, "params": dict(c.params)} for c in cfg.rewards.checkers if c.name == "math_answer"
    ]
    return rows, cfg.data.prompt_template, checkers
