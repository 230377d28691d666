"""Mixture-of-experts bases: LoRA targets on fused experts, routing capture and replay.

transformers (5.x) stores the experts of Qwen3-MoE, Mixtral and OLMoE as fused 3-D
parameters (``mlp.experts.gate_up_proj`` (E, 2I, H), ``mlp.experts.down_proj`` (E, H, I)) and
routes with a ``*TopKRouter`` module whose forward returns ``(logits, scores, indices)``.
LoRA on the experts goes through PEFT's ``target_parameters`` (one low-rank pair per expert,
``peft.tuners.lora.ParamWrapper``); the router is frozen unless ``lora.train_router``.

Routing replay: the sampler (rl_reason/rollout/hf.py) records, for every token it feeds
through the model, the experts each MoE layer chose; the update's forwards then use those
experts instead of the router's own choice (``algorithm.routing_replay``). Both are forward
hooks on the router modules (``Routing``), so no model code is copied or patched. The
routing weights of a replayed choice are the router's own probabilities of those experts
(softmax of its logits, renormalised over the chosen ones where the model does so), so
gradients still reach everything upstream of the router.

Families: each transformers MoE family rl-reason supports is a small ``Family`` registered by
``config.model_type`` (``register_family``): the class-name suffix of its router module, and
how that router turns its logits into the weights of given experts (``weights``, what replay
uses) and into a distribution over the experts (``log_probs``, for the entropy metric and the
load-balancing loss). Softmax routers (Qwen3-MoE, Mixtral, OLMoE) share one; DeepSeek-V3's
sigmoid router with group-limited top-k, a score-correction bias and a scaling factor has its
own. A model whose ``model_type`` is not registered is treated as dense (LoRA on its linear
layers as the recipe says, no expert LoRA, no replay).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterator, Optional, Sequence

import torch

EXPERTS_SUFFIX = "Experts"
NO_EXPERT = -1  # a position the sampler did not route (padding, the last sampled token)


# --------------------------------------------------------------------------- families


@dataclasses.dataclass(frozen=True)
class Family:
    """How to find, read and steer the router of one transformers MoE family.

    ``router``: the class-name suffix of its router module (a module with ``top_k`` and
    ``num_experts`` whose forward returns ``(logits, weights, indices)``).
    ``weights(router, logits, chosen)``: the routing weights the layer would give the experts
    ``chosen`` (N, k) from its ``logits`` (N, E); replay runs them with these.
    ``log_probs(router, logits)``: the router's distribution over the experts (N, E), as logs.
    """

    router: str
    weights: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    log_probs: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def _softmax_weights(router, logits, chosen):
    w = torch.softmax(logits.float(), dim=-1).gather(-1, chosen)
    if getattr(router, "norm_topk_prob", True):  # Mixtral always renormalises
        w = w / w.sum(-1, keepdim=True)
    return w


def _softmax_log_probs(router, logits):
    return torch.log_softmax(logits.float(), dim=-1)


SOFTMAX = Family("TopKRouter", _softmax_weights, _softmax_log_probs)


def _sigmoid_weights(router, logits, chosen):
    # DeepseekV3TopkRouter: the bias and the group limit decide which experts, not their weight
    w = torch.sigmoid(logits.float()).gather(-1, chosen)
    if router.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return w * router.routed_scaling_factor


def _sigmoid_log_probs(router, logits):
    # each expert's share of the token's summed affinity (what the weights normalise over)
    s = torch.nn.functional.logsigmoid(logits.float())
    return s - torch.logsumexp(s, dim=-1, keepdim=True)


SIGMOID_GROUPED = Family("TopkRouter", _sigmoid_weights, _sigmoid_log_probs)

FAMILIES: dict[str, Family] = {
    "qwen3_moe": SOFTMAX,
    "mixtral": SOFTMAX,
    "olmoe": SOFTMAX,
    "deepseek_v3": SIGMOID_GROUPED,
}


def register_family(model_type: str, family: Family) -> None:
    """Treat models of ``config.model_type`` as MoE bases with ``family``'s router."""
    FAMILIES[model_type] = family


def family_of(model: torch.nn.Module) -> Optional[Family]:
    """The registered family of a model (a PEFT wrapper or the bare transformers model)."""
    config = getattr(model, "config", None)
    return FAMILIES.get(getattr(config, "model_type", None))


# --------------------------------------------------------------------------- discovery


