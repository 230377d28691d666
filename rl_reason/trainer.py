"""The training loop: rollout -> score -> advantage -> update -> sync -> log -> checkpoint.

One explicit loop for every algorithm; GRPO, Dr.GRPO, RLOO, REINFORCE++ and PPO differ only by
config and by the pure functions in algorithms.py. Group algorithms get one advantage per
sequence; REINFORCE++ and PPO get one per token (PPO from its critic, critic.py). Under ``torchrun``/``accelerate launch`` each rank takes a
slice of every step's prompts (a prompt's whole group stays on one rank), gradients of the
LoRA parameters are averaged across ranks, and metrics are reduced before logging.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shlex
import shutil
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from rl_reason import algorithms, checkpoint, guards
from rl_reason.config import RunConfig, config_hash, dump_yaml, to_dict
from rl_reason.errors import CheckpointError, ConfigError, RLReasonError, RunDirError
from rl_reason.rollout import Rollout, SamplingParams

log = logging.getLogger("rl_reason")

STATE_FILE = "trainer_state.pt"
CRITIC_FILE = "critic.pt"  # PPO: critic adapter + value head


# --------------------------------------------------------------------------- set-up helpers


def loss_aggregation(cfg: RunConfig) -> str:
    if cfg.algorithm.loss_agg != "auto":
        return cfg.algorithm.loss_agg
    return "seq_mean_token_sum_norm" if cfg.algorithm.name == "dr_grpo" else "token_mean"


GROUP_ALGORITHMS = ("grpo", "dr_grpo", "rloo")
TOKEN_ALGORITHMS = ("ppo", "reinforce_pp")


def kl_in_reward(cfg: RunConfig) -> bool:
    """REINFORCE++ always folds the KL penalty into the reward; PPO when asked to."""
    alg = cfg.algorithm
    return alg.kl_coef > 0 and (alg.name == "reinforce_pp" or (alg.name == "ppo" and alg.kl_in_reward))


def _advance(scheduler) -> None:
    """Step an LR schedule on a step without an optimizer step (skipped batch, warm-up), so
    the learning rate at step k does not depend on which steps were skipped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        scheduler.step()


