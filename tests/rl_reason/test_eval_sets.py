"""rl_reason.eval_sets: built-in names, local files, the hub offline."""

from __future__ import annotations

import time

import pytest

from rl_reason import hub
from rl_reason.errors import DataError
from rl_reason.eval_sets import DATA_DIR_ENV, load_eval_set


def test_builtin_set_offline_and_not_cached_is_one_line_without_retries(monkeypatch, tmp_path):
    import datasets

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(hub, "offline_reason", lambda: "HF_HUB_OFFLINE is set")
    monkeypatch.setattr(hub, "go_offline", lambda: None)  # keep this process online
    monkeypatch.setattr(hub, "_hub_cache", lambda: str(tmp_path))

    def no_hub(*a, **k):  # the old path: a minute of retries before this error
        raise AssertionError("datasets.load_dataset was called offline")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    t0 = time.monotonic()
    with pytest.raises(DataError) as exc:
        load_eval_set("gsm8k", limit=2)
    msg = str(exc.value)
    assert time.monotonic() - t0 < 5
    assert msg.startswith("gsm8k='openai/gsm8k': HF_HUB_OFFLINE is set") and "\n" not in msg
    assert str(tmp_path) in msg and f"set {DATA_DIR_ENV} to a folder holding gsm8k_test.jsonl" in msg
