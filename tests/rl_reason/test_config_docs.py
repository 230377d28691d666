from pathlib import Path

from rl_reason.config import RunConfig, _walk
from rl_reason.config_docs import render

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_recipes_doc_is_generated_from_the_schema():
    doc = (ROOT / "docs" / "RECIPES.md").read_text()
    assert doc == render(), (
        "docs/RECIPES.md is stale: run `make docs` (python -m rl_reason.config_docs > docs/RECIPES.md)"
    )


def test_render_lists_every_field_with_its_doc_values_and_resume_rule():
    page = render()
    for path, _ in _walk(RunConfig()):
        assert f"| `{path}` |" in page, path
    assert "| `rewards.checkers[].name` | (required) | text | may change |" in page
    assert "| `lora.r` | `16` | integer > 0 | fixed | LoRA rank. |" in page
    assert "| `rollout.top_p` | `1.0` | number in (0, 1] | may change |" in page
    assert "`grpo`, `dr_grpo`, `rloo`, `ppo`, `reinforce_pp`, `distill` | fixed |" in page
    assert "### Choosing an algorithm" in page  # section prose kept in the docstring
