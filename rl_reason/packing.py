"""Packed micro-batches: the sequences of a micro-batch in one row, no padding.

A padded micro-batch is ``rows x (longest prompt + longest completion)``; RL completions vary a
lot in length, so much of it is padding. Packed, the micro-batch is one row of exactly its
tokens, and attention cannot cross from one sequence into another. Two layouts:

- ``flat``: ``[prompt_1 completion_1 prompt_2 completion_2 ...]`` with position ids restarting
  at 0 for every sequence and no attention mask. transformers reads the sequence boundaries off
  the position ids (``masking_utils.find_packed_sequence_indices``: a block-diagonal causal
  mask for sdpa/eager; cu_seqlens for flash-attention's variable-length kernel), so the model's
  own packed path runs. A model whose code does not build its mask through
  ``masking_utils.create_causal_mask`` gets the same block-diagonal mask built here instead.
- ``tree`` (``train.share_prompt``): each distinct prompt once, followed by all of its
  completions, ``[prompt_a c_a1 c_a2 ... prompt_b c_b1 ...]``. Completion tokens see their own
  prompt and their own earlier tokens, never a sibling; their position ids continue from the
  prompt's length. This is prompt sharing in one forward (no key/value cache), so unlike the
  padded ``share_prompt`` path it also runs under DDP and with gradient checkpointing. It needs
  a 4D mask, which flash-attention cannot take, and one mask cannot also be a sliding window:
  there the flat layout runs.

Logits are computed only at the positions that predict a completion token (``logits_to_keep``
given as an index tensor), and the log-probs are scattered back into the micro-batch's (B, C)
shape, so every loss and metric reads them exactly as the padded path's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import Optional, Sequence

import torch

FLAT, TREE = "flat", "tree"
# attention implementations that take a 4D mask as given (flash-attention takes none)
_MASKED_IMPLS = ("sdpa", "eager")


@dataclasses.dataclass(frozen=True)
class Packed:
    """One micro-batch as one row (sequence ids per token decide who may attend to whom)."""

    layout: str  # FLAT or TREE
    input_ids: torch.Tensor  # (1, N)
    position_ids: torch.Tensor  # (1, N)
    group: torch.Tensor  # (N,) block of the token: a sequence (flat) or a prompt's group (tree)
    seq: torch.Tensor  # (N,) the token's sequence; -1 on a shared prompt token (tree)
    logit_index: torch.Tensor  # (M,) positions whose logits predict a completion token
    targets: torch.Tensor  # (M,) the completion tokens they predict
    rows: torch.Tensor  # (M,) row of each predicted token in the micro-batch ...
    cols: torch.Tensor  # (M,) ... and its column in the completion
    shape: tuple[int, int]  # (B, C) of the padded micro-batch

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])


# --------------------------------------------------------------------------- choosing


def model_builds_packed_masks(model: torch.nn.Module) -> bool:
    """Whether the model's code builds its mask with transformers' ``create_causal_mask`` (which
    detects packed position ids); otherwise the block-diagonal mask is built here."""
    base = model.module if hasattr(model, "module") else model  # DDP
    if hasattr(base, "get_base_model"):  # peft.PeftModel -> the transformers model
        base = base.get_base_model()
    inner = getattr(base, "model", base)
    for m in (base, inner):
        module = sys.modules.get(type(m).__module__)
        if module is not None and hasattr(module, "create_causal_mask"):
            return True
    return False


def attn_implementation(model: torch.nn.Module) -> str:
    model = model.module if hasattr(model, "module") else model  # DDP
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "_attn_implementation", None) or "eager")


def layout(mode, share_prompt: bool, model: torch.nn.Module) -> Optional[str]:
    """The packed layout the update uses (None: padded micro-batches).

    ``mode`` is ``train.packing``: ``auto`` packs where the model builds its masks through
    transformers' masking utilities with sdpa, eager or flash attention; ``True`` always packs
    (with a mask built here where transformers would not); ``False`` never does.
    """
    if mode is False:
        return None
    impl = attn_implementation(model)
    if mode == "auto" and not (
        model_builds_packed_masks(model) and (impl in _MASKED_IMPLS or impl.startswith("flash"))
    ):
        return None
    if share_prompt and impl in _MASKED_IMPLS and not has_sliding_window(model):
        return TREE
    return FLAT


def has_sliding_window(model: torch.nn.Module) -> bool:
    """Whether some layer attends through a sliding window (Gemma 3, Mistral, ...): the tree
    layout's one 4D mask would reach every layer as full attention, so such models get the
    flat layout, where transformers builds each layer type's packed mask itself."""
    model = model.module if hasattr(model, "module") else model
    cfg = getattr(model, "config", None)
    types = getattr(cfg, "layer_types", None)
    if types:
        return any("sliding" in str(t) for t in types)
    return bool(getattr(cfg, "sliding_window", None)) and bool(getattr(cfg, "use_sliding_window", True))


