"""One update: the frozen pass, token advantages, the critic step and the actor step.

Each part is a function of the micro-batches, the models and a ``Dist`` (rl_reason.distributed;
``LocalDist`` in one process), so each can be run and tested without a Trainer. ``update``
calls them in order; the algorithm enters only through its ``AlgorithmSpec``.

Losses are normalised by counts over the *global* batch (every micro-batch on every rank), so
micro-batch gradients add up to the one-batch gradient whatever the split.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from contextlib import nullcontext
from typing import Any, Optional, Sequence

import torch

from rl_reason import algorithms
from rl_reason.algorithms import offpolicy
from rl_reason.algorithms.registry import TokenInputs, kl_in_reward, loss_aggregation
from rl_reason.batching import MicroBatch, micro_batches, train_batch
from rl_reason.distributed import Dist


@dataclasses.dataclass
class Learner:
    """What an update changes and reads: models, optimizers, schedules, the run's config."""

    cfg: Any  # RunConfig
    dist: Dist
    policy: Any  # rl_reason.policy.Policy
    train_model: torch.nn.Module  # the policy's model, DDP-wrapped in a multi-process run
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    critic: Any = None  # rl_reason.critic.Critic
    critic_optimizer: Optional[torch.optim.Optimizer] = None
    critic_scheduler: Any = None
    share_prompt: bool = False
    packing: Optional[str] = None  # rl_reason.packing layout of the micro-batches; None: padded
    micro_batch_tokens: Optional[int] = None  # halved after an out-of-memory (rl_reason.oom)
    teacher: Any = None  # rl_reason.teacher.Teacher, for algorithms with needs_teacher (distill)

    @property
    def spec(self):
        return algorithms.get(self.cfg.algorithm.name)


@dataclasses.dataclass(frozen=True)
class Counts:
    """Global loss normalisers, and this rank's number of completion tokens."""

    tokens: float  # loss tokens, all ranks
    seqs: float  # sequences with a loss token, all ranks
    valid: float  # completion tokens, all ranks
    valid_local: float


@dataclasses.dataclass
class Frozen:
    """Per micro-batch, computed once before any weight changes."""

    old_lp: list[Optional[torch.Tensor]]
    ref_lp: list[Optional[torch.Tensor]]
    old_v: list[Optional[torch.Tensor]]
    teacher_lp: list[Optional[torch.Tensor]] = dataclasses.field(default_factory=list)


