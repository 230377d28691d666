"""The colocated vLLM engine never samples from stale weights, for both sync strategies.

Measured on a 2-core CPU in float32: the engine's log-probs match the trainer's
(``Policy.completion_logprobs``) to ~1e-6; the adapter moves them from the base's by ~1.
"""

from __future__ import annotations

import pytest
import torch

from rl_reason.config import RolloutConfig
from rl_reason.errors import EngineError
from rl_reason.rollout import SamplingParams

from .conftest import make_policy

pytestmark = pytest.mark.vllm

LOGPROB_TOL = 1e-3  # max abs difference engine vs trainer, float32
PROMPTS = [[10, 20, 30, 40], [65, 66, 67], [72, 101, 108, 108, 111]]


def randomise_adapter(policy, seed: int = 0, scale: float = 0.3) -> None:
    """Give LoRA B non-zero weights so the adapter visibly changes the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def trainer_logprobs(policy, prompt, completion, temperature, reference=False):
    ids = torch.tensor([list(prompt) + list(completion)])
    mask = torch.ones_like(ids)
    policy.model.eval()
    with torch.no_grad():
        if reference:
            with policy.reference():
                lp, _ = policy.completion_logprobs(policy.model, ids, mask, len(completion), temperature)
        else:
            lp, _ = policy.completion_logprobs(policy.model, ids, mask, len(completion), temperature)
    return lp[0]


def marker_id(policy) -> int:
    return policy.tokenizer.convert_tokens_to_ids("Z")


def train_marker(policy, steps: int = 40, lr: float = 0.5) -> None:
    """Plain SGD on the LoRA params: after any prompt, emit the marker token."""
    mark = marker_id(policy)
    params = policy.trainable_parameters()
    opt = torch.optim.SGD(params, lr=lr)
    policy.model.train()
    for _ in range(steps):
        loss = 0.0
        for p in PROMPTS:
            ids = torch.tensor([p + [mark] * 6])
            logits = policy.model(input_ids=ids).logits[0, len(p) - 1 : -1]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.full((6,), mark))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.model.eval()


@pytest.fixture(scope="module", params=["hotload", "merge"])
def engine(request, vllm_tiny_path):
    from rl_reason.rollout.vllm_engine import VLLMEngine

    policy = make_policy(vllm_tiny_path)
    eng = VLLMEngine(policy, RolloutConfig(engine="vllm", sync=request.param, max_model_len=256), None)
    yield eng
    eng.close()


def test_logprobs_match_trainer_after_sync(engine):
    policy = engine.policy
    randomise_adapter(policy, seed=1)
    engine.sync_weights()
    temperature = 0.7
    sampling = SamplingParams(max_new_tokens=12, temperature=temperature)
    rollouts = engine.generate(PROMPTS, 2, sampling)
    assert [r.prompt_index for r in rollouts] == [0, 0, 1, 1, 2, 2]
    worst, gap = 0.0, 0.0
    for r in rollouts:
        assert r.prompt_ids == PROMPTS[r.prompt_index]
        assert len(r.completion_ids) == len(r.sample_logprobs) > 0
        assert r.finish_reason in ("stop", "length")
        assert r.completion_text == policy.tokenizer.decode(r.completion_ids, skip_special_tokens=True)
        ours = torch.tensor(r.sample_logprobs)
        lp = trainer_logprobs(policy, r.prompt_ids, r.completion_ids, temperature)
        base = trainer_logprobs(policy, r.prompt_ids, r.completion_ids, temperature, reference=True)
        worst = max(worst, (ours - lp).abs().max().item())
        gap = max(gap, (ours - base).abs().max().item())
    print(f"{engine.sync_mode}: max |vllm - trainer| = {worst:.2e}, max |vllm - base| = {gap:.3f}")
    assert worst < LOGPROB_TOL
    assert gap > 100 * LOGPROB_TOL


def test_marker_adapter_reaches_vllm_only_after_sync(engine):
    policy = engine.policy
    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    before = engine.generate(PROMPTS, 1, greedy)
    mark = marker_id(policy)
    assert all(r.completion_ids.count(mark) < 3 for r in before)

    train_marker(policy)
    assert engine.watch.stale()
    # what vLLM holds is still the old adapter until a sync
    from vllm.inputs import TokensPrompt

    from rl_reason.rollout.vllm_engine import vllm_sampling

    raw = engine.llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in PROMPTS],
        vllm_sampling(greedy, 1, None),
        use_tqdm=False,
        lora_request=engine.lora_request,
    )
    assert [list(o.outputs[0].token_ids) for o in raw] == [r.completion_ids for r in before]

    syncs = engine.syncs
    engine.sync_weights()
    assert engine.syncs == syncs + 1 and not engine.watch.stale()
    after = engine.generate(PROMPTS, 1, greedy)
    assert all(r.completion_ids.count(mark) >= 4 for r in after), [r.completion_ids for r in after]


def test_generate_syncs_a_stale_adapter_by_itself(engine):
    policy = engine.policy
    randomise_adapter(policy, seed=7)
    syncs = engine.syncs
    sampling = SamplingParams(max_new_tokens=4, temperature=1.0)
    r = engine.generate(PROMPTS[:1], 1, sampling)[0]
    assert engine.syncs == syncs + 1
    lp = trainer_logprobs(policy, r.prompt_ids, r.completion_ids, 1.0)
    assert (torch.tensor(r.sample_logprobs) - lp).abs().max().item() < LOGPROB_TOL


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_gpu_only_options_fail_clearly_on_cpu(vllm_tiny_path):
    from rl_reason.rollout.vllm_engine import VLLMEngine

    policy = make_policy(vllm_tiny_path)
    for cfg in (
        RolloutConfig(engine="vllm", gpu_memory_utilization=0.5),
        RolloutConfig(engine="vllm", sleep_mode=True),
    ):
        with pytest.raises(EngineError, match="needs a GPU; remove it for CPU runs"):
            VLLMEngine(policy, cfg, None)
