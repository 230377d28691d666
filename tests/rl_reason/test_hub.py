import time

import pytest

from rl_reason import hub


def test_hub_ids_and_local_paths(tmp_path):
    assert hub.looks_like_hub_id("Qwen/Qwen2.5-0.5B") and hub.looks_like_hub_id("gsm8k")
    assert not hub.looks_like_hub_id(str(tmp_path))
    assert not hub.looks_like_hub_id("./models/mine") and not hub.looks_like_hub_id("a/b/c")


def test_unreachable_endpoint_is_seen_in_well_under_a_second(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setattr(hub, "_reason", None)
    t0 = time.monotonic()
    why = hub.offline_reason()
    assert why.startswith("the hub (127.0.0.1) is not reachable") and time.monotonic() - t0 < 1.0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"


def test_require_offline_names_id_cache_and_ways_out(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "offline_reason", lambda: "HF_HUB_OFFLINE is set")
    monkeypatch.setattr(hub, "go_offline", lambda: None)  # keep this process online
    monkeypatch.setattr(hub, "_hub_cache", lambda: str(tmp_path))
    with pytest.raises(ValueError) as exc:
        hub.require("someone/model-x", repo_type="model", key="model.name", error=ValueError)
    msg = str(exc.value)
    assert msg.startswith("model.name='someone/model-x': HF_HUB_OFFLINE is set") and str(tmp_path) in msg
    assert "HF_HUB_OFFLINE=1" in msg and "local directory" in msg
    (tmp_path / "models--someone--model-x" / "snapshots" / "abc").mkdir(parents=True)
    hub.require("someone/model-x", repo_type="model", key="model.name", error=ValueError)  # cached: fine
    hub.require(str(tmp_path), repo_type="model", key="model.name", error=ValueError)  # local dir