# --------------------------------------------------------------------------- splitting


def split(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], budget: int, tree: bool
):
    """Sequence indices cut into micro-batches of at most ``budget`` packed tokens.

    Sequences are taken in order (rollouts are prompt-major, so a group stays together); in
    the tree layout a prompt costs its tokens once per micro-batch. A sequence longer than the
    budget gets a micro-batch of its own. Deterministic for equal input.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    seen: set[tuple[int, ...]] = set()
    used = 0
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        key = tuple(p)
        cost = len(c) + (0 if (tree and key in seen) else len(p))
        if current and used + cost > budget:
            batches.append(current)
            current, seen, used = [], set(), 0
            cost = len(c) + len(p)
        current.append(i)
        seen.add(key)
        used += cost
    if current:
        batches.append(current)
    return batches


# --------------------------------------------------------------------------- packing


def pack(
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    idx: Sequence[int],
    how: str,
    device,
) -> Packed:
    """The sequences ``idx`` as one row in layout ``how``; row r of the micro-batch is idx[r]."""
    ids: list[int] = []
    pos: list[int] = []
    group: list[int] = []
    seq: list[int] = []
    logit_index: list[int] = []
    targets: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    prompt_end: dict[tuple[int, ...], tuple[int, int]] = {}  # tree: prompt -> (its last slot, group)
    C = max(max(len(completion_ids[i]) for i in idx), 1)
    for r, i in enumerate(idx):
        p, c = list(prompt_ids[i]), list(completion_ids[i])
        key = tuple(p)
        if how == TREE and key in prompt_end:
            last, g = prompt_end[key]
        else:
            g = r
            ids += p
            pos += range(len(p))
            group += [g] * len(p)
            seq += [-1 if how == TREE else r] * len(p)
            last = len(ids) - 1
            prompt_end[key] = (last, g)
        before = last  # the slot whose logits predict the next completion token
        for j, tok in enumerate(c):
            logit_index.append(before)
            targets.append(tok)
            rows.append(r)
            cols.append(j)
            ids.append(tok)
            pos.append(len(p) + j)
            group.append(g)
            seq.append(r)
            before = len(ids) - 1
    as_long = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return Packed(
        layout=how,
        input_ids=as_long(ids).unsqueeze(0),
        position_ids=as_long(pos).unsqueeze(0),
        group=as_long(group),
        seq=as_long(seq),
        logit_index=as_long(logit_index),
        targets=as_long(targets),
        rows=as_long(rows),
        cols=as_long(cols),
        shape=(len(idx), C),
    )


def allowed(p: Packed) -> torch.Tensor:
    """(N, N) bool: query i may attend to key j (causal, same block, and in the tree layout a
    completion sees its prompt and itself, not its siblings)."""
    n = p.tokens
    i = torch.arange(n, device=p.group.device)
    causal = i.unsqueeze(1) >= i.unsqueeze(0)
    same = p.group.unsqueeze(1) == p.group.unsqueeze(0)
    own = (p.seq.unsqueeze(0) < 0) | (p.seq.unsqueeze(1) == p.seq.unsqueeze(0))
    return causal & same & own


def attention_mask(p: Packed, model: torch.nn.Module):
    """What to pass as ``attention_mask``: None where transformers finds the sequences from the
    position ids itself, else a 4D mask in the form the attention implementation reads (bool
    for sdpa, additive float for eager)."""
    impl = attn_implementation(model)
    if p.layout == FLAT and (impl.startswith("flash") or model_builds_packed_masks(model)):
        return None
    ok = allowed(p)[None, None]
    if impl == "eager":
        inner = model.module if hasattr(model, "module") else model
        dtype = getattr(inner, "dtype", torch.float32)
        return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, torch.finfo(dtype).min)
    return ok


# tokens per slab of the vocabulary projection (see _HeadLogProb)
LOGIT_CHUNK = 128


def completion_logprobs(
    model: torch.nn.Module,
    p: Packed,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-token log-probs of the packed completions, in the micro-batch's (B, C) layout
    (0 on padding), and their entropies when asked.

    Where the output head is a plain frozen linear layer with no logit post-processing
    (``head_for_chunks``), the model returns its last hidden states at ``logit_index`` and the
    log-probs are taken ``LOGIT_CHUNK`` tokens at a time (``_HeadLogProb``): the (M, vocab)
    logits of the whole micro-batch are never held, in the forward or in the backward."""
    from rl_reason.algorithms.losses import entropy_from_logits, selective_log_softmax

    head = head_for_chunks(model)
    with _hidden_states_out(model, head):
        out = model(
            input_ids=p.input_ids,
            attention_mask=attention_mask(p, model),
            position_ids=p.position_ids,
            logits_to_keep=p.logit_index,
            use_cache=False,
        )
    if head is not None:
        hidden = out.logits[0]  # (M, H): the head was bypassed
        del out
        flat, ent = _HeadLogProb.apply(
            hidden, head.weight, head.bias, p.targets, float(temperature), with_entropy, LOGIT_CHUNK
        )
        logp = flat.new_zeros(p.shape).index_put((p.rows, p.cols), flat)
        entropy = ent.new_zeros(p.shape).index_put((p.rows, p.cols), ent) if with_entropy else None
        return logp, entropy
    logits = out.logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    flat = selective_log_softmax(logits, p.targets.unsqueeze(0))[0]
    logp = flat.new_zeros(p.shape).index_put((p.rows, p.cols), flat)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            ent = entropy_from_logits(logits.detach())[0]
            entropy = ent.new_zeros(p.shape).index_put((p.rows, p.cols), ent)
    return logp, entropy


