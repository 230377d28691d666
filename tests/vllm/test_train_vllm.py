"""``rl-reason train`` with rollout.engine=vllm: the sampler's log-probs stay the trainer's.

The trainer logs ``rollout/logprob_diff_max`` (sampler vs trainer log-probs of the sampled
tokens) every step; after real optimizer steps it stays ~1e-5 here (stale weights would
show as a jump).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_reason.cli import main

pytestmark = pytest.mark.vllm

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"


@pytest.mark.parametrize("sync", ["hotload", "merge"])
def test_train_with_vllm_engine(sync, vllm_tiny_path, tmp_path):
    run_dir = tmp_path / "run"
    rc = main(
        [
            "train",
            str(TINY),
            "--run-dir",
            str(run_dir),
            f"model.name={vllm_tiny_path}",
            "rollout.engine=vllm",
            f"rollout.sync={sync}",
            "rollout.max_model_len=256",
            "train.steps=3",
            "eval.at_start=false",
            "eval.at_end=false",
            "logging.plot=false",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    diffs = [r["rollout/logprob_diff_max"] for r in rows if "rollout/logprob_diff_max" in r]
    assert len(diffs) == 3
    assert max(diffs) < 1e-3, diffs
