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


def completion_logprobs(
    model: torch.nn.Module,
    p: Packed,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-token log-probs of the packed completions, in the micro-batch's (B, C) layout
    (0 on padding), and their entropies when asked."""
    from rl_reason.algorithms.losses import entropy_from_logits, selective_log_softmax

    out = model(
        input_ids=p.input_ids,
        attention_mask=attention_mask(p, model),
        position_ids=p.position_ids,
        logits_to_keep=p.logit_index,
        use_cache=False,
    )
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
