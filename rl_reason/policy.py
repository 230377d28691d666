"""The policy: one frozen base model with a trainable LoRA adapter.

The reference policy is the same model with the adapter switched off (``Policy.reference()``),
never a second copy of the weights.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Optional

import torch

from rl_reason.config import LoraConfig, ModelConfig
from rl_reason.errors import ConfigError, ModelError

log = logging.getLogger("rl_reason")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but no CUDA GPU is visible; set model.device=cpu")
    return torch.device(name)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types here
        raise ModelError(f"cannot load the tokenizer of {path!r}: {exc}".splitlines()[0]) from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads prompts on the left
    return tok


class Policy:
    """A PEFT-wrapped causal LM plus its tokenizer."""

    routing = None  # rl_reason.moe.Routing on a mixture-of-experts base (load_policy sets it)

    def __init__(self, model, tokenizer, device: torch.device):
        self.model = model  # peft.PeftModel
        self.tokenizer = tokenizer
        self.device = device

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ModelError(f"adapter state has keys this model lacks: {unexpected[:3]}")

    def save_adapter(self, path: Path) -> None:
        """Write an adapter dir loadable with ``peft.PeftModel.from_pretrained(base, path)``.

        Only the actor's adapter: a PPO critic adapter on the same model is saved apart.
        """
        self.model.save_pretrained(str(path), selected_adapters=["default"])

    # ------------------------------------------------------------------ contexts
    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """The reference policy: the base model with the adapter disabled."""
        with self.model.disable_adapter():
            yield

    @contextlib.contextmanager
    def merged_for_generation(self) -> Iterator[None]:
        """Fold the adapter into the base weights for fast sampling, then restore them exactly.

        Unmerged LoRA runs three extra small matmuls per linear layer per token, which on a
        CPU roughly doubles decode time for a small model. peft's own merge_adapter() /
        unmerge_adapter() add and then subtract the delta in place, which leaves float
        rounding drift in the frozen base after every step; that would make the reference
        policy drift and break bitwise-exact resume. Instead we put a *new* merged tensor in
        place of each base weight and put the original tensor object back afterwards.
        """
        from peft.tuners.lora import LoraLayer

        swaps: list[tuple[torch.nn.Module, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for module in self.model.modules():
                    if not isinstance(module, LoraLayer) or getattr(module, "merged", False):
                        continue
                    active = [a for a in module.active_adapters if a in module.lora_A]
                    if not active:
                        continue
                    base = module.get_base_layer()
                    # a LoRA on a fused MoE expert weight (peft ParamWrapper) names its parameter
                    param = getattr(base, getattr(module, "parameter_name", "weight"))
                    original = param.data
                    merged = original.clone()
                    for name in active:
                        merged += module.get_delta_weight(name).to(merged.dtype)
                    param.data = merged
                    swaps.append((param, original))
            with self.model.disable_adapter():
                yield
        finally:
            for param, original in swaps:
                param.data = original

    # ------------------------------------------------------------------ forward
    def completion_logprobs(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_len: int,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Per-token log-probs of the last ``completion_len`` tokens of ``input_ids``.

        Rows are [left-padded prompt | right-padded completion], so every completion starts
        at the same column and only the last ``completion_len + 1`` positions need logits.
        ``model`` is passed in so a DDP-wrapped module can be used for the backward pass.
        """
        from rl_reason.algorithms import entropy_from_logits, selective_log_softmax

        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=completion_len + 1,
            use_cache=False,
        )
        logits = out.logits[:, :-1, :].float()
        if temperature != 1.0:
            logits = logits / temperature
        targets = input_ids[:, -completion_len:]
        logp = selective_log_softmax(logits, targets)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                entropy = entropy_from_logits(logits.detach())
        return logp, entropy

    def completion_logprobs_shared_prompt(
        self,
        model: torch.nn.Module,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        row_prompt: torch.Tensor,
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``completion_logprobs`` with each distinct prompt run once, not once per completion.

        A group's n completions share one prompt; the plain path recomputes it n times, and
        with short answers the prompt is half the tokens of the update. Here the U distinct
        (left-padded) prompts go through the model once; their key/value cache is gathered
        per row (``row_prompt[i]`` = the prompt of row i) and the right-padded completions
        run on top of it. Gradients flow back through the gathered cache into the single
        prompt pass, so the result equals the plain path up to float rounding. Needs a model
        that is not DDP-wrapped (two forwards per backward) and no gradient checkpointing
        (which turns the cache off); the trainer falls back to the plain path otherwise.
        """
        from rl_reason.algorithms import entropy_from_logits, selective_log_softmax

        prompt_pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        first = model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=prompt_pos,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = first.past_key_values
        cache.batch_select_indices(row_prompt)
        C = completion_ids.shape[1]
        attention = torch.cat([prompt_mask[row_prompt], completion_mask], dim=1)
        start = prompt_mask.sum(-1)[row_prompt]
        positions = start.unsqueeze(1) + torch.arange(C, device=start.device).unsqueeze(0)
        rest = model(
            input_ids=completion_ids,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=C,
        )
        # the last prompt position predicts completion token 0; completion position t predicts
        # t+1. The two parts are scored apart: concatenating them would copy every logit.
        parts = [(first.logits[row_prompt][:, -1:, :], completion_ids[:, :1])]
        if C > 1:
            parts.append((rest.logits[:, :-1, :], completion_ids[:, 1:]))
        logps, entropies = [], []
        for logits, targets in parts:
            logits = logits.float()
            if temperature != 1.0:
                logits = logits / temperature
            logps.append(selective_log_softmax(logits, targets))
            if with_entropy:
                with torch.no_grad():
                    entropies.append(entropy_from_logits(logits.detach()))
        entropy = torch.cat(entropies, dim=1) if with_entropy else None
        return torch.cat(logps, dim=1), entropy


def load_base(model_cfg: ModelConfig, path: str, device: torch.device):
    """The frozen base model on ``device`` (gradient checkpointing on when the recipe asks)."""
    from transformers import AutoModelForCausalLM

    try:
        base = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[model_cfg.dtype], trust_remote_code=model_cfg.trust_remote_code
        )
    except Exception as exc:
        raise ModelError(f"cannot load model {model_cfg.name!r} from {path}: {exc}".splitlines()[0]) from exc
    base.to(device)
    base.requires_grad_(False)
    if model_cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    return base


def check_dtype(dtype: str, device_type: str, name: str = "model.dtype") -> None:
    """The one "no float16 on the CPU" rule (training, eval and serve all ask it)."""
    if device_type == "cpu" and dtype == "float16":
        raise ConfigError(f"{name} float16 is not supported on the CPU; use float32 or bfloat16")


def _frozen_base(model_cfg: ModelConfig, device: Optional[torch.device], keys: tuple[str, str]):
    """(base, tokenizer, device): the frozen base and its tokenizer, as training and
    evaluation both load them. ``keys`` name the model and dtype settings in errors."""
    from rl_reason import hub  # [badinput] offline: one line in seconds, not a minute of retries
    from rl_reason.model_zoo import resolve_model

    path = resolve_model(model_cfg.name)
    hub.require(path, repo_type="model", key=keys[0], error=ModelError)
    device = device if device is not None else pick_device(model_cfg.device)
    check_dtype(model_cfg.dtype, device.type, keys[1])
    tokenizer = load_tokenizer(path, model_cfg.trust_remote_code)
    base = load_base(model_cfg, path, device)
    if base.generation_config is not None and base.generation_config.pad_token_id is None:
        base.generation_config.pad_token_id = tokenizer.pad_token_id
    return base, tokenizer, device


def load_policy(
    model_cfg: ModelConfig, lora_cfg: LoraConfig, seed: int, device: Optional[torch.device] = None
) -> Policy:
    """Load the base model frozen, attach a fresh LoRA adapter (initialised from ``seed``)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    base, tokenizer, device = _frozen_base(model_cfg, device, ("model.name", "model.dtype"))
    from rl_reason import moe  # mixture-of-experts bases: expert LoRA targets, routing hooks

    target_modules, target_parameters = moe.lora_targets(
        base, lora_cfg.target_modules, experts=lora_cfg.experts, train_router=lora_cfg.train_router
    )
    if target_parameters and lora_cfg.dropout:
        raise ModelError(
            "lora.dropout must be 0 with LoRA on fused MoE experts or the router (PEFT cannot "
            "drop out inside them); set lora.dropout=0 or lora.experts=false"
        )
    peft_cfg = PeftLoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=target_modules,
        target_parameters=target_parameters,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            with moe.peft_targets_as_given(base):
                model = get_peft_model(base, peft_cfg)
        except ValueError as exc:
            raise ModelError(f"lora.target_modules: {exc}".splitlines()[0]) from exc
    policy = Policy(model, tokenizer, device)
    policy.routing = moe.attach(model)
    if policy.routing is not None:
        mem = moe.lora_memory(model)
        log.info(
            "MoE base (%d layers, %d experts, top-%d); LoRA %.2f MB (experts %.2f, router %.2f), "
            "%.2f MB with gradients and Adam state",
            policy.routing.num_layers,
            policy.routing.num_experts,
            policy.routing.top_k,
            mem["total"],
            mem["experts"],
            mem["router"],
            mem["training_total"],
        )
    if model_cfg.init_adapter:  # start from a saved adapter (rl_reason/adapters.py checks it fits)
        from rl_reason.adapters import load_init_adapter
        from rl_reason.model_zoo import resolve_model

        load_init_adapter(
            policy, model_cfg.init_adapter, model_cfg.name, resolve_model(model_cfg.name), lora_cfg
        )
    return policy


def load_saved_policy(
    model_cfg: ModelConfig,
    adapter: Optional[str],
    device: Optional[torch.device] = None,
    keys: tuple[str, str] = ("model.name", "model.dtype"),
) -> Policy:
    """The base frozen in eval mode with a saved adapter attached (not trainable), or the
    base alone when ``adapter`` is None: what ``rl-reason eval`` samples from."""
    base, tokenizer, device = _frozen_base(model_cfg, device, keys)
    base.eval()
    net = base
    if adapter:
        from peft import PeftModel

        from rl_reason import moe

        try:
            # the saved targets as they are (PEFT would rewrite an MoE's: rl_reason/moe.py)
            with moe.peft_targets_as_given(base):
                net = PeftModel.from_pretrained(base, str(Path(adapter).expanduser()), is_trainable=False)
        except Exception as exc:
            raise ModelError(
                f"cannot load adapter {adapter} onto {model_cfg.name}: {exc}".splitlines()[0]
                + " (was it trained on this base model?)"
            ) from exc
        net.to(device)
        net.eval()
    return Policy(net, tokenizer, device)
