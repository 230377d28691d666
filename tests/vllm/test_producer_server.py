"""rl_reason/producer.py with ``rollout.engine: server``: a thread of the trainer drives a real
``vllm serve`` on 127.0.0.1 while the trainer updates (rollout.max_staleness 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_server_engine import start_server, stop_server

pytestmark = pytest.mark.vllm

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"


@pytest.fixture(scope="module")
def lora_server(vllm_tiny_path, tmp_path_factory):
    proc, url, log = start_server(vllm_tiny_path, tmp_path_factory.mktemp("logs") / "serve.log")
    yield url
    stop_server(proc, log)


def test_server_producer_samples_one_version_behind(lora_server, vllm_tiny_path, tmp_path):
    from rl_reason.config import load_config
    from rl_reason.producer import AsyncProducer, ThreadBackend
    from rl_reason.trainer import Trainer

    cfg = load_config(
        TINY,
        [
            f"model.name={vllm_tiny_path}",
            "rollout.engine=server",
            f"rollout.servers=[{lora_server}]",
            f"rollout.adapter_dir={tmp_path / 'live'}",
            "rollout.max_staleness=1",
            "algorithm.is_cap=2.0",
            "train.steps=4",
            "eval.at_start=false",
            "eval.at_end=false",
            "eval.every=2",  # through a second engine that follows the trainer's policy
            "eval.limit=4",
            "logging.plot=false",
            "logging.progress=false",
        ],
    )
    run_dir = tmp_path / "run"
    trainer = Trainer(cfg, run_dir)
    assert isinstance(trainer.producer, AsyncProducer)
    assert isinstance(trainer.producer.backend, ThreadBackend)
    trainer.run()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 1]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert r["async/version"] == max(0, r["step"] - 2)
        assert r["async/staleness"] <= 1
    # a stale batch: the server's log-probs are those of the older adapter, not the trainer's
    assert rows[0]["rollout/logprob_diff_max"] < 1e-3
    assert max(r["rollout/logprob_diff_mean"] for r in rows[1:]) > 1e-3
    logged = [json.loads(x) for x in (run_dir / "rollouts.jsonl").open()]
    assert {row["adapter_version"] for row in logged} == {0, 1, 2}
    assert not trainer.producer.backend.alive()  # the thread stopped with the run
    # held-out evaluation ran beside the producer thread (no request named an unloaded adapter)
    # (the last step's evaluation is eval.at_end's, off here)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2]
    assert trainer.producer.backend._eval_engine is None  # closed with the backend
