from rl_reason.demo import DEMO_RECIPE, demo_config, held_out_rows


def test_held_out_rows_follow_the_demo_recipe():
    cfg = demo_config()
    rows, template, checkers = held_out_rows()
    assert len(rows) == cfg.data.synthetic.num_eval
    assert rows[0]["id"] == "heldout-0" and rows[0]["answer"]
    assert template == cfg.data.prompt_template
    assert [c["name"] for c in checkers] == ["math_answer"]
    assert DEMO_RECIPE.is_file()
