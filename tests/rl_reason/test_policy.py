import pytest
import torch

from rl_reason.policy import load_policy


def _randomize_adapter(policy, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _logits(policy, ids):
    with torch.no_grad():
        return policy.model(input_ids=ids).logits


def test_only_lora_parameters_train(tiny_policy):
    names = [n for n, p in tiny_policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def test_reference_is_base_with_adapter_disabled(tiny_policy, tiny_cfg):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    base_logits = _logits(tiny_policy, ids)  # fresh LoRA: B = 0, so same as base
    _randomize_adapter(tiny_policy)
    adapted = _logits(tiny_policy, ids)
    with tiny_policy.reference():
        ref = _logits(tiny_policy, ids)
    assert not torch.allclose(adapted, base_logits, atol=1e-4)
    assert torch.equal(ref, base_logits)


def test_merged_generation_context_is_exact_and_restores_base(tiny_policy):
    _randomize_adapter(tiny_policy)
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    before = {n: p.detach().clone() for n, p in tiny_policy.model.named_parameters()}
    unmerged = _logits(tiny_policy, ids)
    with tiny_policy.merged_for_generation():
        merged = _logits(tiny_policy, ids)
    after = {n: p.detach() for n, p in tiny_policy.model.named_parameters()}
    assert torch.allclose(merged, unmerged, atol=1e-5)
    for n in before:  # bitwise: no float drift left in the frozen base
        assert torch.equal(before[n], after[n]), n
    assert torch.equal(_logits(tiny_policy, ids), unmerged)


def test_completion_logprobs_match_full_forward(tiny_policy):
    _randomize_adapter(tiny_policy)
    pad = tiny_policy.tokenizer.pad_token_id
    # row 0: prompt of 3 (left pad 1) + completion 2 (right pad 1); row 1: 4 + 3
    ids = torch.tensor([[pad, 11, 12, 13, 21, 22, pad], [14, 15, 16, 17, 23, 24, 25]])
    att = torch.tensor([[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    logp, ent = tiny_policy.completion_logprobs(tiny_policy.model, ids, att, 3, with_entropy=True)
    assert logp.shape == (2, 3) and ent.shape == (2, 3)
    # reference: unpadded forward of row 1
    with torch.no_grad():
        full = torch.log_softmax(tiny_policy.model(input_ids=ids[1:2]).logits.float(), -1)
    want = [full[0, 3 + j, ids[1, 4 + j]] for j in range(3)]
    assert torch.allclose(logp[1], torch.stack(want), atol=1e-5)
    with torch.no_grad():
        row0 = torch.log_softmax(tiny_policy.model(input_ids=ids[0:1, 1:6]).logits.float(), -1)
    assert torch.allclose(logp[0, :2], torch.stack([row0[0, 2, 21], row0[0, 3, 22]]), atol=1e-5)


def test_adapter_save_and_load_round_trip(tiny_policy, tmp_path, tiny_cfg):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rl_reason.model_zoo import resolve_model

    _randomize_adapter(tiny_policy)
    tiny_policy.save_adapter(tmp_path / "adapter")
    ids = torch.tensor([[3, 4, 5]])
    want = _logits(tiny_policy, ids)
    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"))
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-6)
    fresh = load_policy(tiny_cfg().model, tiny_cfg().lora, seed=0)
    fresh.load_adapter_state(tiny_policy.adapter_state())
    assert torch.allclose(_logits(fresh, ids), want, atol=1e-6)


def test_shared_prompt_logprobs_and_grads_equal_the_plain_path(tiny_policy):
    """Prefix sharing runs each prompt once; values and gradients match the per-row pass."""
    import torch

    p = tiny_policy
    with torch.no_grad():
        for prm in p.trainable_parameters():
            prm.normal_(0, 0.05)  # a non-trivial adapter (LoRA B starts at 0)
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    rows = [(0, [20, 21, 22, 23]), (0, [24, 25]), (1, [30, 31, 32]), (1, [33])]
    P, C = 5, 4
    ids = torch.zeros(4, P + C, dtype=torch.long)
    am = torch.zeros_like(ids)
    for r, (pi, c) in enumerate(rows):
        pr = prompts[pi]
        ids[r, P - len(pr) : P] = torch.tensor(pr)
        am[r, P - len(pr) : P] = 1
        ids[r, P : P + len(c)] = torch.tensor(c)
        am[r, P : P + len(c)] = 1
    pu = torch.stack([ids[0, :P], ids[2, :P]])
    pm = torch.stack([am[0, :P], am[2, :P]])
    p.model.train()
    a, _ = p.completion_logprobs(p.model, ids, am, C)
    b, _ = p.completion_logprobs_shared_prompt(
        p.model, pu, pm, torch.tensor([0, 0, 1, 1]), ids[:, P:], am[:, P:]
    )
    m = am[:, P:].float()
    assert ((a - b).abs() * m).max() < 1e-5
    params = p.trainable_parameters()
    ga = torch.autograd.grad((a * m).sum(), params)
    gb = torch.autograd.grad((b * m).sum(), params)
    assert max((x - y).abs().max().item() for x, y in zip(ga, gb)) < 1e-4
    assert max(x.abs().max().item() for x in ga) > 0.1  # the comparison is not between zeros


def test_no_float16_on_the_cpu_is_one_rule_with_one_error():
    from rl_reason.errors import ConfigError
    from rl_reason.policy import check_dtype

    check_dtype("float16", "cuda")
    check_dtype("bfloat16", "cpu")
    with pytest.raises(ConfigError, match="--dtype float16 is not supported on the CPU"):
        check_dtype("float16", "cpu", "--dtype")