def advance(scheduler) -> None:
    """Step an LR schedule on a step without an optimizer step (skipped batch, warm-up), so
    the learning rate at step k does not depend on which steps were skipped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        scheduler.step()


def logprobs(lr: Learner, model, t: MicroBatch, with_entropy: bool = False, measure: bool = False):
    """Completion log-probs of a micro-batch, sharing each prompt when it can."""
    temp = lr.cfg.rollout.temperature
    routing = getattr(lr.policy, "routing", None)
    if routing is not None:  # an MoE base: routing replay and its statistics (rl_reason/moe.py)
        if t.packed is not None:
            from rl_reason import packing

            return packing.moe_logprobs(routing, model, t, lr.cfg.algorithm, temp, with_entropy, measure)
        return routing.logprobs(lr.policy, model, t, lr.cfg.algorithm, temp, with_entropy, measure)
    if t.packed is not None:
        from rl_reason import packing

        return packing.completion_logprobs(model, t.packed, temp, with_entropy)
    if lr.share_prompt and len(t.prompt_ids) < len(t.input_ids):
        return lr.policy.completion_logprobs_shared_prompt(
            model,
            t.prompt_ids,
            t.prompt_mask,
            t.row_prompt,
            t.completion_ids,
            t.completion_mask,
            temp,
            with_entropy,
        )
    return lr.policy.completion_logprobs(
        model, t.input_ids, t.attention_mask, t.completion_len, temp, with_entropy
    )


def global_counts(mbs: Sequence[MicroBatch], loss_masks: Sequence[Sequence[float]], dist: Dist) -> Counts:
    tokens_local = sum(sum(m) for m in loss_masks)
    seqs_local = sum(1 for m in loss_masks if sum(m) > 0)
    valid_local = float(sum(float(t.valid.sum()) for t in mbs))
    tokens, seqs, valid = dist.sum([tokens_local, seqs_local, valid_local])
    return Counts(max(tokens, 1.0), max(seqs, 1.0), max(valid, 1.0), valid_local)


def frozen_pass(lr: Learner, mbs: Sequence[MicroBatch], *, need_old: bool, need_ref: bool) -> Frozen:
    """Pre-update log-probs, the reference's (adapter off) and the critic's old values."""
    n = len(mbs)
    out = Frozen([None] * n, [None] * n, [None] * n, [None] * n)
    if lr.teacher is not None:  # distill: the teacher scores the sampled tokens (no gradients)
        for k, t in enumerate(mbs):
            out.teacher_lp[k] = lr.teacher.logprobs(lr, t)
    if not (need_old or need_ref or lr.critic is not None):
        return out
    with torch.no_grad():
        for k, t in enumerate(mbs):
            if need_old:
                out.old_lp[k] = logprobs(lr, lr.policy.model, t)[0]
            if need_ref:
                with lr.policy.reference():
                    out.ref_lp[k] = logprobs(lr, lr.policy.model, t)[0]
            if lr.critic is not None:
                with lr.critic.active():
                    out.old_v[k] = lr.critic.values(t.input_ids, t.attention_mask, t.completion_len)
    return out


def token_advantages(
    spec, alg, mbs: list[MicroBatch], frozen: Frozen, dist: Dist, n_rollouts: int, rows: Sequence[int]
):
    """Per-token advantages through the algorithm's registered function.

    Returns the micro-batches with (B, T) advantages, the critic's targets per micro-batch and
    each rollout's mean token advantage (for rollouts.jsonl). Whitening, where the algorithm
    does it, is over every token of the global batch.
    """
    valid = [t.valid.cpu() for t in mbs]
    kl = None
    if kl_in_reward(alg):
        kl = [
            algorithms.kl_estimate(o.cpu(), r.cpu(), alg.kl_estimator)
            for o, r in zip(frozen.old_lp, frozen.ref_lp)
        ]
        # tool output is not the policy's: no KL on it (multi-turn)
        kl = [k * t.model.cpu() if t.model is not None else k for k, t in zip(kl, mbs)]
    values = [v.cpu() if v is not None else None for v in frozen.old_v]
    x = TokenInputs(
        [t.advantages.cpu() for t in mbs],
        valid,
        kl,
        values,
        alg,
        sum_fn=dist.sum,
        model=[t.model.cpu() if t.model is not None else None for t in mbs],
    )
    if spec.needs_old_logprobs or spec.needs_teacher:
        x = dataclasses.replace(
            x,
            old_lp=[o.cpu() if o is not None else None for o in frozen.old_lp],
            teacher_lp=[o.cpu() if o is not None else None for o in frozen.teacher_lp] or None,
        )
    adv_list, returns = spec.token_advantages(x)
    returns = [r.to(t.valid.device) if r is not None else None for r, t in zip(returns, mbs)]
    seq_adv = torch.zeros(n_rollouts)
    for a, t, v in zip(adv_list, mbs, valid):
        if t.padding:
            continue
        per_seq = (a * v).sum(-1) / v.sum(-1).clamp(min=1.0)
        for row, j in enumerate(t.index):
            seq_adv[rows[j]] = per_seq[row]
    device = mbs[0].valid.device
    # a placeholder row has valid = 0, so its advantage is 0
    mbs = [dataclasses.replace(t, advantages=a.to(device)) for t, a in zip(mbs, adv_list)]
    return mbs, returns, seq_adv


def optimizer_step(params, optimizer, max_grad_norm: float, dist: Dist, *, sum_grads: bool) -> float:
    """Sum gradients over ranks where DDP does not, clip, step. Returns the gradient norm
    before clipping (a non-finite one can be caught here, before the step)."""
    if sum_grads:
        dist.sum_grads(params)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    if math.isfinite(grad_norm):  # never step on a NaN/inf gradient (rl_reason/guards.py)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def critic_step(lr: Learner, mbs: Sequence[MicroBatch], old_v, returns, counts: Counts) -> dict[str, float]:
    """Value regression on the returns, clipped around the old values; its own optimizer."""
    cfg = lr.cfg
    clip = cfg.critic.value_clip or None
    params = lr.critic.parameters()
    loss_sum = clip_sum = 0.0
    grad_norm = 0.0
    for epoch in range(cfg.critic.epochs):
        for k, t in enumerate(mbs):
            with lr.critic.active():
                values = lr.critic.values(t.input_ids, t.attention_mask, t.completion_len)
                loss, stats = algorithms.value_loss(
                    values,
                    old_v[k],
                    returns[k],
                    t.valid,
                    clip=clip,
                    agg="token_mean",
                    num_tokens=counts.valid,
                )
                (cfg.critic.value_coef * loss).backward()
            if epoch == 0:
                loss_sum += float(loss.detach())
                clip_sum += float(stats["value_clip_frac"]) * float(t.valid.sum())
        grad_norm = optimizer_step(
            params, lr.critic_optimizer, cfg.train.max_grad_norm, lr.dist, sum_grads=True
        )
        if not math.isfinite(grad_norm):
            break  # the step was not taken; the guard counts it as a bad step
    advance(lr.critic_scheduler)  # the schedule moves on even when the step was skipped
    local = max(counts.valid_local, 1.0)
    values_sum = sum(float((v * t.valid).sum()) for v, t in zip(old_v, mbs))
    returns_sum = sum(float((r * t.valid).sum()) for r, t in zip(returns, mbs))
    return {
        # per-token mean over this rank's tokens (the gradient used the global count)
        "critic/value_loss": loss_sum * counts.valid / local,
        "critic/value_clip_frac": clip_sum / local,
        "critic/values_mean": values_sum / local,
        "critic/returns_mean": returns_sum / local,
        "critic/grad_norm": grad_norm,
        "critic/lr": lr.critic_scheduler.get_last_lr()[0],
        **({"guard/nonfinite_grad": 1.0} if not math.isfinite(grad_norm) else {}),
    }


class _Sums:
    """Epoch-0 statistics of the actor step, weighted sums until ``means``."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0.0
        self.diff_max = 0.0
        self.is_max = 0.0
        self.ratio_max = 0.0
        self.sampled = 0.0  # sampled tokens (tool output left out)

    def add(self, key: str, value: float, w: float = 1.0) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * w


