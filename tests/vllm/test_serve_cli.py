"""``rl-reason serve RECIPE`` prints a server command the server engine can use."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_reason.cli import main

pytestmark = pytest.mark.vllm

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"


def test_serve_prints_the_command(capsys):
    from rl_reason.model_zoo import resolve_model

    assert main(["serve", str(TINY), "--port", "8123", "lora.r=4", "model.dtype=float32"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True ")
    for part in (
        resolve_model("tiny-random"),
        "--port 8123",
        "--enable-lora",
        "--max-lora-rank 8",
        "--dtype float32",
        "--logprobs-mode processed_logprobs",
        "--enforce-eager",
    ):
        assert part in line
