from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "test" / "tiny_grpo.yaml"


@pytest.fixture(scope="session")
def tiny_path():
    """Path of the offline tiny random model (built once per cache dir)."""
    from rl_reason.model_zoo import resolve_model

    return resolve_model("tiny-random")


@pytest.fixture()
def tiny_cfg():
    from rl_reason.config import load_config

    def make(*overrides):
        return load_config(TINY, list(overrides))

    return make


@pytest.fixture()
def tiny_policy(tiny_cfg):
    from rl_reason.policy import load_policy

    cfg = tiny_cfg()
    return load_policy(cfg.model, cfg.lora, seed=0)
