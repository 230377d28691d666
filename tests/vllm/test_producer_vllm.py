"""rollout.engine=vllm with rollout.max_staleness=1: colocated vLLM inside the sampler process.

The sampler process builds its own vLLM engine on its own copy of the base and receives only
the LoRA tensors after each update (hot-loaded as a new LoRARequest). Three steps: step 1 is
sampled with version 0 (the adapter being trained: the gap is vLLM's own, ~1e-5), steps 2 and 3
one version behind, step 3 with an adapter the sampler received from the trainer.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from rl_reason.cli import main

pytestmark = pytest.mark.vllm

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"


def test_k1_samples_with_vllm_in_the_sampler_process(vllm_tiny_path, tmp_path):
    run_dir = tmp_path / "run"
    rc = main(
        [
            "train",
            str(TINY),
            "--run-dir",
            str(run_dir),
            f"model.name={vllm_tiny_path}",
            "rollout.engine=vllm",
            "rollout.max_model_len=256",
            "rollout.max_staleness=1",
            "train.steps=3",
            "eval.at_start=false",
            "eval.at_end=false",
            "logging.plot=false",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "async/staleness" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["async/version"] for r in rows] == [0, 0, 1]
    assert [r["async/staleness"] for r in rows] == [0, 1, 1]
    assert rows[-1]["async/staleness_hist/1"] == 2 and rows[-1]["async/dropped"] == 0
    assert rows[0]["rollout/logprob_diff_max"] < 1e-3  # vLLM at version 0 = the trainer's version 0
    for r in rows[1:]:  # one version behind: the gap is the update's, well above vLLM's own
        assert r["rollout/logprob_diff_mean"] > 10 * rows[0]["rollout/logprob_diff_mean"]
        assert r["policy/is_ratio_mean"] != pytest.approx(1.0, abs=1e-5)
    logged = [json.loads(x) for x in (run_dir / "rollouts.jsonl").open()]
    assert {(row["step"], row["adapter_version"]) for row in logged} == {(1, 0), (2, 0), (3, 1)}
    assert not any(p.name == "rl-reason-sampler" for p in multiprocessing.active_children())