def _strip_peft(name: str) -> str:
    """A module path without PEFT's wrapper names (base_model.model., .base_layer)."""
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".base_layer", "")


def routers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The top-k router of every MoE layer, in layer order (none for an unregistered family)."""
    family = family_of(model)
    if family is None:
        return []
    out = []
    for m in model.modules():
        if type(m).__name__.endswith(family.router) and hasattr(m, "top_k") and hasattr(m, "num_experts"):
            out.append(m)
    return out


def is_moe(model: torch.nn.Module) -> bool:
    return bool(routers(model))


def expert_parameter_names(model: torch.nn.Module) -> list[str]:
    """The fused 3-D expert weights by their path under the decoder layer, e.g.
    ``mlp.experts.gate_up_proj``: the names PEFT's ``target_parameters`` matches."""
    names: list[str] = []
    for mod_name, m in model.named_modules():
        if not type(m).__name__.endswith(EXPERTS_SUFFIX):
            continue
        for p_name, p in m.named_parameters(recurse=False):
            if p.dim() == 3:
                rel = _layer_relative(f"{mod_name}.{p_name}")
                if rel not in names:
                    names.append(rel)
    return names


def router_parameter_names(model: torch.nn.Module) -> list[str]:
    names: list[str] = []
    found = {id(m) for m in routers(model)}
    for mod_name, m in model.named_modules():
        if id(m) in found:
            rel = _layer_relative(f"{mod_name}.weight")
            if rel not in names:
                names.append(rel)
    return names


def _layer_relative(path: str) -> str:
    """``model.layers.3.mlp.experts.down_proj`` -> ``mlp.experts.down_proj``."""
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[i + 1 :])
    return path


def _linear_leaf_names(model: torch.nn.Module, exclude: Sequence[str]) -> list[str]:
    names: list[str] = []
    for mod_name, m in model.named_modules():
        leaf = mod_name.rsplit(".", 1)[-1]
        if isinstance(m, torch.nn.Linear) and leaf not in exclude and leaf not in names:
            names.append(leaf)
    return names


def lora_targets(model: torch.nn.Module, target_modules, *, experts: bool, train_router: bool):
    """``(target_modules, target_parameters)`` for PEFT's LoraConfig.

    A dense model: the recipe's ``target_modules`` as they are, no parameters. An MoE model:
    PEFT 0.17+ expands ``all-linear`` on an MoE into the fused experts *and the router*; here
    ``all-linear`` means every ``nn.Linear`` but the output head (the attention, and dense
    MLPs where a layer has one), the fused experts are added when ``experts`` and the router
    weight only when ``train_router``.
    """
    if not is_moe(model):
        return target_modules, None
    if target_modules == "all-linear":
        out_head = model.get_output_embeddings()
        head = [n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is out_head]
        target_modules = _linear_leaf_names(model, exclude=head)
    params = (expert_parameter_names(model) if experts else []) + (
        router_parameter_names(model) if train_router else []
    )
    return target_modules, (params or None)


@contextlib.contextmanager
def peft_targets_as_given(model: torch.nn.Module) -> Iterator[None]:
    """Build a PEFT adapter on an MoE base with exactly the targets given.

    PEFT (0.19+) rewrites the LoRA targets of several MoE model types (qwen3_moe, olmoe,
    deepseek_v3, mixtral) from transformers v4's names to v5's fused expert parameters, so that
    adapters trained on v4 still load: ``gate_proj`` / ``up_proj`` / ``down_proj`` / ``gate`` in
    ``target_modules`` become expert and router ``target_parameters``, the fused
    ``gate_up_proj`` at twice the rank. The targets of ``lora_targets`` are v5's already; the
    rewrite would move a DeepSeek-V3 dense layer's and shared expert's LoRA onto the routed
    experts, put experts under ``lora.experts: false`` and the router under
    ``all-linear``. It is off (this model type taken out of PEFT's table) for the duration.
    """
    try:
        from peft.utils import transformers_weight_conversion as conv
    except ImportError:  # a PEFT without the rewrite
        yield
        return
    table = getattr(conv, "_MODEL_TO_CONVERSION_PATTERN", None)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if family_of(model) is None or not isinstance(table, dict) or model_type not in table:
        yield
        return
    saved = table.pop(model_type)
    try:
        yield
    finally:
        table[model_type] = saved


