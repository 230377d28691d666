import torch

from rl_reason.rollout import SamplingParams
from rl_reason.rollout.hf import HFEngine


def _prompts(policy):
    tok = policy.tokenizer
    return [
        tok("What is 2 + 3?", add_special_tokens=False).input_ids,
        tok("Hi", add_special_tokens=False).input_ids,
    ]


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
    prompts = [
        tok(t, add_special_tokens=False).input_ids for t in ("What is 2 + 3?", "Hi", "a b c d e f g h")
    ]
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


class _FakeRanks:
    """Stands in for the trainer's Dist in one process: another rank has ``extra_batches``
    more batches and decodes ``extra_steps`` steps longer than this one."""

    def __init__(self, extra_batches=0, extra_steps=0):
        self.extra_batches, self.extra_steps = extra_batches, extra_steps
        self.steps = self.waited = 0

    def max(self, value):
        return value + self.extra_batches

    def all_true(self, flag):
        self.steps += 1
        self.waited = self.waited + 1 if flag else 0
        if self.waited > self.extra_steps:  # the other rank is done too: this batch ends
            self.waited = 0
            return True
        return False


def _count_forwards(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    return calls, handle


def test_lockstep_runs_the_other_ranks_forwards_and_returns_the_same_completions(tiny_policy, monkeypatch):
    """Under FSDP every forward is a collective: a rank whose rows are done, or that has no
    prompts left, keeps running forwards until every rank is done, without changing its output."""
    import rl_reason.rollout.hf as hf

    vocab = tiny_policy.model.get_input_embeddings().weight.shape[0]
    monkeypatch.setattr(hf, "_eos_ids", lambda model, tok: list(range(3, vocab, 3)))
    p = _prompts(tiny_policy)
    g = SamplingParams(max_new_tokens=12, greedy=True)
    plain = HFEngine(tiny_policy, batch_size=2, merge_for_generation=False)
    calls, handle = _count_forwards(tiny_policy.model)
    want = plain.generate(p, 2, g)
    alone = len(calls)
    ranks = _FakeRanks(extra_batches=1, extra_steps=3)
    got = HFEngine(tiny_policy, batch_size=2, lockstep=ranks).generate(p, 2, g)
    handle.remove()
    assert [(r.completion_ids, r.finish_reason) for r in got] == [
        (r.completion_ids, r.finish_reason) for r in want
    ]
    # each batch decodes 3 steps past its own end, plus one idle batch of 4 forwards
    lens = [len(r.completion_ids) for r in want[::2]]
    assert max(lens) + 3 <= 12  # rows ended early, so lockstep had steps to add
    assert len(calls) - alone == alone + 3 * len(lens) + 4
    # a rank with no prompts at all still joins every forward of the others
    idle = _FakeRanks(extra_batches=2, extra_steps=4)
    assert HFEngine(tiny_policy, lockstep=idle).generate([], 1, g) == []
    assert idle.steps == 2 * 5  # two idle batches, each decoding until the others are done


def test_vllm_engine_is_refused_with_a_sharded_base(tiny_cfg):
    import pytest

    from rl_reason.errors import ConfigError
    from rl_reason.rollout.factory import make_engine

    cfg = tiny_cfg("rollout.engine=vllm")
    with pytest.raises(ConfigError, match="rollout.engine=server"):
        make_engine(cfg.rollout, object(), None, lockstep=object())


def test_lockstep_extra_forwards_draw_no_random_numbers(tiny_policy, monkeypatch):
    """Sampling, not greedy: the forwards a rank joins after its own rows ended (and its idle
    batches) draw nothing from the RNG, so the completions and the RNG state after the call
    are those of a one-process run. Otherwise a rank's next round (multi-turn) or next step
    samples differently under FSDP than under DDP (caught by a two-process tools run)."""
    import rl_reason.rollout.hf as hf

    vocab = tiny_policy.model.get_input_embeddings().weight.shape[0]
    monkeypatch.setattr(hf, "_eos_ids", lambda model, tok: list(range(3, vocab, 3)))
    p = _prompts(tiny_policy)
    s = SamplingParams(max_new_tokens=12)
    torch.manual_seed(5)
    want = HFEngine(tiny_policy, batch_size=2, merge_for_generation=False).generate(p, 2, s)
    after_plain = torch.get_rng_state()
    torch.manual_seed(5)
    ranks = _FakeRanks(extra_batches=1, extra_steps=3)
    got = HFEngine(tiny_policy, batch_size=2, lockstep=ranks).generate(p, 2, s)
    assert [r.completion_ids for r in got] == [r.completion_ids for r in want]
    assert any(len(r.completion_ids) < 12 for r in want)  # rows ended early: extra forwards ran
    assert torch.equal(torch.get_rng_state(), after_plain)
