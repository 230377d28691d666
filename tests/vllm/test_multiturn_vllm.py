"""Multi-turn rollouts on the vLLM engines (colocated and server): each round continues from
the exact token ids (prompt, model and tool tokens), and the sampler's log-probs of the
model's tokens match the trainer's across tool turns.

The environment is tests/rl_reason/_envs.py's Letters (pauses on any lowercase letter, which
the random tiny model writes), so the turns are really sampled.
"""

from __future__ import annotations

import pytest
import torch

from rl_reason.batching import collate, train_batch
from rl_reason.config import RolloutConfig
from rl_reason.data import PromptRecord
from rl_reason.rollout import SamplingParams, multiturn

from .conftest import make_policy
from .test_server_engine import start_server, stop_server
from .test_vllm_engine import LOGPROB_TOL, randomise_adapter

pytestmark = pytest.mark.vllm


def _records():
    return [PromptRecord(id=str(i), messages=[{"role": "user", "content": f"{i} + 2?"}]) for i in range(3)]


def _settings(env):
    return multiturn.ToolSettings(make_env=env, max_tool_calls=3, tool_output_tokens=16)


def _check(engine, policy, env=None, n=2, max_new=32):
    from tests.rl_reason._envs import Letters

    torch.manual_seed(0)
    sampling = SamplingParams(max_new_tokens=max_new, temperature=0.8)
    out = multiturn.generate(engine, _records(), n, sampling, _settings(env or Letters), policy.tokenizer)
    assert [r.prompt_index for r in out] == [i for i in range(3) for _ in range(n)]
    assert sum(t.role == "tool" for r in out for t in r.turns) >= 3, "too few tool turns to test"
    batch = train_batch(
        out, torch.zeros(len(out)), torch.ones(len(out), dtype=torch.bool), mask_truncated=False
    )
    mb = collate(batch, list(range(len(out))), policy.tokenizer.pad_token_id, "cpu")
    C = mb.completion_len
    policy.model.eval()
    with torch.no_grad():
        logp, _ = policy.completion_logprobs(policy.model, mb.input_ids, mb.attention_mask, C, 0.8)
    worst = 0.0
    for row, r in enumerate(out):
        n = len(r.completion_ids)
        assert mb.input_ids[row, -C:][:n].tolist() == r.completion_ids  # bit-identical ids
        assert sum(r.loss_mask) <= max_new
        model = torch.tensor(r.loss_mask, dtype=torch.bool)
        diff = (logp[row, :n][model] - torch.tensor(r.sample_logprobs)[model]).abs()
        worst = max(worst, diff.max().item())
        for t in r.turns:
            if t.role == "tool":
                assert r.loss_mask[t.start : t.end] == [0] * (t.end - t.start)
    print(f"{type(engine).__name__}: max |sampler - trainer| on model tokens across tool turns = {worst:.2e}")
    assert worst < LOGPROB_TOL
    return out


def test_colocated_vllm_multi_turn_logprobs_match_trainer(vllm_tiny_path):
    from rl_reason.rollout.vllm_engine import VLLMEngine

    policy = make_policy(vllm_tiny_path)
    randomise_adapter(policy, seed=5)
    engine = VLLMEngine(policy, RolloutConfig(engine="vllm", sync="hotload", max_model_len=256), None)
    try:
        engine.sync_weights()
        _check(engine, policy)
    finally:
        engine.close()


def test_server_multi_turn_logprobs_match_trainer(vllm_tiny_path, tmp_path):
    from rl_reason.rollout.server import ServerEngine

    proc, url, log = start_server(vllm_tiny_path, tmp_path / "serve.log")
    try:
        policy = make_policy(vllm_tiny_path)
        randomise_adapter(policy, seed=5)
        cfg = RolloutConfig(engine="server", servers=[url], adapter_dir=str(tmp_path / "live"))
        engine = ServerEngine(policy, cfg, tmp_path)
        try:
            engine.sync_weights()
            from tests.rl_reason._envs import Vowels  # the OpenAI API takes at most 4 stop strings

            _check(engine, policy, Vowels, n=4, max_new=64)
        finally:
            engine.close()
    finally:
        stop_server(proc, log)