def step_seed(seed: int, step: int, rank: int) -> int:
    """Sampling seed of one step on one rank: a resumed run draws exactly what it would have."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_scheduler(optimizer, cfg: RunConfig):
    total, warm = cfg.train.steps, cfg.train.warmup_steps
    kind = cfg.train.lr_schedule

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StopFlag:
    """First SIGINT/SIGTERM: finish the current step, checkpoint, exit 0. Second: stop now."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            print("\nsecond signal: stopping now without a checkpoint", file=sys.stderr, flush=True)
            os._exit(130)
        self.requested = True
        print(
            f"\n{signal.Signals(signum).name}: finishing this step, then checkpointing "
            "(signal again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


# --------------------------------------------------------------------------- distributed


class Dist:
    """Thin wrapper over accelerate's state so one process and many share code paths."""

    def __init__(self, device_name: str, fsdp: bool = False):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType, parse_flag_from_env

        if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
            # LoRA's gradients and optimizer state are a few MB: ZeRO has nothing to shard
            # there, and the frozen base is what train.fsdp shards
            raise ConfigError(
                "DeepSpeed is not supported: launch with recipes/accelerate/ddp.yaml, or with "
                "recipes/accelerate/fsdp.yaml (train.fsdp=true) to shard the frozen base"
            )
        want_cpu = device_name == "cpu" or (device_name == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=want_cpu)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        # FSDP through accelerate's config, or asked for by the recipe (torchrun, CPU/gloo)
        asked = fsdp or self.accelerator.distributed_type == DistributedType.FSDP
        if asked and parse_flag_from_env("FSDP_CPU_RAM_EFFICIENT_LOADING"):
            # transformers then loads empty weights on every rank but the first and expects
            # accelerate's broadcast, which rl_reason.sharding does not do
            raise ConfigError(
                "fsdp_cpu_ram_efficient_loading must be false for rl-reason: set it so in the "
                "accelerate config (recipes/accelerate/fsdp.yaml has it off)"
            )
        self.sharded = asked and self.world > 1
        if asked and self.world == 1:
            log.warning("train.fsdp has no effect with one process; the base is not sharded")

    def sum(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())

    def gather_objects(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks, for parameters DDP does not manage (the critic). Losses
        are normalised by global counts, so the sum is the full-batch gradient."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        # one all-reduce over a flat copy, not one per matrix (hundreds of small LoRA matrices)
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` is True on every rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def reduce_metrics(dist: Dist, metrics: dict[str, float]) -> dict[str, float]:
    """Average metrics over ranks (each rank holds the same number of samples); sum counts."""
    if dist.world == 1:
        return metrics
    keys = sorted(metrics)
    gathered = dist.gather_objects([metrics.get(k) for k in keys])
    out = {}
    for i, k in enumerate(keys):
        vals = [g[i] for g in gathered if g[i] is not None and not (isinstance(g[i], float) and math.isnan(g[i]))]
        if not vals:
            continue
        if k.endswith(("/errors", "/timeouts", "/stdout_lines")) or k.startswith("count/"):
            out[k] = float(sum(vals))
        elif k.startswith("time/") or k.endswith("_max"):
            out[k] = float(max(vals))
        else:
            out[k] = float(sum(vals) / len(vals))
    return out


# --------------------------------------------------------------------------- batches


@dataclasses.dataclass
class TrainBatch:
    """Sequences selected for the update, with everything the loss needs."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    advantages: torch.Tensor  # (N,) group advantages, or rewards for token-level algorithms
    loss_masks: list[list[float]]  # per completion token: 1 = in the loss
    sample_logprobs: Optional[list[list[float]]] = None  # the sampler's, when it reported them
    real: bool = True  # False: a placeholder row on a rank with nothing to learn from

    def __len__(self) -> int:
        return len(self.prompt_ids)


def collate(batch: TrainBatch, idx: Sequence[int], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Rows of [left-padded prompt | right-padded completion] for a micro-batch."""
    P = max(len(batch.prompt_ids[i]) for i in idx)
    C = max(max(len(batch.completion_ids[i]) for i in idx), 1)
    n = len(idx)
    input_ids = torch.full((n, P + C), pad_id, dtype=torch.long)
    attention = torch.zeros((n, P + C), dtype=torch.long)
    mask = torch.zeros((n, C), dtype=torch.float32)
    valid = torch.zeros((n, C), dtype=torch.float32)
    sample = torch.zeros((n, C), dtype=torch.float32) if batch.sample_logprobs is not None else None
    for row, i in enumerate(idx):
        p, c = batch.prompt_ids[i], batch.completion_ids[i]
        input_ids[row, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        attention[row, P - len(p) : P] = 1
        if c:
            input_ids[row, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
            attention[row, P : P + len(c)] = 1
            mask[row, : len(c)] = torch.tensor(batch.loss_masks[i], dtype=torch.float32)
            valid[row, : len(c)] = 1.0 if batch.real else 0.0
            if sample is not None:
                sample[row, : len(c)] = torch.tensor(batch.sample_logprobs[i], dtype=torch.float32)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention.to(device),
        "mask": mask.to(device),
        "valid": valid.to(device),  # every completion token (rewards, returns, critic)
        "sample_logp": sample.to(device) if sample is not None else None,
        "advantages": batch.advantages[list(idx)].to(device),
        "completion_len": C,
        **_distinct_prompts(input_ids, attention, P, device),
    }


def _without_loss(t: dict) -> dict:
    """A copy of a collated micro-batch that adds nothing to any loss or metric (sharded runs
    pad ranks with fewer micro-batches with a one-row one, so every rank runs the same forwards)."""
    out = dict(t)
    for key in ("mask", "valid", "advantages"):
        out[key] = torch.zeros_like(t[key])
    return out


def _distinct_prompts(input_ids: torch.Tensor, attention: torch.Tensor, P: int, device) -> dict:
    """Each distinct prompt of a micro-batch once, and which one every row uses (prefix sharing)."""
    seen: dict[tuple, int] = {}
    row_prompt = []
    for row in range(input_ids.shape[0]):
        key = tuple(input_ids[row, :P][attention[row, :P].bool()].tolist())
        row_prompt.append(seen.setdefault(key, len(seen)))
    firsts = [row_prompt.index(u) for u in range(len(seen))]
    return {
        "prompt_ids": input_ids[firsts, :P].to(device),
        "prompt_mask": attention[firsts, :P].to(device),
        "row_prompt": torch.tensor(row_prompt, dtype=torch.long, device=device),
        "completion_ids": input_ids[:, P:].to(device),
        "completion_mask": attention[:, P:].to(device),
    }


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Holds the pieces of a run; ``run()`` is the loop."""

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        *,
        resume_from: Optional[Path] = None,
        recipe_path: Optional[str] = None,
    ):
        from rewards.runner import CheckerSpec, Scorer

        from rl_reason import data
        from rl_reason.policy import load_policy
        from rl_reason.rollout.factory import make_engine
        from rl_reason.tracking import Tracker

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.recipe_path = recipe_path
        self.dist = Dist(cfg.model.device, fsdp=cfg.train.fsdp)
        self.start_step = 0
        self.best: dict[str, Any] = {}  # checkpoint.keep_best: {"step", "value"} of the best eval
        seed_everything(cfg.train.seed)
        if not cfg.logging.progress:  # [badinput] the libraries' own progress bars too
            from rl_reason.tracking import quiet_library_progress

            quiet_library_progress()

        world = self.dist.world
        if cfg.rollout.prompts_per_step % world:
            raise RunDirError(
                f"rollout.prompts_per_step={cfg.rollout.prompts_per_step} must be divisible by "
                f"the number of processes ({world}) so every rank gets whole groups"
            )

        # data
        self.records = data.load_records(cfg.data, seed=cfg.train.seed)
        self.eval_records = self._eval_records(data)
        self.sampler = data.PromptSampler(
            self.records, cfg.rollout.prompts_per_step, seed=cfg.train.seed, shuffle=cfg.data.shuffle
        )

        # model, engine, optimizer
        self.policy = load_policy(cfg.model, cfg.lora, seed=cfg.train.seed, device=self.dist.device)
        self.tokenizer = self.policy.tokenizer
        # the critic is attached before DDP wraps the model: its matrices are frozen at that
        # moment (peft trains only the active adapter), so DDP leaves them to Dist.sum_grads
        from rl_reason.critic import critic_for

        self.critic = critic_for(self.policy, cfg)
        if self.dist.sharded:
            if self.critic is not None and not cfg.critic.shared_base:
                raise ConfigError(
                    "critic.shared_base=false with train.fsdp: the critic's own base copy would "
                    "not be sharded; use critic.shared_base=true"
                )
            # after the critic is attached, so its LoRA matrices stay whole too
            from rl_reason.sharding import shard_base

            shard_base(self.policy.model, self.dist.device)
        self.engine = make_engine(
            cfg.rollout, self.policy, self.run_dir, lockstep=self.dist if self.dist.sharded else None
        )
        self.train_model = (
            self.dist.accelerator.prepare_model(self.policy.model)
            if world > 1 and not self.dist.sharded
            else self.policy.model
        )
        self.params = self.policy.trainable_parameters()
        # prefix sharing runs two forwards per backward, which DDP does not allow, and needs
        # the KV cache that gradient checkpointing turns off
        self.share_prompt = cfg.train.share_prompt and world == 1 and not cfg.model.gradient_checkpointing
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
        )
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.critic_optimizer = self.critic_scheduler = None
        if self.critic is not None:
            self.critic_optimizer = torch.optim.AdamW(
                self.critic.parameters(), lr=cfg.critic.lr, weight_decay=cfg.train.weight_decay
            )
            self.critic_scheduler = make_scheduler(self.critic_optimizer, cfg)
        self.sampling = SamplingParams(
            max_new_tokens=cfg.rollout.max_new_tokens,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            stop=tuple(cfg.rollout.stop),
        )

        # rewards
        self.checker_specs = [
            CheckerSpec(name=c.name, weight=c.weight, params=dict(c.params), alias=c.alias)
            for c in cfg.rewards.checkers
        ]
        self.scorer = Scorer(
            self.checker_specs,
            timeout_s=cfg.rewards.timeout_s,
            workers=cfg.rewards.workers,
            on_error=cfg.rewards.on_error,
        )

        # [badinput] bad steps are skipped; too many in a row stop the run (rl_reason/guards.py)
        self.guard = guards.BadStepGuard(cfg.train.max_bad_steps)
        self.no_update = guards.NoUpdateWatch()
        self._bad: list[str] = []

        tracker_state = None
        if resume_from is not None:
            tracker_state = self._load_checkpoint(resume_from)
        self.tracker = None
        if self.dist.is_main:
            self.tracker = Tracker(
                self.run_dir,
                cfg.logging,
                total_steps=cfg.train.steps,
                config_dict=to_dict(cfg),
                start_step=self.start_step,
                state=tracker_state,
            )

    # ------------------------------------------------------------------ data helpers
    def _eval_records(self, data) -> list:
        cfg = self.cfg
        self.eval_scorer = None  # None: the run's own checkers grade the evaluation
        if cfg.eval.data:
            # a named set (gsm8k, math500, ...) or a file, graded by that set's checkers and
            # prompted with the set's own template: the training template may ask for a
            # different answer form
            from rewards.runner import Scorer

            from rl_reason.eval_sets import load_eval_set

            es = load_eval_set(
                cfg.eval.data, limit=cfg.eval.limit, template=cfg.data.template,
                system_prompt=cfg.data.system_prompt,
            )
            self.eval_scorer = Scorer(
                es.checker_specs(), timeout_s=es.timeout_s, workers=cfg.rewards.workers,
                on_error=cfg.rewards.on_error,
            )
            return es.records
        if cfg.data.source.startswith("synthetic:"):
            recs = data.load_records(cfg.data, seed=cfg.train.seed, held_out=True)
        else:
            try:
                recs = data.load_records(cfg.data, seed=cfg.train.seed, split=cfg.eval.split)
            except Exception as exc:  # no held-out split: evaluation is skipped, not fatal
                log.warning("no evaluation set (%s); eval/* metrics are skipped", exc)
                return []
        return recs[: cfg.eval.limit]

    def _prompt_ids(self, records) -> list[list[int]]:
        from rl_reason.data import tokenize_prompts

        return tokenize_prompts(records, self.tokenizer)

    def say(self, msg: str) -> None:
        if self.dist.is_main:
            (self.tracker.print if self.tracker else print)(msg)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Greedy held-out accuracy, with the run's own checkers."""
        if not self.eval_records:
            return {}
        recs = self.eval_records[self.dist.rank :: self.dist.world]
        max_new = self.cfg.eval.max_new_tokens or self.cfg.rollout.max_new_tokens
        sampling = SamplingParams(max_new_tokens=max_new, greedy=True, stop=tuple(self.cfg.rollout.stop))
        # a sharded base needs every rank in every forward, prompts or not
        rollouts = self.engine.generate(self._prompt_ids(recs), 1, sampling) if recs or self.dist.sharded else []
        scorer = self.eval_scorer or self.scorer
        scores = scorer.score(
            [r.completion_text for r in rollouts], [recs[r.prompt_index].fields for r in rollouts]
        )
        correct = [bool(c) for c in scores.correct]
        sums = self.dist.sum(
            [sum(correct), len(correct), sum(scores.total), sum(len(r.completion_ids) for r in rollouts)]
        )
        n = max(sums[1], 1)
        return {
            "eval/accuracy": sums[0] / n,
            "eval/reward_mean": sums[2] / n,
            "eval/len_mean": sums[3] / n,
            "eval/n": sums[1],
        }

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        stop = StopFlag()
        stop.install()
        first_eval: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        step = self.start_step
        try:
            if self.start_step == 0:
                self._write_run_files()
                if cfg.eval.at_start:
                    first_eval = self.evaluate()
                    self._keep_best(0, first_eval)
                    if first_eval:
                        self._log(0, first_eval)
                        self.say(f"held-out accuracy before training: {first_eval['eval/accuracy']:.3f}")
            while step < cfg.train.steps:
                step += 1
                metrics = self.train_step(step)
                if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
                    last_eval = self.evaluate()
                    metrics.update(last_eval)
                if step == cfg.train.steps and cfg.eval.at_end:
                    last_eval = self.evaluate()
                    metrics.update(last_eval)
                if last_eval and "eval/n" in metrics:
                    self._keep_best(step, last_eval)
                self._log(step, metrics)
                self._after_step_guards(step, metrics)  # [badinput] may checkpoint and stop
                due = cfg.checkpoint.every and step % cfg.checkpoint.every == 0
                if due or step == cfg.train.steps or stop.requested:
                    self.save_checkpoint(step)
                if stop.requested and step < cfg.train.steps:
                    self._print_resume_hint(step)
                    break
            self._save_final_adapter()
        finally:
            stop.restore()
            self.engine.close()  # vLLM: shut down, drop tmpfs adapter copies, unload from servers
            self.scorer.close()
            if self.eval_scorer is not None:
                self.eval_scorer.close()
            if self.tracker is not None:
                self.tracker.close()
        summary = {"step": step, "eval_before": first_eval, "eval_after": last_eval}
        return summary

    def train_step(self, step: int) -> dict[str, float]:
        cfg, dist = self.cfg, self.dist
        t_step = time.perf_counter()
        torch.manual_seed(step_seed(cfg.train.seed, step, dist.rank))

        batch_records = self.sampler.next_batch()
        local = batch_records[dist.rank :: dist.world]
        n = cfg.rollout.num_generations

        # 1. rollouts
        t0 = time.perf_counter()
        rollouts = self.engine.generate(self._prompt_ids(local), n, self.sampling)
        t_gen = time.perf_counter() - t0

        # 2. rewards
        t0 = time.perf_counter()
        fields = [dict(local[r.prompt_index].fields, completion_tokens=len(r.completion_ids)) for r in rollouts]
        scores = self.scorer.score([r.completion_text for r in rollouts], fields)
        t_score = time.perf_counter() - t0

        # 3. advantages. Groups never span ranks, so group baselines are local; REINFORCE++
        # and PPO work per token and whiten over the global batch inside update().
        rewards_t = torch.tensor(scores.total, dtype=torch.float32)
        group_ids = torch.tensor([r.prompt_index for r in rollouts], dtype=torch.long)
        keep = torch.ones(len(rollouts), dtype=torch.bool)
        if cfg.algorithm.name in GROUP_ALGORITHMS:
            advantages = algorithms.compute_advantages(cfg.algorithm.name, rewards_t, group_ids)
            if cfg.algorithm.drop_uniform_groups:
                keep &= ~algorithms.uniform_group_mask(rewards_t, group_ids)
        else:
            advantages = rewards_t  # update() turns rewards into per-token advantages
        # [badinput] unfit rewards/advantages or a failing checker: this step is not trained on
        self._bad = guards.step_problems(scores.total, advantages, scores.errors, len(rollouts), cfg.rewards.max_error_frac)
        self._bad = sorted({r for part in dist.gather_objects(self._bad) for r in part})
        if self._bad:
            keep[:] = False

        # 4. update
        t0 = time.perf_counter()
        update_stats, seq_adv = self.update(rollouts, advantages, keep, step)
        if update_stats.pop("guard/nonfinite_grad", 0.0):  # [badinput] the step was not taken
            self._bad.append("non-finite gradient (NaN/inf loss or gradient)")
        if seq_adv is not None:  # per-token algorithms: log each sequence's mean advantage
            advantages = seq_adv
        t_update = time.perf_counter() - t0
        self.engine.sync_weights()

        # 5. metrics
        lens = [len(r.completion_ids) for r in rollouts]
        gen_tokens = dist.sum([sum(lens)])[0]
        metrics: dict[str, float] = dict(scores.metrics())
        metrics.update(
            {
                "completion/len_mean": float(np.mean(lens)) if lens else 0.0,
                "completion/len_max": float(max(lens)) if lens else 0.0,
                "completion/truncated_frac": float(np.mean([r.truncated for r in rollouts])) if rollouts else 0.0,
                "groups/kept_frac": float(keep.float().mean()) if len(keep) else 0.0,
                # [badinput] counts for the progress line
                "count/groups": float(len(set(group_ids.tolist()))),
                "count/groups_kept": float(len(set(group_ids[keep].tolist()))),
                "count/samples": float(len(rollouts)),
                "guard/bad_step": 1.0 if self._bad else 0.0,
                "time/generate_s": t_gen,
                "time/score_s": t_score,
                "time/update_s": t_update,
            }
        )
        metrics.update(update_stats)
        metrics = reduce_metrics(dist, metrics)
        step_s = dist.max(time.perf_counter() - t_step)
        metrics["time/step_s"] = step_s
        metrics["throughput/tokens_per_s"] = gen_tokens / max(step_s, 1e-9)
        metrics["policy/lr"] = self.scheduler.get_last_lr()[0]

        if self.cfg.logging.log_rollouts:
            self._log_rollouts(step, local, rollouts, scores, advantages, keep)
        return metrics

    def update(
        self, rollouts: list[Rollout], advantages: torch.Tensor, keep: torch.Tensor, step: int
    ) -> tuple[dict[str, float], Optional[torch.Tensor]]:
        """Critic (PPO) then actor update on the kept sequences; one optimizer step per epoch.

        ``advantages`` are per-sequence group advantages, or the rewards themselves for
        REINFORCE++ and PPO, whose per-token advantages are built here. Returns the metrics
        and, for per-token algorithms, each sequence's mean advantage (for rollouts.jsonl).
        """
        cfg, dist = self.cfg, self.dist
        alg = cfg.algorithm
        idx = [i for i in range(len(rollouts)) if keep[i]]
        global_count = dist.sum([len(idx)])[0]
        if global_count == 0:
            self._step_schedulers()  # nothing to learn from this step
            return {"policy/skipped": 1.0}, None
        dummy = not idx  # this rank has nothing to learn from but must join the all-reduce
        if dummy:
            idx = [0]
        masks = []
        for i in idx:
            r = rollouts[i]
            m = 0.0 if (dummy or (alg.mask_truncated and r.truncated)) else 1.0
            masks.append([m] * len(r.completion_ids))
        has_sample = all(len(rollouts[i].sample_logprobs) == len(rollouts[i].completion_ids) for i in idx)
        batch = TrainBatch(
            prompt_ids=[rollouts[i].prompt_ids for i in idx],
            completion_ids=[rollouts[i].completion_ids for i in idx],
            advantages=advantages[idx].clone() if not dummy else torch.zeros(1),
            loss_masks=masks,
            sample_logprobs=[rollouts[i].sample_logprobs for i in idx] if has_sample else None,
            real=not dummy,
        )
        lengths = [len(p) + len(c) for p, c in zip(batch.prompt_ids, batch.completion_ids)]
        micro = algorithms.token_budget_batches(lengths, cfg.train.micro_batch_tokens)
        pad_id = self.tokenizer.pad_token_id
        mbs = [collate(batch, mb, pad_id, dist.device) for mb in micro]
        if dist.sharded:  # every forward is a collective: the same number on every rank
            missing = int(dist.max(len(mbs))) - len(mbs)
            if missing:
                one_row = _without_loss(collate(batch, micro[0][:1], pad_id, dist.device))
                mbs += [dict(one_row) for _ in range(missing)]
        tokens_local = sum(sum(m) for m in masks)
        seqs_local = sum(1 for m in masks if sum(m) > 0)
        valid_local = float(sum(float(t["valid"].sum()) for t in mbs))
        total_tokens, total_seqs, total_valid = dist.sum([tokens_local, seqs_local, valid_local])
        total_tokens, total_seqs = max(total_tokens, 1.0), max(total_seqs, 1.0)
        total_valid = max(total_valid, 1.0)
        agg = loss_aggregation(cfg)
        temp = cfg.rollout.temperature
        reward_kl = kl_in_reward(cfg)
        need_ref = alg.kl_coef > 0
        need_old = alg.epochs > 1 or reward_kl

        # frozen quantities of this batch: pre-update log-probs, reference, old values
        old_lp: list[Optional[torch.Tensor]] = [None] * len(mbs)
        ref_lp: list[Optional[torch.Tensor]] = [None] * len(mbs)
        old_v: list[Optional[torch.Tensor]] = [None] * len(mbs)
        if need_old or need_ref or self.critic is not None:
            with torch.no_grad():
                for k, t in enumerate(mbs):
                    if need_old:
                        old_lp[k] = self._logprobs(self.policy.model, t)[0]
                    if need_ref:
                        with self.policy.reference():
                            ref_lp[k] = self._logprobs(self.policy.model, t)[0]
                    if self.critic is not None:
                        with self.critic.active():
                            old_v[k] = self.critic.values(t["input_ids"], t["attention_mask"], t["completion_len"])

        out: dict[str, float] = {}
        seq_adv = None
        returns: list[Optional[torch.Tensor]] = [None] * len(mbs)
        if alg.name in TOKEN_ALGORITHMS:
            tok_adv, returns, seq_adv = self._token_advantages(mbs, micro, len(rollouts), idx, old_lp, ref_lp, old_v)
            for t, a in zip(mbs, tok_adv):
                t["advantages"] = a  # a placeholder row has valid = 0, so its advantage is 0

        if self.critic is not None:
            out.update(self._critic_update(mbs, old_v, returns, total_valid, valid_local))
        if self.critic is not None and step <= cfg.critic.warmup_steps:
            # critic warm-up: values settle before they steer the actor
            _advance(self.scheduler)
            out["policy/warmup_skip"] = 1.0
            return out, seq_adv

        sums: dict[str, float] = {}
        weight = 0.0

        def add(key: str, value: float, w: float) -> None:
            sums[key] = sums.get(key, 0.0) + value * w

        kl_in_loss = need_ref and not reward_kl
        diff_max = 0.0
        grad_norm = 0.0
        self.train_model.train()
        for epoch in range(alg.epochs):
            for k, t in enumerate(mbs):
                sync = dist.world == 1 or dist.sharded or k == len(mbs) - 1
                ctx = nullcontext() if sync else self.train_model.no_sync()
                with ctx:
                    logp, entropy = self._logprobs(self.train_model, t, with_entropy=(epoch == 0))
                    old = old_lp[k] if old_lp[k] is not None else logp.detach()
                    mask = t["mask"]
                    is_w = None
                    if alg.is_cap > 0 and t["sample_logp"] is not None:
                        # truncated importance sampling: the sampler (e.g. vLLM) is not the
                        # trainer; weight each token by their probability ratio, capped
                        is_w = torch.exp((old - t["sample_logp"]).clamp(max=20.0)).clamp(max=alg.is_cap)
                    loss, stats = algorithms.policy_loss(
                        logp, old, t["advantages"], mask,
                        clip_low=alg.clip_low, clip_high=alg.clip_high, agg=agg,
                        num_tokens=total_tokens, num_seqs=total_seqs,
                        norm_len=cfg.rollout.max_new_tokens, importance_weights=is_w,
                    )
                    if kl_in_loss:
                        kl = algorithms.kl_estimate(logp, ref_lp[k], alg.kl_estimator)
                        kl_loss = algorithms.aggregate(
                            kl, mask, agg, num_tokens=total_tokens, num_seqs=total_seqs,
                            norm_len=cfg.rollout.max_new_tokens,
                        )
                        loss = loss + alg.kl_coef * kl_loss
                    # DDP averages gradients over ranks; the loss is already normalised by
                    # global counts, so scale by world size to get the global sum back.
                    # Sharded: the adapter is outside FSDP and its gradients are summed below.
                    (loss if dist.sharded else loss * dist.world).backward()
                if epoch == 0:
                    tok = float(mask.sum())
                    weight += tok
                    add("policy/clip_frac", float(stats["clip_frac"]), tok)
                    if entropy is not None:
                        add("policy/entropy", float((entropy * mask).sum()), 1.0)
                    if need_ref:
                        kl_tok = algorithms.kl_estimate(logp.detach(), ref_lp[k], alg.kl_estimator)
                        add("policy/kl", float((kl_tok * mask).sum()), 1.0)
                    if t["sample_logp"] is not None:
                        diff = (logp.detach() - t["sample_logp"]).abs() * t["valid"]
                        add("rollout/logprob_diff_mean", float(diff.sum()), 1.0)
                        diff_max = max(diff_max, float(diff.max()) if diff.numel() else 0.0)
                        if is_w is not None:
                            add("policy/is_weight_mean", float((is_w * mask).sum()), 1.0)
            if dist.sharded:
                dist.sum_grads(self.params)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.train.max_grad_norm))
            if not math.isfinite(grad_norm):  # [badinput] never step on a NaN/inf gradient
                self.optimizer.zero_grad(set_to_none=True)
                out["guard/nonfinite_grad"] = 1.0
                break
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        _advance(self.scheduler)  # [badinput] quiet when a non-finite gradient skipped the step
        w = max(weight, 1.0)
        out.update({key: val / w for key, val in sums.items()})
        if "rollout/logprob_diff_mean" in out:  # over every sampled token, not only loss tokens
            out["rollout/logprob_diff_mean"] = sums["rollout/logprob_diff_mean"] / max(valid_local, 1.0)
            out["rollout/logprob_diff_max"] = diff_max
        out["policy/grad_norm"] = grad_norm
        out["policy/micro_batches"] = float(len(micro))
        return out, seq_adv

    def _logprobs(self, model, t: dict, with_entropy: bool = False):
        """Completion log-probs of a collated micro-batch, sharing each prompt when it can."""
        temp = self.cfg.rollout.temperature
        if self.share_prompt and len(t["prompt_ids"]) < len(t["input_ids"]):
            return self.policy.completion_logprobs_shared_prompt(
                model, t["prompt_ids"], t["prompt_mask"], t["row_prompt"],
                t["completion_ids"], t["completion_mask"], temp, with_entropy,
            )
        return self.policy.completion_logprobs(
            model, t["input_ids"], t["attention_mask"], t["completion_len"], temp, with_entropy
        )

    def _step_schedulers(self) -> None:
        _advance(self.scheduler)
        if self.critic_scheduler is not None:
            _advance(self.critic_scheduler)

    def _token_advantages(self, mbs, micro, n_rollouts, idx, old_lp, ref_lp, old_v):
        """Per-token advantages (and PPO's critic targets) for every micro-batch.

        The outcome reward sits on each completion's last token, minus a per-token KL penalty
        when it is folded into the reward. REINFORCE++ takes discounted returns; PPO takes
        GAE on the critic's old values. Whitening uses the mean and std over every token of
        the *global* batch (all micro-batches, all ranks), as REINFORCE++ prescribes.
        """
        cfg, alg = self.cfg, self.cfg.algorithm
        adv_list, ret_list = [], []
        for k, t in enumerate(mbs):
            valid = t["valid"].cpu()
            token_rewards = algorithms.outcome_token_rewards(t["advantages"].cpu(), valid)
            if kl_in_reward(cfg):
                kl = algorithms.kl_estimate(old_lp[k].cpu(), ref_lp[k].cpu(), alg.kl_estimator)
                token_rewards = token_rewards - alg.kl_coef * kl * valid
            if alg.name == "ppo":
                values = old_v[k].cpu()
                adv, _ = algorithms.gae(token_rewards, values, valid, alg.gamma, alg.lam)
                critic_lam = alg.critic_lam if alg.critic_lam is not None else alg.lam
                _, ret = algorithms.gae(token_rewards, values, valid, alg.gamma, critic_lam)
                ret_list.append(ret.to(t["valid"].device))
            else:
                adv = algorithms.discounted_returns(token_rewards, valid, alg.gamma)
                ret_list.append(None)
            adv_list.append(adv)
        if alg.name == "reinforce_pp" or alg.whiten_advantages:
            s, sq, n = 0.0, 0.0, 0.0
            for a, t in zip(adv_list, mbs):
                v = t["valid"].cpu()
                s, sq, n = s + float((a * v).sum()), sq + float((a * a * v).sum()), n + float(v.sum())
            s, sq, n = self.dist.sum([s, sq, n])
            mean = s / max(n, 1.0)
            std = math.sqrt(max(sq / max(n, 1.0) - mean * mean, 0.0))
            adv_list = [(a - mean) / (std + 1e-8) * t["valid"].cpu() for a, t in zip(adv_list, mbs)]
        seq_adv = torch.zeros(n_rollouts)
        for a, t, mb in zip(adv_list, mbs, micro):
            v = t["valid"].cpu()
            per_seq = (a * v).sum(-1) / v.sum(-1).clamp(min=1.0)
            for row, j in enumerate(mb):
                seq_adv[idx[j]] = per_seq[row]
        device = mbs[0]["valid"].device
        return [a.to(device) for a in adv_list], ret_list, seq_adv

    def _critic_update(self, mbs, old_v, returns, total_valid: float, valid_local: float) -> dict[str, float]:
        """Value regression on the returns, clipped around the old values; its own optimizer."""
        cfg, dist = self.cfg, self.dist
        clip = cfg.critic.value_clip or None
        params = self.critic.parameters()
        loss_sum = clip_sum = 0.0
        grad_norm = 0.0
        nonfinite = False
        for epoch in range(cfg.critic.epochs):
            for k, t in enumerate(mbs):
                with self.critic.active():
                    values = self.critic.values(t["input_ids"], t["attention_mask"], t["completion_len"])
                    loss, stats = algorithms.value_loss(
                        values, old_v[k], returns[k], t["valid"], clip=clip,
                        agg="token_mean", num_tokens=total_valid,
                    )
                    (cfg.critic.value_coef * loss).backward()
                if epoch == 0:
                    loss_sum += float(loss.detach())
                    clip_sum += float(stats["value_clip_frac"]) * float(t["valid"].sum())
            dist.sum_grads(params)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm))
            if not math.isfinite(grad_norm):  # [badinput] never step on a NaN/inf gradient
                self.critic_optimizer.zero_grad(set_to_none=True)
                nonfinite = True
                break
            self.critic_optimizer.step()
            self.critic_optimizer.zero_grad(set_to_none=True)
        _advance(self.critic_scheduler)  # [badinput] as above
        local = max(valid_local, 1.0)
        values_sum = sum(float((v * t["valid"]).sum()) for v, t in zip(old_v, mbs))
        returns_sum = sum(float((r * t["valid"]).sum()) for r, t in zip(returns, mbs))
        return {
            # per-token mean over this rank's tokens (the gradient used the global count)
            "critic/value_loss": loss_sum * total_valid / local,
            "critic/value_clip_frac": clip_sum / local,
            "critic/values_mean": values_sum / local,
            "critic/returns_mean": returns_sum / local,
            "critic/grad_norm": grad_norm,
            "critic/lr": self.critic_scheduler.get_last_lr()[0],
            **({"guard/nonfinite_grad": 1.0} if nonfinite else {}),
        }

    # ------------------------------------------------------------------ outputs
    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if self.tracker is not None:
            self.tracker.log(step, metrics)

    def _log_rollouts(self, step, records, rollouts, scores, advantages, keep) -> None:
        rows = []
        for i, r in enumerate(rollouts):
            rec = records[r.prompt_index]
            rows.append(
                {
                    "step": step,
                    "prompt_id": rec.id,
                    "answer": rec.fields.get("answer"),
                    "completion": r.completion_text,
                    "tokens": len(r.completion_ids),
                    "finish_reason": r.finish_reason,
                    "rewards": {k: v[i] for k, v in scores.scores.items()},
                    "total": scores.total[i],
                    "correct": scores.correct[i],
                    "advantage": float(advantages[i]) if keep[i] else 0.0,
                    "in_update": bool(keep[i]),
                }
            )
        rows_all = self.dist.gather_objects(rows)
        if self.tracker is not None:
            self.tracker.log_rollouts(step, [row for part in rows_all for row in part])

    def _write_run_files(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_yaml(self.cfg))
        meta = {"config_hash": config_hash(self.cfg), "recipe": self.recipe_path}
        (self.run_dir / "run.json").write_text(json.dumps(meta, indent=1))

    def _save_final_adapter(self) -> None:
        if self.dist.is_main:
            self.policy.save_adapter(self.run_dir / "adapter")
            if self.critic is not None:
                torch.save(self.critic.state_dict(), self.run_dir / CRITIC_FILE)
        self.dist.barrier()

    def _keep_best(self, step: int, eval_metrics: dict[str, float]) -> None:
        """checkpoint.keep_best: keep the adapter of the best evaluation in RUN_DIR/best_adapter.

        The metric is maximised; a ``min:`` prefix minimises it. The best value so far is part
        of the checkpoint, so a resumed run keeps comparing against it.
        """
        spec = self.cfg.checkpoint.keep_best
        if not spec:
            return
        lower = spec.startswith("min:")
        key = spec[4:] if lower else spec
        if key not in eval_metrics:
            if self.dist.is_main and eval_metrics:
                log.warning("checkpoint.keep_best: %r is not among the eval metrics (%s)", key, ", ".join(sorted(eval_metrics)))
            return
        value = float(eval_metrics[key])
        old = self.best.get("value")
        better = old is None or (value < old if lower else value > old)
        if not better:
            return
        self.best = {"step": step, "value": value, "metric": key}
        if self.dist.is_main:
            target = self.run_dir / "best_adapter"
            tmp = self.run_dir / ".best_adapter.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.policy.save_adapter(tmp)
            (tmp / "best.json").write_text(json.dumps(self.best, indent=1))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        self.dist.barrier()

    def _after_step_guards(self, step: int, metrics: dict[str, float]) -> None:
        """[badinput] Warn about a skipped step or a run that stopped learning; after
        train.max_bad_steps bad steps in a row, checkpoint (the adapter is as of the last good
        step) and stop with one line."""
        hint = (
            f"; checkpoint of step {step} written; fix the cause, then "
            f"rl-reason resume {shlex.quote(str(self.run_dir))}"
        )
        try:
            msg = self.guard.observe(step, self._bad, hint=hint)
        except RLReasonError:
            self.save_checkpoint(step)
            raise
        if msg:
            self.say(f"warning: {msg}")
        elif self.cfg.algorithm.name in GROUP_ALGORITHMS:
            msg = self.no_update.observe(metrics)
            if msg:
                self.say(f"warning: {msg}")

    def _print_resume_hint(self, step: int) -> None:
        self.say(
            f"stopped after step {step}; checkpoint written. Resume with:\n"
            f"  rl-reason resume {shlex.quote(str(self.run_dir))}"
        )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step: int) -> Optional[Path]:
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        rngs = self.dist.gather_objects(rng)
        path = None
        if self.dist.is_main:
            state = {
                "step": step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "rng": rngs,
                "tracker": self.tracker.state_dict() if self.tracker else {},
                "best": dict(self.best),
            }
            if self.critic is not None:
                state["critic_optimizer"] = self.critic_optimizer.state_dict()
                state["critic_scheduler"] = self.critic_scheduler.state_dict()

            def write(tmp: Path) -> None:
                self.policy.save_adapter(tmp / "adapter")
                if self.critic is not None:
                    torch.save(self.critic.state_dict(), tmp / CRITIC_FILE)
                torch.save(state, tmp / STATE_FILE)

            path = checkpoint.save(
                self.run_dir, step, write,
                config_hash=config_hash(self.cfg), keep_last=self.cfg.checkpoint.keep_last,
                extra={"config": to_dict(self.cfg)},  # a resume names each key that changed since
            )
        self.dist.barrier()
        return path

    def _load_checkpoint(self, ckpt: Path) -> dict:
        from peft import load_peft_weights

        try:
            adapter = load_peft_weights(str(ckpt / "adapter"), device="cpu")
            state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
            critic_state = None
            if self.critic is not None:
                critic_state = torch.load(ckpt / CRITIC_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {ckpt}: {exc}".splitlines()[0]) from exc
        self.policy.load_adapter_state(adapter)
        if self.critic is not None:
            self.critic.load_state_dict(critic_state)
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
            self.critic_scheduler.load_state_dict(state["critic_scheduler"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        rngs = state.get("rng") or []
        if self.dist.rank < len(rngs):
            rng = rngs[self.dist.rank]
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
        self.start_step = int(state["step"])
        self.best = dict(state.get("best") or {})
        return state.get("tracker") or {}