def adapter_targets(peft_model, adapter: str = "default"):
    """``(target_modules, target_parameters)`` of an adapter on an MoE base, or None for a
    dense one: a second adapter (PPO's critic) takes the same ones, as PEFT requires every
    adapter to target the same parameters."""
    if not is_moe(peft_model):
        return None
    cfg = peft_model.peft_config[adapter]
    params = sorted(cfg.target_parameters) if cfg.target_parameters else None
    return sorted(cfg.target_modules), params


# --------------------------------------------------------------------------- memory


def lora_memory(model: torch.nn.Module) -> dict[str, float]:
    """MB of the trainable adapter by where it sits (experts, router, the rest), and what
    training holds for it: weights + gradients + Adam's two moments = 4x the weights."""
    from peft.tuners.lora import ParamWrapper

    owner: dict[int, str] = {}
    found = {id(m) for m in routers(model)}
    for m in model.modules():
        if isinstance(m, ParamWrapper):
            kind = "router" if id(m.get_base_layer()) in found else "experts"
            for p in list(m.lora_A.parameters()) + list(m.lora_B.parameters()):
                owner[id(p)] = kind
    mb = {"experts": 0.0, "router": 0.0, "other": 0.0}
    for p in model.parameters():
        if p.requires_grad:
            mb[owner.get(id(p), "other")] += p.numel() * p.element_size() / 2**20
    mb["total"] = sum(mb.values())
    mb["training_total"] = 4 * mb["total"]
    return mb


# --------------------------------------------------------------------------- routing


@dataclasses.dataclass
class _Call:
    layer: int
    natural: torch.Tensor  # (N, k) the router's own choice
    used: torch.Tensor  # (N, k) the experts the layer ran (the replayed ones under replay)
    logits: torch.Tensor  # (N, E), with gradient in a training forward