# logits post-processing in a causal LM's forward after its head (Gemma 2/3, Cohere, Granite):
# with one of these set the head cannot be bypassed
_LOGIT_POSTPROCESS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    base = model.module if hasattr(model, "module") else model  # DDP
    if hasattr(base, "get_base_model"):  # peft.PeftModel -> the transformers model
        base = base.get_base_model()
    return base


def head_for_chunks(model: torch.nn.Module) -> Optional[torch.nn.Linear]:
    """The output head, when the chunked log-prob path can replace it: a plain ``nn.Linear``
    with no trainable parameter (no LoRA on it) whose logits the model does not post-process,
    in one process (under ``train.fsdp`` the head's weight is only whole inside the model's
    forward, and DDP and FSDP runs stay on one path so that they train the same adapter).
    None: the model computes its logits itself."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    base = _causal_lm(model)
    get = getattr(base, "get_output_embeddings", None)
    head = get() if get is not None else None
    if type(head) is not torch.nn.Linear or any(q.requires_grad for q in head.parameters()):
        return None
    cfg = getattr(base, "config", None)
    for name in _LOGIT_POSTPROCESS:
        value = getattr(cfg, name, None)
        if value is not None and value != 1 and value != 1.0:
            return None
    if not any(child is head for child in base.children()):
        return None
    return head


@contextlib.contextmanager
def _hidden_states_out(model: torch.nn.Module, head: Optional[torch.nn.Module]):
    """While inside, the causal LM's head is an identity: ``out.logits`` are hidden states."""
    if head is None:
        yield
        return
    base = _causal_lm(model)
    name = next(n for n, child in base.named_children() if child is head)
    setattr(base, name, torch.nn.Identity())
    try:
        yield
    finally:
        setattr(base, name, head)


