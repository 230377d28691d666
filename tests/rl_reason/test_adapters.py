"""model.init_adapter: a saved adapter loads bitwise; a mismatched one is refused in one line."""

import json
import subprocess
import sys

import pytest
import torch

from rl_reason.errors import ConfigError
from rl_reason.policy import load_policy


def _perturbed_adapter(cfg, path, seed=1):
    """Save an adapter whose every tensor is random (a fresh LoRA has B = 0)."""
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    policy.save_adapter(path)
    return policy.adapter_state()


def test_init_adapter_loads_bitwise(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    saved = _perturbed_adapter(cfg, tmp_path / "a")
    cfg2 = tiny_cfg(f"model.init_adapter={tmp_path / 'a'}")
    loaded = load_policy(cfg2.model, cfg2.lora, seed=5).adapter_state()
    assert set(loaded) == set(saved) and loaded
    for k in saved:
        assert torch.equal(loaded[k], saved[k]), k
    fresh = load_policy(cfg.model, cfg.lora, seed=5).adapter_state()
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved)


def test_init_adapter_of_other_rank_is_refused(tiny_cfg, tmp_path):
    _perturbed_adapter(tiny_cfg(), tmp_path / "a")
    cfg = tiny_cfg(f"model.init_adapter={tmp_path / 'a'}", "lora.r=8")
    with pytest.raises(ConfigError, match=r"r=4, alpha=8.*r=8") as exc:
        load_policy(cfg.model, cfg.lora, seed=0)
    assert "\n" not in str(exc.value)


def test_init_adapter_of_other_modules_is_refused(tiny_cfg, tmp_path):
    _perturbed_adapter(tiny_cfg(), tmp_path / "a")
    cfg = tiny_cfg(f"model.init_adapter={tmp_path / 'a'}", "lora.target_modules=[q_proj]")
    with pytest.raises(ConfigError, match="other modules"):
        load_policy(cfg.model, cfg.lora, seed=0)


def test_init_adapter_of_other_base_is_refused(tiny_cfg, tmp_path):
    _perturbed_adapter(tiny_cfg(), tmp_path / "a")
    acfg = tmp_path / "a" / "adapter_config.json"
    data = json.loads(acfg.read_text())
    data["base_model_name_or_path"] = "someone/other-model"
    acfg.write_text(json.dumps(data))
    cfg = tiny_cfg(f"model.init_adapter={tmp_path / 'a'}")
    with pytest.raises(ConfigError, match="someone/other-model"):
        load_policy(cfg.model, cfg.lora, seed=0)


def test_cli_refuses_a_mismatched_init_adapter_with_exit_2(tiny_cfg, tmp_path):
    _perturbed_adapter(tiny_cfg(), tmp_path / "a")
    from tests.rl_reason.conftest import TINY

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_reason.cli",
            "train",
            str(TINY),
            f"model.init_adapter={tmp_path / 'a'}",
            "lora.r=8",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.init_adapter:") and "r=8" in last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_missing_init_adapter_dir_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg(f"model.init_adapter={tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="not a directory"):
        load_policy(cfg.model, cfg.lora, seed=0)