class Routing:
    """Forward hooks on every router of an MoE model: record what each layer chose, and
    replay given choices. One per policy model; idle (pass-through) unless a sampling or an
    update forward is running under ``sampling()`` / ``forward()``."""

    def __init__(self, model: torch.nn.Module):
        self.routers = routers(model)
        if not self.routers:
            raise ValueError("not a mixture-of-experts model (no top-k router found)")
        self.family = family_of(model)
        self.num_layers = len(self.routers)
        self.top_k = int(self.routers[0].top_k)
        self.num_experts = int(self.routers[0].num_experts)
        self._replay: Optional[torch.Tensor] = None  # (N, L, k) for the forward running now
        self._calls: Optional[list[_Call]] = None
        self._keep_logits = False
        self._handles = [r.register_forward_hook(self._hook(i)) for i, r in enumerate(self.routers)]
        self._sums: dict[str, float] = {}
        self._aux: Optional[torch.Tensor] = None  # the last training forward's balancing loss
        self._seq: Optional[list[list[torch.Tensor]]] = None  # sampling: chunks per row

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    # ------------------------------------------------------------------ the hook
    def _hook(self, layer: int):
        def hook(module, args, output):
            if self._calls is None and self._replay is None:
                return None
            logits, scores, natural = output
            used = natural
            replay = self._replay
            if replay is not None and replay.shape[0] == natural.shape[0]:
                want = replay[:, layer, :].to(natural.device, natural.dtype)
                have = (want >= 0).all(-1, keepdim=True)
                used = torch.where(have, want, natural)
                scores = self.family.weights(module, logits, used.long()).to(scores.dtype)
                output = (logits, scores, used)
            if self._calls is not None:
                kept = logits if self._keep_logits else logits.detach()
                self._calls.append(_Call(layer, natural.detach(), used.detach(), kept))
            return output

        return hook

    # ------------------------------------------------------------------ sampling
    @contextlib.contextmanager
    def sampling(self, rows: int) -> Iterator["Routing"]:
        """Record the experts of every fed token of a sampling batch of ``rows`` rows;
        the sampler calls ``step(live, width)`` after each forward."""
        self._seq = [[] for _ in range(rows)]
        self._calls = []
        try:
            yield self
        finally:
            self._calls = None

    def step(self, live: Sequence[int], width: int) -> None:
        """File the last forward's choices: batch row b is sampling row ``live[b]``, and the
        forward fed ``width`` positions per row."""
        calls, self._calls = self._calls, []
        per_layer = [c.used for c in sorted(calls, key=lambda c: c.layer)][: self.num_layers]
        if len(per_layer) != self.num_layers:
            return
        stacked = torch.stack(per_layer, dim=1).to("cpu", torch.int16)  # (N, L, k)
        stacked = stacked.view(len(live), width, self.num_layers, self.top_k)
        for b, row in enumerate(live):
            self._seq[row].append(stacked[b])

    def sequence(self, row: int, prompt_len: int, completion_len: int) -> torch.Tensor:
        """(prompt_len + completion_len, L, k) choices of one sampled row: its prompt tokens
        and its completion tokens; NO_EXPERT where a token was never fed (the last one)."""
        chunks = self._seq[row] if self._seq is not None else []
        full = torch.cat(chunks, dim=0) if chunks else torch.empty(0, self.num_layers, self.top_k)
        # the prefill chunk is left-padded to the batch width: the prompt is its tail
        width = chunks[0].shape[0] if chunks else 0
        full = full[width - prompt_len :]
        n = prompt_len + completion_len
        out = torch.full((n, self.num_layers, self.top_k), NO_EXPERT, dtype=torch.int16)
        take = min(n, full.shape[0])
        out[:take] = full[:take]
        return out

    # ------------------------------------------------------------------ update forwards
    @contextlib.contextmanager
    def forward(
        self,
        sampled: Optional[torch.Tensor],
        attention_mask: torch.Tensor,
        *,
        replay: bool,
        measure: bool = False,
        keep_logits: bool = False,
    ) -> Iterator[list[_Call]]:
        """One update forward over rows laid out like ``attention_mask`` (B, T).

        ``sampled`` (B, T, L, k): the sampler's choices per position (NO_EXPERT where it has
        none). ``replay``: the layers run those experts. ``measure``: add agreement, load and
        entropy statistics (``pop_metrics``). Yields this forward's calls (logits kept with
        their gradient when ``keep_logits``, for the load-balancing loss)."""
        calls: list[_Call] = []
        flat = sampled.reshape(-1, self.num_layers, self.top_k) if sampled is not None else None
        self._replay = flat if (replay and flat is not None) else None
        self._calls, self._keep_logits = calls, keep_logits
        try:
            yield calls
        finally:
            self._replay, self._calls, self._keep_logits = None, None, False
        if measure:
            self._measure(calls, flat, attention_mask.reshape(-1).bool())

    def _measure(self, calls: list[_Call], sampled: Optional[torch.Tensor], valid: torch.Tensor) -> None:
        s = self._sums
        k, E = self.top_k, self.num_experts
        for c in calls:
            if c.used.shape[0] != valid.shape[0]:
                continue
            v = valid.to(c.used.device)
            n = float(v.sum())
            logp = self.family.log_probs(self.routers[c.layer], c.logits.detach())[v]
            ent = -(logp.exp() * logp).sum(-1)
            s[f"ent{c.layer}"] = s.get(f"ent{c.layer}", 0.0) + float(ent.sum())
            s[f"n{c.layer}"] = s.get(f"n{c.layer}", 0.0) + n
            load = torch.bincount(c.used[v].reshape(-1).long(), minlength=E)[:E].float()
            for e in range(E):
                s[f"load{c.layer}_{e}"] = s.get(f"load{c.layer}_{e}", 0.0) + float(load[e])
            if sampled is None:
                continue
            want = sampled[:, c.layer, :].to(c.used.device).long()
            has = v & (want >= 0).all(-1)
            if not bool(has.any()):
                continue
            w = want[has]
            for key, got in (("used", c.used[has]), ("natural", c.natural[has])):
                overlap = (w.unsqueeze(-1) == got.long().unsqueeze(-2)).any(-1).float().sum(-1) / k
                s[f"agree_{key}"] = s.get(f"agree_{key}", 0.0) + float(overlap.sum())
            s["agree_n"] = s.get("agree_n", 0.0) + float(has.sum())

    def logprobs(self, policy, model, t, alg, temperature: float, with_entropy: bool, measure: bool):
        """``Policy.completion_logprobs`` of a micro-batch with the sampler's experts replayed
        (``alg.routing_replay``), statistics added (``measure``) and, in a training forward
        with ``alg.router_aux_coef``, the load-balancing loss kept for ``take_aux``. Whole
        rows, never the shared-prompt path: replay is laid out per row."""
        keep = getattr(alg, "router_aux_coef", 0.0) > 0 and torch.is_grad_enabled()
        replay = bool(getattr(alg, "routing_replay", False))
        with self.forward(
            t.routed_experts, t.attention_mask, replay=replay, measure=measure, keep_logits=keep
        ) as calls:
            out = policy.completion_logprobs(
                model, t.input_ids, t.attention_mask, t.completion_len, temperature, with_entropy
            )
        self._aux = self.aux_loss(calls, t.attention_mask) if keep else None
        return out

    def take_aux(self) -> Optional[torch.Tensor]:
        aux, self._aux = self._aux, None
        return aux

    def pop_metrics(self) -> dict[str, float]:
        """The statistics since the last call, as metrics:

        - ``moe/routing_agreement``: share of the sampler's experts (per token and layer) that
          the update forward ran; 1.0 under replay.
        - ``moe/router_agreement``: the same for the experts the update's router would pick
          itself (given the layer's input; under replay the earlier layers were replayed).
        - ``moe/layer<l>/router_entropy``: mean entropy of the router's distribution.
        - ``moe/layer<l>/load_max``: the busiest expert's share of routed slots times E (1.0
          is perfectly balanced, E means one expert takes everything).
        - ``moe/expert<e>/load``: expert e's share of routed slots, mean over layers.
        """
        s, self._sums = self._sums, {}
        out: dict[str, float] = {}
        if s.get("agree_n"):
            out["moe/routing_agreement"] = s["agree_used"] / s["agree_n"]
            out["moe/router_agreement"] = s["agree_natural"] / s["agree_n"]
        E = self.num_experts
        shares = []
        for layer in range(self.num_layers):
            n = s.get(f"n{layer}", 0.0)
            if not n:
                continue
            out[f"moe/layer{layer}/router_entropy"] = s[f"ent{layer}"] / n
            loads = [s[f"load{layer}_{e}"] for e in range(E)]
            total = max(sum(loads), 1.0)
            share = [x / total for x in loads]
            shares.append(share)
            out[f"moe/layer{layer}/load_max"] = max(share) * E
        if shares:
            for e in range(E):
                out[f"moe/expert{e}/load"] = sum(sh[e] for sh in shares) / len(shares)
        return out

    def aux_loss(self, calls: list[_Call], attention_mask: torch.Tensor) -> torch.Tensor:
        """The Switch-Transformer load-balancing loss of one forward (transformers' own
        ``load_balancing_loss_func``) over its real tokens. It takes softmax logits; a
        family's log-probabilities are such logits (DeepSeek-V3: its normalised sigmoid
        scores, top-k taken on them without the bias and the group limit)."""
        from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

        calls = sorted(calls, key=lambda c: c.layer)
        logits = tuple(self.family.log_probs(self.routers[c.layer], c.logits) for c in calls)
        if not logits or logits[0].shape[0] != attention_mask.numel():
            return torch.zeros((), device=attention_mask.device)
        return load_balancing_loss_func(logits, self.num_experts, self.top_k, attention_mask)


