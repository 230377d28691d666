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


def test_rows_that_end_early_leave_the_batch_without_changing_the_others(tiny_policy, monkeypatch):
    """Finished rows are dropped from the batch and KV cache mid-generation; every row's
    sampler log-probs must still equal the trainer's, computed for that row alone."""
    import rl_reason.rollout.hf as hf

    vocab = tiny_policy.model.get_input_embeddings().weight.shape[0]
    # many "EOS" tokens so rows end at scattered steps and the batch shrinks several times
    monkeypatch.setattr(hf, "_eos_ids", lambda model, tok: list(range(3, vocab, 5)))
    tok = tiny_policy.tokenizer
    prompts = [tok(t, add_special_tokens=False).input_ids for t in ("What is 2 + 3?", "Hi", "a b c d e f g h")]
    torch.manual_seed(3)
    out = HFEngine(tiny_policy).generate(prompts, 8, SamplingParams(max_new_tokens=16, temperature=0.7))
    lengths = [len(r.completion_ids) for r in out]
    assert min(lengths) < 8 and max(lengths) > min(lengths) + 4  # the batch did shrink
    eos = set(range(3, vocab, 5))
    for r in out:
        ends_in_eos = r.completion_ids[-1] in eos
        assert r.finish_reason == ("stop" if ends_in_eos else "length")
        assert not any(t in eos for t in r.completion_ids[:-1])
        ids = torch.tensor([r.prompt_ids + r.completion_ids])
        logp, _ = tiny_policy.completion_logprobs(
            tiny_policy.model, ids, torch.ones_like(ids), len(r.completion_ids), temperature=0.7
        )
        assert torch.allclose(logp[0], torch.tensor(r.sample_logprobs), atol=1e-4)