def actor_loss(lr: Learner, t: MicroBatch, k: int, frozen: Frozen, counts: Counts, epoch: int, acc: _Sums):
    """One micro-batch's actor loss (the recipe's registered policy loss, optional KL term); its stats into ``acc``."""
    cfg, alg = lr.cfg, lr.cfg.algorithm
    agg, norm_len = loss_aggregation(alg), cfg.rollout.max_new_tokens
    need_ref = alg.kl_coef > 0
    # measure=True: MoE routing statistics over every update forward (later epochs see a moved policy)
    logp, entropy = logprobs(lr, lr.train_model, t, with_entropy=(epoch == 0), measure=True)
    old = frozen.old_lp[k] if frozen.old_lp[k] is not None else logp.detach()
    # off-policy correction against the sampler's own log-probs (an older adapter with
    # rollout.max_staleness >= 1, or vLLM): rl_reason/algorithms/offpolicy.py
    corr = offpolicy.correction(alg, old, t.sample_logp, t.valid, cfg.rollout.max_staleness)
    is_w = corr.weights if corr is not None else None
    loss, stats = algorithms.policy_loss(
        logp,
        old,
        t.advantages,
        t.mask,
        clip_low=alg.clip_low,
        clip_high=alg.clip_high,
        agg=agg,
        num_tokens=counts.tokens,
        num_seqs=counts.seqs,
        norm_len=norm_len,
        importance_weights=is_w,
        kind=alg.policy_loss,
        params=algorithms.LossParams(alg.clip_low, alg.clip_high, alg.sapo_tau_pos, alg.sapo_tau_neg),
    )
    if need_ref and not kl_in_reward(alg):
        kl = algorithms.kl_estimate(logp, frozen.ref_lp[k], alg.kl_estimator)
        kl_loss = algorithms.aggregate(
            kl, t.mask, agg, num_tokens=counts.tokens, num_seqs=counts.seqs, norm_len=norm_len
        )
        loss = loss + alg.kl_coef * kl_loss
    aux = lr.policy.routing.take_aux() if getattr(lr.policy, "routing", None) is not None else None
    if aux is not None:  # MoE load balancing, weighted by this micro-batch's share of the tokens
        loss = loss + alg.router_aux_coef * aux * float(t.valid.sum()) / counts.valid
    if epoch == 0:
        tok = float(t.mask.sum())
        acc.weight += tok
        acc.add("policy/clip_frac", float(stats["clip_frac"]), tok)
        if entropy is not None:
            acc.add("policy/entropy", float((entropy * t.mask).sum()))
        if need_ref:
            kl_tok = algorithms.kl_estimate(logp.detach(), frozen.ref_lp[k], alg.kl_estimator)
            acc.add("policy/kl", float((kl_tok * t.mask).sum()))
        if t.sample_logp is not None:
            sampled = t.valid * t.model if t.model is not None else t.valid  # tools report none
            diff = (logp.detach() - t.sample_logp).abs() * sampled
            acc.add("rollout/logprob_diff_mean", float(diff.sum()))
            acc.sampled += float(sampled.sum())
            acc.diff_max = max(acc.diff_max, float(diff.max()) if diff.numel() else 0.0)
            # the raw ratio over loss tokens, logged with or without a correction: how far off
            # the sampler's policy the batch is (rollout.max_staleness), and what a cap would cut
            ratio = torch.exp(offpolicy.log_ratio(old, t.sample_logp))
            acc.add("policy/is_ratio_mean", float((ratio * t.mask).sum()))
            on = t.mask > 0
            if on.any():
                acc.ratio_max = max(acc.ratio_max, float(ratio[on].max()))
            if is_w is not None:
                acc.add("policy/is_weight_mean", float((is_w * t.mask).sum()))
                acc.add("policy/is_clip_frac", float((corr.clipped * t.mask).sum()))
                acc.add("policy/is_mask_frac", float((corr.masked * t.mask).sum()))
                if on.any():
                    acc.is_max = max(acc.is_max, float(is_w[on].max()))
    return loss


