import json
import math

import pytest
import torch

from rl_reason.batching import TrainBatch, collate
from rl_reason.cli import main

from .conftest import TINY


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", str(TINY), "--run-dir", str(run_dir), "train.steps=4"])
    assert code == 0
    return run_dir


def test_run_dir_has_every_artifact(tiny_run):
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "rollouts.jsonl",
        "curves.png",
        "adapter/adapter_config.json",
    ):
        assert (tiny_run / name).exists(), name
    assert (tiny_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_one_row_per_step_with_design_names(tiny_run):
    rows = _rows(tiny_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert "eval/accuracy" in rows[0] and "eval/accuracy" in rows[-1]
    for r in rows[1:]:
        for key in (
            "reward/digits/mean",
            "reward/math_answer/mean",
            "reward/total/mean",
            "accuracy",
            "completion/len_mean",
            "policy/entropy",
            "policy/clip_frac",
            "time/generate_s",
            "time/score_s",
            "time/update_s",
            "time/step_s",
            "throughput/tokens_per_s",
        ):
            assert key in r, key
            assert math.isfinite(r[key])
        assert 0 <= r["reward/digits/mean"] <= 1
        assert r["time/step_s"] >= r["time/generate_s"]


def test_rollouts_log_every_completion(tiny_run):
    rows = _rows(tiny_run / "rollouts.jsonl")
    assert len(rows) == 4 * 4 * 4  # steps x prompts x generations
    r = rows[0]
    assert set(r) >= {"step", "prompt_id", "completion", "rewards", "total", "advantage"}
    assert set(r["rewards"]) == {"digits", "math_answer"}
    assert r["total"] == pytest.approx(sum(v or 0 for v in r["rewards"].values()))
    # GRPO: advantages of an updated group sum to ~0
    by_group = {}
    for row in rows:
        if row["in_update"]:
            by_group.setdefault((row["step"], row["prompt_id"]), []).append(row["advantage"])
    assert by_group
    for advs in by_group.values():
        assert abs(sum(advs)) < 1e-4


def test_adapter_changed_and_loads_with_peft(tiny_run, tiny_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_path)
    model = PeftModel.from_pretrained(base, str(tiny_run / "adapter"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero


def test_training_raises_the_reward_it_is_paid_for(tmp_path):
    """12 steps on the tiny recipe: the digit share must rise (what the regex checker pays)."""
    run_dir = tmp_path / "learn"
    assert (
        main(
            [
                "train",
                str(TINY),
                "--run-dir",
                str(run_dir),
                "train.steps=12",
                "eval.at_start=false",
                "eval.at_end=false",
                "logging.log_rollouts=false",
                "logging.plot=false",
                "checkpoint.every=0",
            ]
        )
        == 0
    )
    rows = [r for r in _rows(run_dir / "metrics.jsonl") if r["step"] > 0]
    first = sum(r["reward/digits/mean"] for r in rows[:3]) / 3
    last = sum(r["reward/digits/mean"] for r in rows[-3:]) / 3
    assert last > first + 0.1, (first, last)


def test_dry_run_loads_no_model(tmp_path, capsys):
    assert main(["train", str(TINY), "--dry-run", "--run-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "dry run: 64 prompts" in out
    assert not (tmp_path / "d").exists()


def test_collate_left_pads_prompts_right_pads_completions():
    b = TrainBatch(
        prompt_ids=[[1, 2], [3, 4, 5]],
        completion_ids=[[6, 7, 8], [9]],
        advantages=torch.tensor([1.0, -1.0]),
        loss_masks=[[1.0, 1.0, 1.0], [1.0]],
    )
    t = collate(b, [0, 1], pad_id=0, device="cpu")
    assert t.input_ids.tolist() == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 0, 0]]
    assert t.attention_mask.tolist() == [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    assert t.mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert t.completion_len == 3