def vllm_refusal(policy, engine: str) -> Optional[str]:
    """Why ``rollout.engine`` (vllm or server) cannot sample this policy, or None.

    vLLM (0.32, the CPU build tested here) has no fused-MoE LoRA kernel on the CPU
    (``PunicaWrapperCPU`` leaves ``add_lora_fused_moe`` unimplemented), and its GPU path for
    a PEFT ``target_parameters`` adapter is untested here: an MoE base samples with the hf
    engine. See docs/MOE.md and docs/GPU.md.
    """
    if getattr(policy, "routing", None) is None:
        return None
    return (
        f"rollout.engine={engine}: LoRA sampling on a mixture-of-experts base is not supported "
        "with vLLM here (no fused-MoE LoRA on its CPU build, GPU untested); use rollout.engine=hf"
    )


def attach(model: torch.nn.Module) -> Optional[Routing]:
    """A ``Routing`` on an MoE model; None for a dense one."""
    return Routing(model) if is_moe(model) else None


def layout(
    routed: Sequence[torch.Tensor],
    prompt_lens: Sequence[int],
    completion_lens: Sequence[int],
    P: int,
    C: int,
) -> torch.Tensor:
    """Per-row sampler choices (prompt + completion, L, k) laid out like a collated
    micro-batch: [left-padded prompt | right-padded completion] -> (B, P + C, L, k)."""
    L, k = routed[0].shape[1], routed[0].shape[2]
    out = torch.full((len(routed), P + C, L, k), NO_EXPERT, dtype=torch.int16)
    for row, (r, p, c) in enumerate(zip(routed, prompt_lens, completion_lens)):
        out[row, P - p : P] = r[:p]
        out[row, P : P + c] = r[p : p + c]
    return out