def actor_step(lr: Learner, mbs: Sequence[MicroBatch], frozen: Frozen, counts: Counts) -> dict[str, float]:
    """``algorithm.epochs`` passes over the micro-batches, one optimizer step per pass."""
    dist = lr.dist
    acc = _Sums()
    grad_norm = 0.0
    lr.train_model.train()
    for epoch in range(lr.cfg.algorithm.epochs):
        for k, t in enumerate(mbs):
            sync = dist.world == 1 or dist.sharded or k == len(mbs) - 1
            with nullcontext() if sync else lr.train_model.no_sync():
                loss = actor_loss(lr, t, k, frozen, counts, epoch, acc)
                # DDP averages gradients over ranks; the loss is already normalised by global
                # counts, so scale by world size to get the global sum back. Sharded: the
                # adapter is outside FSDP and its gradients are summed in optimizer_step.
                (loss if dist.sharded else loss * dist.world).backward()
        grad_norm = optimizer_step(
            lr.params, lr.optimizer, lr.cfg.train.max_grad_norm, dist, sum_grads=dist.sharded
        )
        if not math.isfinite(grad_norm):
            break  # the step was not taken; the guard counts it as a bad step
    advance(lr.scheduler)  # the schedule moves on even when the step was skipped
    out = {key: val / max(acc.weight, 1.0) for key, val in acc.sums.items()}
    if "rollout/logprob_diff_mean" in out:  # over every sampled token, not only loss tokens
        out["rollout/logprob_diff_mean"] = acc.sums["rollout/logprob_diff_mean"] / max(acc.sampled, 1.0)
        out["rollout/logprob_diff_max"] = acc.diff_max
    if "policy/is_weight_mean" in out:
        out["policy/is_weight_max"] = acc.is_max
    if "policy/is_ratio_mean" in out:
        out["policy/is_ratio_max"] = acc.ratio_max
    out["policy/grad_norm"] = grad_norm
    if getattr(lr.policy, "routing", None) is not None:
        out.update(lr.policy.routing.pop_metrics())
    if not math.isfinite(grad_norm):
        out["guard/nonfinite_grad"] = 1.0
    out["policy/micro_batches"] = float(sum(not t.padding for t in mbs))  # padding ones left out
    return out


