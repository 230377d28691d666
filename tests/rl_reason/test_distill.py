"""algorithm.name: distill: teacher minus student log-prob per token; reverse KL falls."""

import pytest
import torch

from rl_reason.algorithms import registry
from rl_reason.algorithms.distill import distill_advantages, reverse_kl_tokens
from rl_reason.cli import main

from .conftest import TINY


def test_advantage_is_teacher_minus_student_on_hand_made_tensors():
    teacher = [torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -9.0]])]
    student = [torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -0.2, -1.0]])]
    valid = [torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])]
    (a,) = distill_advantages(teacher, student, valid)
    want = torch.tensor([[0.5, -1.0, 0.0], [-1.0, 0.1, 0.0]])
    assert torch.allclose(a, want)
    assert torch.allclose(-reverse_kl_tokens(student[0], teacher[0]) * valid[0], want)
    # mixed with the verifiable reward: weight x (r - batch mean) on every valid token
    (m,) = distill_advantages(teacher, student, valid, rewards=[torch.tensor([1.0, 0.0])], reward_weight=2.0)
    assert torch.allclose(m, want + torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]]))


def test_registered_distill_reads_the_frozen_pass():
    spec = registry.get("distill")
    assert spec.level == "token" and spec.needs_teacher and spec.needs_old_logprobs
    assert not spec.needs_groups and not spec.needs_critic

    class Alg:
        distill_reward_weight = 0.0

    x = registry.TokenInputs(
        rewards=[torch.tensor([1.0])],
        valid=[torch.ones(1, 2)],
        kl=None,
        values=[None],
        alg=Alg(),
        old_lp=[torch.tensor([[-1.0, -2.0]])],
        teacher_lp=[torch.tensor([[-0.5, -3.0]])],
    )
    adv, returns = spec.token_advantages(x)
    assert torch.allclose(adv[0], torch.tensor([[0.5, -1.0]])) and returns == [None]


def _teacher_adapter(tiny_cfg, path):
    from rl_reason.policy import load_policy

    cfg = tiny_cfg()
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    policy.save_adapter(path)
    return policy.adapter_state()


DISTILL = [
    "algorithm.name=distill",
    "rollout.num_generations=2",
    "rollout.prompts_per_step=4",
    "train.lr=0.03",
    "eval.at_start=false",
    "eval.at_end=false",
    "checkpoint.every=0",
    "logging.log_rollouts=false",
    "logging.plot=false",
]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from rl_reason.config import load_config

    path = tmp_path_factory.mktemp("teacher") / "adapter"
    _teacher_adapter(lambda *o: load_config(TINY, list(o)), path)
    return path


def _exact_reverse_kl(trainer, rollouts) -> float:
    """Full-vocabulary KL(student || teacher) per completion position of fixed sequences."""
    model, total, n = trainer.policy.model, 0.0, 0
    with torch.no_grad():
        for r in rollouts:
            x = torch.tensor([r.prompt_ids + r.completion_ids])
            at = slice(len(r.prompt_ids) - 1, -1)
            ls = torch.log_softmax(model(input_ids=x).logits[0, at].float(), -1)
            with trainer.teacher.active():
                lt = torch.log_softmax(model(input_ids=x).logits[0, at].float(), -1)
            kl = (ls.exp() * (ls - lt)).sum(-1)
            total, n = total + float(kl.sum()), n + kl.numel()
    return total / n


def test_reverse_kl_to_the_teacher_falls(teacher_dir, tmp_path, tiny_cfg):
    from peft import load_peft_weights

    from rl_reason.data import tokenize_prompts
    from rl_reason.rollout import SamplingParams
    from rl_reason.trainer import Trainer

    before = load_peft_weights(str(teacher_dir), device="cpu")
    cfg = tiny_cfg(f"teacher.adapter={teacher_dir}", *DISTILL, "train.lr=0.003", "rollout.num_generations=8")
    trainer = Trainer(cfg, tmp_path / "run")
    ids = tokenize_prompts(trainer.eval_records[:8], trainer.tokenizer)
    torch.manual_seed(0)
    probe = trainer.engine.generate(ids, 2, SamplingParams(max_new_tokens=10))  # fixed sequences
    kl0 = _exact_reverse_kl(trainer, probe)
    logged = [trainer.train_step(step)["distill/reverse_kl"] for step in range(1, 9)]
    kl8 = _exact_reverse_kl(trainer, probe)
    trainer.scorer.close()
    assert kl0 > 0.5  # the teacher is far from the student at the start
    assert kl8 < 0.92 * kl0, (kl0, kl8, logged)
    assert all(x > 0 for x in logged)  # the k1 estimate on samples is logged every step
    after = load_peft_weights(str(teacher_dir), device="cpu")
    assert all(torch.equal(before[k], after[k]) for k in before)  # read only
    teacher_params = [p for n, p in trainer.policy.model.named_parameters() if ".teacher." in n]
    assert teacher_params and not any(p.requires_grad for p in teacher_params)


