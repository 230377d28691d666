"""The frozen teacher of ``teacher:``: sampled from by ``rl-reason sample --policy teacher``,
and scoring the student's tokens for ``algorithm.name: distill``.

Two shapes, both loaded once and never trained:

- same base (``teacher.model`` unset): the teacher is ``teacher.adapter`` loaded as a second
  PEFT adapter (``teacher``) of the policy's own model. ``Teacher.active()`` switches to it
  for a no-grad forward and back to the student's ``default`` adapter after, as the PPO
  critic does; one copy of the base weights serves student, reference and teacher.
- another base (``teacher.model`` set, e.g. a bigger model of the same tokenizer): that model,
  frozen, with ``teacher.adapter`` on top when given.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Optional

import torch

from rl_reason.errors import ConfigError

ADAPTER = "teacher"
STUDENT_ADAPTER = "default"


def _teacher_model_cfg(cfg):
    t = cfg.teacher
    return dataclasses.replace(
        cfg.model, name=t.model or cfg.model.name, dtype=t.dtype or cfg.model.dtype, init_adapter=None
    )


def load_teacher_policy(cfg, device: Optional[torch.device] = None):
    """A standalone ``Policy`` whose ``default`` adapter is the teacher's (for sampling).

    Without ``teacher.adapter`` it gets a zero LoRA (B = 0: exactly the base), so every engine
    finds the PEFT model it expects.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    from rl_reason import hub
    from rl_reason.adapters import check_base
    from rl_reason.errors import ModelError
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import Policy, check_dtype, load_base, load_tokenizer, pick_device

    if not cfg.teacher.configured():
        raise ConfigError("teacher: set teacher.model and/or teacher.adapter to sample from a teacher")
    mcfg = _teacher_model_cfg(cfg)
    path = resolve_model(mcfg.name)
    hub.require(path, repo_type="model", key="teacher.model", error=ModelError)
    device = device if device is not None else pick_device(mcfg.device)
    check_dtype(mcfg.dtype, device.type, "teacher.dtype")
    tokenizer = load_tokenizer(path, mcfg.trust_remote_code)
    base = load_base(dataclasses.replace(mcfg, gradient_checkpointing=False), path, device)
    if cfg.teacher.adapter:
        check_base(cfg.teacher.adapter, mcfg.name, path, "teacher.adapter")
        from rl_reason import moe

        with moe.peft_targets_as_given(base):  # an MoE's saved targets, not PEFT's rewrite
            model = PeftModel.from_pretrained(base, cfg.teacher.adapter, is_trainable=False)
    else:
        model = get_peft_model(base, PeftLoraConfig(r=1, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.requires_grad_(False)
    model.eval()
    return Policy(model, tokenizer, device)


class Teacher:
    """Log-probs of the student's completion tokens under the teacher (no gradients)."""

    def __init__(self, *, shared_model=None, policy=None):
        self.shared_model = shared_model  # the student's PeftModel holding the "teacher" adapter
        self.policy = policy  # or a separate teacher Policy

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self.shared_model is None:
            yield
            return
        self.shared_model.set_adapter(ADAPTER)
        try:
            yield
        finally:
            # peft's set_adapter makes the active adapter trainable and the others frozen:
            # back to the student's, the teacher's matrices are frozen again
            self.shared_model.set_adapter(STUDENT_ADAPTER)

    def logprobs(self, lr, t) -> torch.Tensor:
        """(B, T) teacher log-probs of micro-batch ``t``'s completion tokens."""
        from rl_reason import update

        with torch.no_grad():
            if self.shared_model is not None:
                with self.active():
                    return update.logprobs(lr, self.shared_model, t)[0]
            m = self.policy.model
            ids = t.input_ids.to(self.policy.device)
            mask = t.attention_mask.to(self.policy.device)
            lp, _ = self.policy.completion_logprobs(
                m, ids, mask, t.completion_len, lr.cfg.rollout.temperature
            )
            return lp.to(t.input_ids.device)


def attach_teacher(policy, cfg) -> Teacher:
    """The run's teacher: a second adapter of the student's model, or a separate model."""
    from rl_reason.adapters import check_base
    from rl_reason.model_zoo import resolve_model

    t = cfg.teacher
    if not t.configured():
        raise ConfigError(
            "teacher: algorithm.name=distill needs a teacher: set teacher.adapter (same base) and/or "
            "teacher.model (another base of the same tokenizer)"
        )
    if t.model is None:
        path = resolve_model(cfg.model.name)
        check_base(t.adapter, cfg.model.name, path, "teacher.adapter")
        from rl_reason import moe

        with moe.peft_targets_as_given(policy.model):  # an MoE's saved targets, not PEFT's rewrite
            policy.model.load_adapter(t.adapter, adapter_name=ADAPTER, is_trainable=False)
        policy.model.set_adapter(STUDENT_ADAPTER)
        return Teacher(shared_model=policy.model)
    other = load_teacher_policy(cfg, device=policy.device)
    if other.tokenizer.get_vocab() != policy.tokenizer.get_vocab():
        raise ConfigError(
            f"teacher.model: {t.model!r} has another tokenizer than model.name {cfg.model.name!r}; "
            "distillation compares log-probs token by token, so both need the same vocabulary"
        )
    return Teacher(policy=other)


def teacher_for(policy, cfg) -> Optional[Teacher]:
    """The teacher when the algorithm scores with one (distill), else None."""
    from rl_reason.algorithms import registry

    if not getattr(registry.get(cfg.algorithm.name), "needs_teacher", False):
        return None
    return attach_teacher(policy, cfg)