def update(lr: Learner, rollouts, advantages: torch.Tensor, keep: torch.Tensor, step: int):
    """Critic (when the algorithm has one) then actor on the kept sequences.

    ``advantages`` are per-sequence advantages, or the rewards for per-token algorithms, whose
    advantages are built here. Returns the metrics and, for per-token algorithms, each
    sequence's mean advantage (for rollouts.jsonl). Out of memory, the step runs again once
    with half the micro-batch (rl_reason.oom).
    """
    from rl_reason import oom

    budget = lr.micro_batch_tokens or lr.cfg.train.micro_batch_tokens
    return oom.with_backoff(lr, lambda b: update_with_budget(lr, rollouts, advantages, keep, step, b), budget)


def update_with_budget(
    lr: Learner, rollouts, advantages: torch.Tensor, keep: torch.Tensor, step: int, budget: int
):
    """``update`` with micro-batches of ``budget`` tokens."""
    cfg, dist, spec, alg = lr.cfg, lr.dist, lr.spec, lr.cfg.algorithm
    if dist.sum([int(keep.sum())])[0] == 0:  # nothing to learn from this step
        advance(lr.scheduler)
        if lr.critic_scheduler is not None:
            advance(lr.critic_scheduler)
        return {"policy/skipped": 1.0}, None
    batch = train_batch(rollouts, advantages, keep, mask_truncated=alg.mask_truncated)
    mbs = micro_batches(batch, budget, lr.policy.tokenizer.pad_token_id, dist, lr.packing)
    counts = global_counts(mbs, batch.loss_masks, dist)
    need_old = alg.epochs > 1 or kl_in_reward(alg) or spec.needs_old_logprobs
    frozen = frozen_pass(lr, mbs, need_old=need_old, need_ref=alg.kl_coef > 0)
    out: dict[str, float] = {}
    if lr.teacher is not None:  # distill: reverse KL to the teacher on the sampled tokens
        from rl_reason.algorithms.distill import reverse_kl_tokens

        num = sum(
            float((reverse_kl_tokens(o, tl) * t.valid).sum())
            for o, tl, t in zip(frozen.old_lp, frozen.teacher_lp, mbs)
        )
        out["distill/reverse_kl"] = num / max(counts.valid_local, 1.0)
    seq_adv, returns = None, [None] * len(mbs)
    if spec.level == "token":
        mbs, returns, seq_adv = token_advantages(spec, alg, mbs, frozen, dist, len(rollouts), batch.rows)
    if lr.critic is not None:
        out.update(critic_step(lr, mbs, frozen.old_v, returns, counts))
        if step <= cfg.critic.warmup_steps:  # critic warm-up: values settle before they steer the actor
            advance(lr.scheduler)
            out["policy/warmup_skip"] = 1.0
            return out, seq_adv
    out.update(actor_step(lr, mbs, frozen, counts))
    return out, seq_adv