def test_teacher_is_a_frozen_second_adapter_of_the_same_base(teacher_dir, tiny_cfg):
    from rl_reason.policy import load_policy
    from rl_reason.teacher import attach_teacher

    cfg = tiny_cfg(f"teacher.adapter={teacher_dir}", *DISTILL)
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    n_params = sum(p.numel() for p in policy.model.parameters())
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    teacher = attach_teacher(policy, cfg)
    assert teacher.shared_model is policy.model  # no second base copy
    added = sum(p.numel() for p in policy.model.parameters()) - n_params
    assert 0 < added <= sum(p.numel() for p in policy.trainable_parameters())  # only LoRA matrices
    from rl_reason import update
    from rl_reason.batching import micro_batches, train_batch
    from rl_reason.distributed import LocalDist
    from rl_reason.rollout import Rollout

    ro = [Rollout(0, [1, 2, 3], [4, 5], "", finish_reason="stop")]
    batch = train_batch(ro, torch.zeros(1), torch.ones(1, dtype=torch.bool), mask_truncated=False)
    (mb,) = micro_batches(batch, 256, policy.tokenizer.pad_token_id, LocalDist())

    class LR:
        pass

    lr = LR()
    lr.cfg, lr.policy, lr.share_prompt = cfg, policy, False
    t_lp = teacher.logprobs(lr, mb)
    s_lp = update.logprobs(lr, policy.model, mb)[0]
    assert not torch.allclose(t_lp, s_lp)  # the teacher's adapter was on for its pass
    assert {n for n, p in policy.model.named_parameters() if p.requires_grad} == trainable
    assert policy.model.active_adapter == "default"


def test_distill_without_a_teacher_is_refused(tmp_path, capsys):
    code = main(["train", str(TINY), "--run-dir", str(tmp_path / "r"), *DISTILL])
    assert code == 2
    assert "distill needs a teacher" in capsys.readouterr().err


def test_sample_from_the_teacher_loads_its_adapter(teacher_dir, tiny_cfg):
    from peft import load_peft_weights

    from rl_reason.teacher import load_teacher_policy

    got = load_teacher_policy(tiny_cfg(f"teacher.adapter={teacher_dir}")).adapter_state()
    want = load_peft_weights(str(teacher_dir), device="cpu")
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_teacher_on_another_base_is_loaded_frozen_and_the_student_moves_toward_it(tmp_path, tiny_cfg):
    """teacher.model: a separate base directory of the same tokenizer, no adapter on it (here
    the tiny base with a random LoRA merged into its weights, so a LoRA student can reach it
    in a few steps; a fresh random base sits ~3 nats away). It is loaded once beside the
    student, never trained, and the full-vocabulary reverse KL to it falls."""
    from rl_reason.data import tokenize_prompts
    from rl_reason.policy import load_policy
    from rl_reason.rollout import SamplingParams
    from rl_reason.trainer import Trainer

    teacher_base = tmp_path / "teacher-base"
    other = load_policy(tiny_cfg().model, tiny_cfg().lora, seed=0)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in other.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    other.model.merge_and_unload().save_pretrained(teacher_base)
    other.tokenizer.save_pretrained(teacher_base)
    cfg = tiny_cfg(f"teacher.model={teacher_base}", *DISTILL, "train.lr=0.003", "rollout.num_generations=8")
    trainer = Trainer(cfg, tmp_path / "run")
    teacher = trainer.teacher
    assert teacher.shared_model is None and teacher.policy is not None
    t_model = teacher.policy.model
    assert t_model is not trainer.policy.model
    assert not any(p.requires_grad for p in t_model.parameters())
    before = {n: p.detach().clone() for n, p in t_model.named_parameters()}

    def reverse_kl(rollouts) -> float:
        total, n = 0.0, 0
        with torch.no_grad():
            for r in rollouts:
                x = torch.tensor([r.prompt_ids + r.completion_ids])
                at = slice(len(r.prompt_ids) - 1, -1)
                ls = torch.log_softmax(trainer.policy.model(input_ids=x).logits[0, at].float(), -1)
                lt = torch.log_softmax(t_model(input_ids=x).logits[0, at].float(), -1)
                kl = (ls.exp() * (ls - lt)).sum(-1)
                total, n = total + float(kl.sum()), n + kl.numel()
        return total / n

    ids = tokenize_prompts(trainer.eval_records[:8], trainer.tokenizer)
    torch.manual_seed(0)
    probe = trainer.engine.generate(ids, 2, SamplingParams(max_new_tokens=10))
    kl0 = reverse_kl(probe)
    logged = [trainer.train_step(step)["distill/reverse_kl"] for step in range(1, 9)]
    kl8 = reverse_kl(probe)
    trainer.scorer.close()
    assert kl0 > 0.5, kl0  # another random base: far from the student at the start
    assert kl8 < 0.92 * kl0, (kl0, kl8, logged)
    assert all(torch.equal(before[n], p) for n, p in t_model.named_parameters())  # frozen
