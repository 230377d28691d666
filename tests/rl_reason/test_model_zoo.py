"""Built-in model names (rl_reason/model_zoo.py): built once offline, cached, reused."""

import json
from pathlib import Path

from rl_reason import model_zoo


def test_unknown_names_pass_through_and_aliases_resolve(monkeypatch, tmp_path):
    monkeypatch.setenv("RL_REASON_CACHE", str(tmp_path))
    assert model_zoo.resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert model_zoo.resolve_model("/some/local/dir") == "/some/local/dir"
    assert model_zoo.ALIASES["demo"] == "smollm2-135m-instruct"
    assert model_zoo.cache_root() == tmp_path


def test_tiny_models_are_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RL_REASON_CACHE", str(tmp_path))
    dense = Path(model_zoo.resolve_model("tiny-random"))
    moe = Path(model_zoo.resolve_model("tiny-random-moe"))
    assert dense.is_relative_to(tmp_path) and moe.is_relative_to(tmp_path)
    dense_cfg = json.loads((dense / "config.json").read_text())
    moe_cfg = json.loads((moe / "config.json").read_text())
    assert moe_cfg["model_type"] == "qwen3_moe" and dense_cfg["model_type"] == "llama"
    assert moe_cfg["num_local_experts"] > moe_cfg["num_experts_per_tok"] >= 1
    assert not any("expert" in key for key in dense_cfg)
    stamp = (dense / "config.json").stat().st_mtime_ns
    assert Path(model_zoo.resolve_model("tiny-random")) == dense  # the cached copy, not rebuilt
    assert (dense / "config.json").stat().st_mtime_ns == stamp
