"""``rl-reason sample`` through the vLLM engines (colocated and server): the same kept-rows
contract as the hf engine (tests/rl_reason/test_sample.py), with the sampling done by vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_reason.tracking import read_jsonl

from .test_server_engine import start_server, stop_server

pytestmark = pytest.mark.vllm

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"
CHECK = [
    "rewards.checkers=[{name: 'tests.rl_reason._sample_checkers:has_digit'}]",
    "rewards.workers=1",
    "rollout.max_new_tokens=6",
]


def _check_kept(out: Path, summary: dict, prompts: int, n: int) -> None:
    rows = read_jsonl(out)
    progress = read_jsonl(Path(str(out) + ".progress"))
    assert summary["prompts"] == prompts and summary["samples"] == prompts * n
    assert len(progress) == prompts and summary["rows"] == len(rows) == sum(p["kept"] for p in progress)
    for r in rows:
        assert any(c.isdigit() for c in r["completion"])  # only what the checker verified
        assert r["correct"] is True and "answer" in r["fields"]


@pytest.mark.parametrize("engine", ["vllm", "server"])
def test_sample_through_vllm_keeps_only_verified_rows(engine, vllm_tiny_path, tmp_path):
    from rl_reason.config import load_config
    from rl_reason.sample import sample

    extra = [f"model.name={vllm_tiny_path}", f"rollout.engine={engine}", "rollout.max_model_len=256"]
    proc = log = None
    if engine == "server":
        proc, url, log = start_server(vllm_tiny_path, tmp_path / "serve.log")
        extra = [f"model.name={vllm_tiny_path}", "rollout.engine=server", f"rollout.servers=[{url}]"]
    try:
        cfg = load_config(TINY, [*CHECK, *extra])
        out = tmp_path / "kept.jsonl"
        summary = sample(cfg, out, keep="correct", limit=4, n=4)
        _check_kept(out, summary, 4, 4)
        assert 0 < summary["pass_at_1"] < 1  # some right, some wrong: the filter had work
    finally:
        if proc is not None:
            stop_server(proc, log)
