"""Rollouts with transformers' ``generate`` on the trainer's own model (CPU or one GPU).

The engine shares the policy's model, so ``sync_weights`` has nothing to copy: the next
``generate`` samples from the adapter as it is now. Sampling runs with the adapter folded
into the base weights (``Policy.merged_for_generation``), which is exact and much faster on
the CPU than unmerged LoRA, and finished rows leave the batch as they end (``_sample``).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch

from rl_reason.distributed import Lockstep
from rl_reason.errors import EngineError
from rl_reason.rollout import Rollout, SamplingParams


class HFEngine:
    """``lockstep``: under FSDP (rl_reason.sharding) every forward is a collective, so each
    rank must run as many forwards as the others. Given a ``Lockstep`` (rl_reason.distributed;
    the trainer's Dist), the engine runs the same number of
    batches on every rank (empty ones where a rank has fewer prompts) and decodes until every
    rank's rows are done. Merging is off then: the base weights are shards."""

    def __init__(
        self,
        policy,
        batch_size: int = 64,
        merge_for_generation: bool = True,
        lockstep: Optional[Lockstep] = None,
    ):
        self.policy = policy
        self.batch_size = batch_size
        self.lockstep = lockstep
        self.merge = merge_for_generation and lockstep is None

    def sync_weights(self) -> None:
        """Nothing to do: generation reads the live adapter."""

    def close(self) -> None:
        pass

    def generate(self, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingParams) -> list[Rollout]:
        jobs = [(i, list(p)) for i, p in enumerate(prompts) for _ in range(n)]
        out: list[Rollout] = []
        model = self.policy.model
        was_training = model.training
        model.eval()
        ctx = self.policy.merged_for_generation() if self.merge else contextlib.nullcontext()
        n_batches = -(-len(jobs) // self.batch_size)
        if self.lockstep is not None:
            n_batches = int(self.lockstep.max(n_batches))
        # FSDP keeps its gathered weights between forwards; tensors made under inference_mode
        # cannot be written by the next training forward, so sharded runs use no_grad
        grad_off = torch.inference_mode() if self.lockstep is None else torch.no_grad()
        try:
            with ctx, grad_off:
                for b in range(n_batches):
                    chunk = jobs[b * self.batch_size : (b + 1) * self.batch_size]
                    if chunk:
                        out.extend(self._generate_batch(chunk, sampling))
                    else:  # this rank has no prompts left but must join the others' forwards
                        self._generate_batch(
                            [(-1, [self.policy.tokenizer.pad_token_id])], sampling, idle=True
                        )
        except torch.OutOfMemoryError as exc:  # pragma: no cover - needs a GPU
            raise EngineError(
                "out of memory while sampling; lower rollout.generation_batch_size or rollout.max_new_tokens"
            ) from exc
        finally:
            model.train(was_training)
            if self.lockstep is not None:
                from rl_reason.sharding import reshard

                reshard(model)  # see reshard(): no unit may stay gathered on some ranks only
        return out

    def continue_rows(self, seqs: Sequence[Sequence[int]], sampling: SamplingParams):
        """One round of the multi-turn driver (rl_reason.rollout.multiturn): each sequence of
        exact token ids continued until EOS (``"eos"``), a stop string (``"stop"``) or the
        budget (``"length"``); returns (ids, logprobs, how) per sequence."""
        from rl_reason.rollout.multiturn import round_results

        return round_results(
            self.generate(seqs, 1, sampling), _eos_ids(self.policy.model, self.policy.tokenizer)
        )

    def _generate_batch(self, jobs, sampling: SamplingParams, idle: bool = False) -> list[Rollout]:
        tok = self.policy.tokenizer
        eos_ids = _eos_ids(self.policy.model, tok)
        all_done = self.lockstep.all_true if self.lockstep is not None else None
        # an MoE base records the experts of every token (rl_reason/moe.py)
        routing = None if idle else getattr(self.policy, "routing", None)
        with routing.sampling(len(jobs)) if routing is not None else contextlib.nullcontext():
            sampled = _sample(
                self.policy.model,
                [p for _, p in jobs],
                sampling,
                eos_ids,
                tok.pad_token_id,
                self.policy.device,
                tok if sampling.stop else None,
                all_done=all_done,
                idle=idle,
                routing=routing,
            )
        if idle:
            return []
        results = []
        for (prompt_index, prompt), (ids, logprobs, finish) in zip(jobs, sampled):
            text = tok.decode(ids, skip_special_tokens=True)
            if sampling.stop:
                ids, text, stopped = _cut_at_stop(tok, ids, text, sampling.stop)
                logprobs = logprobs[: len(ids)]
                if stopped:
                    finish = "stop"
            routed = routing.sequence(len(results), len(prompt), len(ids)) if routing is not None else None
            results.append(
                Rollout(
                    prompt_index=prompt_index,
                    prompt_ids=prompt,
                    completion_ids=ids,
                    completion_text=text,
                    sample_logprobs=logprobs,
                    finish_reason=finish,
                    routed_experts=routed,
                )
            )
        return results


def _sample(
    model,
    prompts,
    sampling: SamplingParams,
    eos_ids,
    pad_id,
    device,
    stop_tok=None,
    all_done=None,
    idle: bool = False,
    routing=None,
):
    """Sample completions for left-padded ``prompts``; returns (ids, logprobs, finish) per row.

    ``all_done(flag)`` (sharded runs) is True once every rank's flag is: decoding goes on
    until then, on rows already finished if need be. ``idle`` rows count as finished.

    Why not ``model.generate``: it keeps every row in the batch until the longest one ends,
    so a row that hit EOS after 8 tokens still runs the whole model for the other 56 steps.
    Completion lengths in RL vary widely (measured on the demo model, 64 samples of 64 new
    tokens: lengths 3..64, mean 37), so here finished rows are dropped from the batch and
    from the KV cache (``Cache.reorder_cache``) as they end. The rest follows generate:
    positions from the attention mask, transformers' own temperature / top-k / top-p
    warpers, and log-probs of the processed distribution the token was drawn from.

    ``routing`` (an MoE base's rl_reason.moe.Routing): record the experts of every token fed.
    """
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList()
    if not sampling.greedy:
        if sampling.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k:
            warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            warpers.append(TopPLogitsWarper(sampling.top_p))
    rows = len(prompts)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    for row, p in enumerate(prompts):
        input_ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[row, width - len(p) :] = 1
    step_input, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    stops = tuple(sampling.stop) if stop_tok is not None else ()
    tail_tokens = max((len(s) for s in stops), default=0) + 4

    cache = None  # the model makes the right cache type on the first call
    live = torch.arange(rows, device=device)  # original row of each batch row
    done = torch.full((rows,), idle, dtype=torch.bool, device=device)  # per batch row
    out_ids: list[list[int]] = [[] for _ in range(rows)]
    out_lp: list[list[float]] = [[] for _ in range(rows)]
    finish = ["length"] * rows
    for _ in range(sampling.max_new_tokens):
        out = model(
            input_ids=step_input,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if routing is not None:  # file this forward's experts under their batch rows
            routing.step(live.tolist(), step_input.shape[1])
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        scores = warpers(step_input, logits) if len(warpers) else logits
        if sampling.greedy:
            nxt = scores.argmax(-1)
        elif bool(done.all()):
            # every row here has finished and this rank only joins the other ranks' forwards
            # (FSDP): draw nothing, so its RNG stream stays what it is in a one-process or DDP
            # run, which would have stopped here (the next round or step samples the same)
            nxt = scores.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(-1)
        lp = (scores.gather(-1, nxt[:, None]).squeeze(-1) - torch.logsumexp(scores, dim=-1)).tolist()
        ended = torch.isin(nxt, eos).tolist()
        for b, (orig, t, was_done) in enumerate(zip(live.tolist(), nxt.tolist(), done.tolist())):
            if was_done:
                continue
            out_ids[orig].append(t)
            out_lp[orig].append(lp[b])
            if ended[b]:
                finish[orig] = "stop"
            elif stops:
                tail = stop_tok.decode(out_ids[orig][-tail_tokens:], skip_special_tokens=True)
                ended[b] = any(s in tail for s in stops)
        done |= torch.tensor(ended, dtype=torch.bool, device=device)
        local_done = bool(done.all())
        if all_done(local_done) if all_done is not None else local_done:
            break
        # drop finished rows once they are an eighth of the batch: each drop copies the
        # cache once, about the cost of one decode step's cache append
        if not local_done and int(done.sum()) * 8 >= len(live):
            keep = (~done).nonzero().squeeze(-1)
            cache.reorder_cache(keep)
            live, done, nxt = live[keep], done[keep], nxt[keep]
            attention, positions = attention[keep], positions[keep]
        attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=-1)
        positions = positions[:, -1:] + 1
        step_input = nxt[:, None]
    return [(out_ids[r], out_lp[r], finish[r]) for r in range(rows)]


def _eos_ids(model, tok) -> list[int]:
    ids = set()
    cfg_eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif cfg_eos:
        ids.update(cfg_eos)
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return sorted(ids)


def _cut_at_stop(tok, ids: list[int], text: str, stops: Sequence[str]):
    """Cut the completion right after the first stop string, keeping ids and text aligned."""
    hits = [text.find(s) + len(s) for s in stops if s in text]
    if not hits:
        return ids, text, False
    end = min(hits)
    # keep the shortest token prefix whose decoding contains the stop string
    for k in range(1, len(ids) + 1):
        if len(tok.decode(ids[:k], skip_special_tokens=True)) >= end:
            return ids[:k], text[:end], True
    return ids, text[:end], True
