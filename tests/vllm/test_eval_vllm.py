"""`rl-reason eval --engine vllm` grades with the same numbers as the hf engine (greedy)."""

import json

import pytest

from rl_reason.cli import main

pytestmark = pytest.mark.vllm


def test_eval_vllm_matches_hf_greedy(vllm_tiny_path, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"{i} + {i}", "answer": str(2 * i)}) + "\n" for i in range(4))
    )
    outs = {}
    for engine in ("hf", "vllm"):
        out = tmp_path / engine
        code = main(
            [
                "eval",
                "--model",
                vllm_tiny_path,
                "--data",
                str(data),
                "--samples",
                "1",
                "--max-new-tokens",
                "8",
                "--engine",
                engine,
                "--out",
                str(out),
            ]
        )
        assert code == 0
        outs[engine] = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    # greedy decoding of the same base: the same completions from both engines
    assert [r["completion"] for r in outs["vllm"]] == [r["completion"] for r in outs["hf"]]