class _HeadLogProb(torch.autograd.Function):
    """log_softmax(head(h) / T)[target] for (M, H) hidden states, ``chunk`` tokens at a time.

    The gradient with respect to h of one token's log-prob is (W[target] - softmax(z) W) / T;
    it is taken in the forward, slab by slab, and kept as one (M, H) tensor, so the backward
    is a product with the incoming per-token gradient: the (M, V) logits are never saved nor
    recomputed. The head is frozen (``head_for_chunks``): no gradient for W or the bias."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, with_entropy, chunk):
        need_grad = ctx.needs_input_grad[0]
        lps, ents, jacs = [], [], []
        for s in range(0, hidden.shape[0], chunk):
            h, t = hidden[s : s + chunk], targets[s : s + chunk]
            z = torch.nn.functional.linear(h, weight, bias).float()
            if temperature != 1.0:
                z = z / temperature
            lse = torch.logsumexp(z, dim=-1)
            lps.append(z.gather(-1, t.unsqueeze(-1)).squeeze(-1) - lse)
            if need_grad or with_entropy:
                prob = torch.exp(z - lse.unsqueeze(-1))
                if with_entropy:
                    ents.append(lse - (prob * z).sum(-1))
                if need_grad:
                    expected = (prob.to(weight.dtype) @ weight).float()
                    jac = weight[t].float() - expected
                    jacs.append(jac / temperature if temperature != 1.0 else jac)
                del prob
            del z
        lp = torch.cat(lps) if lps else hidden.new_zeros(0, dtype=torch.float32)
        ent = torch.cat(ents) if ents else lp.new_zeros(0)
        ctx.mark_non_differentiable(ent)
        if need_grad:
            ctx.save_for_backward(
                torch.cat(jacs) if jacs else hidden.new_zeros(hidden.shape, dtype=torch.float32)
            )
            ctx.hidden_dtype = hidden.dtype
        return lp, ent

    @staticmethod
    def backward(ctx, grad_lp, grad_ent):
        (jac,) = ctx.saved_tensors
        grad_hidden = (grad_lp.unsqueeze(-1) * jac).to(ctx.hidden_dtype)
        return grad_hidden, None, None, None, None, None, None


# --------------------------------------------------------------------------- mixture of experts


def routed_layout(p: Packed, routed: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """The sampler's experts of a collated micro-batch (``routed`` (B, P + C, L, k) laid out like
    ``attention`` (B, P + C): left-padded prompt, right-padded completion; rl_reason.moe.layout)
    moved onto the packed row: (N, L, k). A token at position ``pos`` of row r sits in column
    P - len(prompt_r) + pos of the padded layout, prompt and completion alike; a tree layout's
    shared prompt takes the experts its group's first sequence was sampled with."""
    P = attention.shape[1] - p.shape[1]
    prompt_len = attention[:, :P].sum(-1).to(routed.device)
    row = torch.where(p.seq >= 0, p.seq, p.group).to(routed.device)
    col = P - prompt_len[row] + p.position_ids[0].to(routed.device)
    return routed[row, col]


def moe_logprobs(routing, model, t, alg, temperature: float, with_entropy: bool, measure: bool):
    """``completion_logprobs`` of a packed micro-batch on a mixture-of-experts base: the
    sampler's experts replayed on the packed row (``alg.routing_replay``), routing statistics
    over its tokens (``measure``) and, in a training forward with ``alg.router_aux_coef``, the
    load-balancing loss over its tokens kept for ``routing.take_aux`` (as
    ``rl_reason.moe.Routing.logprobs`` does for padded rows). In the tree layout a shared
    prompt's tokens count once in the statistics and the balancing loss."""
    p = t.packed
    keep = getattr(alg, "router_aux_coef", 0.0) > 0 and torch.is_grad_enabled()
    replay = bool(getattr(alg, "routing_replay", False))
    sampled = None
    if t.routed_experts is not None:
        sampled = routed_layout(p, t.routed_experts, t.attention_mask).unsqueeze(0)  # (1, N, L, k)
    valid = torch.ones_like(p.input_ids)
    with routing.forward(sampled, valid, replay=replay, measure=measure, keep_logits=keep) as calls:
        out = completion_logprobs(model, p, temperature, with_entropy)
    routing._aux = routing.aux_loss(calls, valid) if keep else None
    return out
