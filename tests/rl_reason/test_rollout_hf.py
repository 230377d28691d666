import torch

from rl_reason.rollout import SamplingParams
from rl_reason.rollout.hf import HFEngine


def _prompts(policy):
    tok = policy.tokenizer
    return [tok("What is 2 + 3?", add_special_tokens=False).input_ids, tok("Hi", add_special_tokens=False).input_ids]


def test_n_completions_prompt_major_with_ids_and_logprobs(tiny_policy):
    torch.manual_seed(0)
    eng = HFEngine(tiny_policy, batch_size=3)  # batch boundary inside a group
    prompts = _prompts(tiny_policy)
    out = eng.generate(prompts, 3, SamplingParams(max_new_tokens=6))
    assert [r.prompt_index for r in out] == [0, 0, 0, 1, 1, 1]
    for r in out:
        assert r.prompt_ids == prompts[r.prompt_index]
        assert 1 <= len(r.completion_ids) <= 6
        assert len(r.sample_logprobs) == len(r.completion_ids)
        assert all(lp <= 0 for lp in r.sample_logprobs)
        assert r.finish_reason in ("stop", "length")
        if r.finish_reason == "length":
            assert len(r.completion_ids) == 6


def test_sampler_logprobs_match_trainer_logprobs(tiny_policy):
    torch.manual_seed(1)
    eng = HFEngine(tiny_policy)
    (r,) = eng.generate(_prompts(tiny_policy)[:1], 1, SamplingParams(max_new_tokens=5))
    ids = torch.tensor([r.prompt_ids + r.completion_ids])
    att = torch.ones_like(ids)
    logp, _ = tiny_policy.completion_logprobs(tiny_policy.model, ids, att, len(r.completion_ids))
    assert torch.allclose(logp[0], torch.tensor(r.sample_logprobs), atol=1e-4)


def test_greedy_is_deterministic_and_left_padding_does_not_change_it(tiny_policy):
    eng = HFEngine(tiny_policy)
    p = _prompts(tiny_policy)
    g = SamplingParams(max_new_tokens=6, greedy=True)
    alone = eng.generate(p[1:], 1, g)[0].completion_ids
    batched = eng.generate(p, 1, g)[1].completion_ids  # p[1] is left-padded here
    assert alone == batched


def test_stop_string_cuts_completion(tiny_policy):
    eng = HFEngine(tiny_policy)
    p = _prompts(tiny_policy)[:1]
    free = eng.generate(p, 1, SamplingParams(max_new_tokens=12, greedy=True))[0]
    text = free.completion_text
    assert len(text) >= 4
    stop = text[2:4]
    cut = eng.generate(p, 1, SamplingParams(max_new_tokens=12, greedy=True, stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert cut.completion_text.endswith(stop)
    assert cut.completion_text == text[: text.index(stop) + len(stop)]
    assert len(cut.completion_ids) <= len(free.completion_ids)
