"""The server engine against real ``vllm serve`` processes on 127.0.0.1 (CPU, tiny model)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
import torch

from rl_reason.config import RolloutConfig
from rl_reason.errors import EngineError
from rl_reason.rollout import SamplingParams

from .conftest import free_port, make_policy
from .test_vllm_engine import LOGPROB_TOL, PROMPTS, randomise_adapter, trainer_logprobs

pytestmark = pytest.mark.vllm

START_TIMEOUT_S = 240


def start_server(model_path: str, log_path, enable_lora: bool = True):
    from rl_reason.serve import serve_command

    port = free_port()
    argv, env = serve_command(
        model_path,
        8,
        "float32",
        port=port,
        max_model_len=256,
        enable_lora=enable_lora,
        executable=None,
    )
    full_env = {**os.environ, **env, "VLLM_CPU_KVCACHE_SPACE": "1"}
    if not enable_lora:
        full_env.pop("VLLM_ALLOW_RUNTIME_LORA_UPDATING", None)
    log = open(log_path, "w")
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                json.load(r)
            return proc, url, log
        except OSError:
            time.sleep(1)
    stop_server(proc, log)
    raise RuntimeError(f"vllm server did not start in {START_TIMEOUT_S}s; see {log_path}")


def stop_server(proc, log) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.close()


@pytest.fixture(scope="module")
def lora_server(vllm_tiny_path, tmp_path_factory):
    proc, url, log = start_server(vllm_tiny_path, tmp_path_factory.mktemp("logs") / "serve.log")
    yield url
    stop_server(proc, log)


def test_generate_sync_generate(lora_server, vllm_tiny_path, tmp_path):
    from rl_reason.rollout.server import ServerEngine

    policy = make_policy(vllm_tiny_path)
    cfg = RolloutConfig(engine="server", servers=[lora_server], adapter_dir=str(tmp_path / "live"))
    engine = ServerEngine(policy, cfg, tmp_path)
    try:
        assert (tmp_path / "live" / "step-0" / "adapter_config.json").exists()
        sampling = SamplingParams(max_new_tokens=8, temperature=0.7)
        for round_ in range(2):
            rollouts = engine.generate(PROMPTS, 2, sampling)
            assert [r.prompt_index for r in rollouts] == [0, 0, 1, 1, 2, 2]
            worst, gap = 0.0, 0.0
            for r in rollouts:
                assert r.prompt_ids == PROMPTS[r.prompt_index]
                assert 0 < len(r.completion_ids) == len(r.sample_logprobs)
                assert all(0 <= t < len(policy.tokenizer) for t in r.completion_ids)
                ours = torch.tensor(r.sample_logprobs)
                lp = trainer_logprobs(policy, r.prompt_ids, r.completion_ids, 0.7)
                worst = max(worst, (ours - lp).abs().max().item())
                base = trainer_logprobs(policy, r.prompt_ids, r.completion_ids, 0.7, reference=True)
                gap = max(gap, (ours - base).abs().max().item())
            print(f"server round {round_}: max |server - trainer| = {worst:.2e}, vs base {gap:.3f}")
            assert worst < LOGPROB_TOL
            if round_ == 0:
                randomise_adapter(policy, seed=3)
                engine.sync_weights()
                assert (tmp_path / "live" / "step-1").exists()
                assert not (tmp_path / "live" / "step-0").exists()
            else:
                assert gap > 100 * LOGPROB_TOL
    finally:
        engine.close()


def test_wrong_base_model_is_a_clear_error(lora_server, vllm_tiny_path, tmp_path):
    from rl_reason.rollout.server import ServerEngine

    other = tmp_path / "other-model"
    shutil.copytree(vllm_tiny_path, other)
    policy = make_policy(str(other))
    cfg = RolloutConfig(engine="server", servers=[lora_server], adapter_dir=str(tmp_path / "live"))
    with pytest.raises(EngineError, match="not the recipe's base model"):
        ServerEngine(policy, cfg, tmp_path)


def test_unreachable_server_is_a_clear_error(vllm_tiny_path, tmp_path):
    from rl_reason.rollout.server import ServerEngine

    policy = make_policy(vllm_tiny_path)
    url = f"http://127.0.0.1:{free_port()}"
    cfg = RolloutConfig(engine="server", servers=[url], adapter_dir=str(tmp_path / "live"))
    with pytest.raises(EngineError, match="is not reachable") as info:
        ServerEngine(policy, cfg, tmp_path)
    assert "\n" not in str(info.value)


def test_server_without_lora_is_a_clear_error(vllm_tiny_path, tmp_path):
    from rl_reason.rollout.server import ServerEngine

    proc, url, log = start_server(vllm_tiny_path, tmp_path / "serve.log", enable_lora=False)
    try:
        policy = make_policy(vllm_tiny_path)
        cfg = RolloutConfig(engine="server", servers=[url], adapter_dir=str(tmp_path / "live"))
        with pytest.raises(EngineError, match="does not load LoRA adapters") as info:
            ServerEngine(policy, cfg, tmp_path)
        assert "\n" not in str(info.value)
    finally:
        stop_server(proc, log)
