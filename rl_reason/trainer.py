"""The training loop: rollout -> score -> advantage -> update -> sync -> log -> checkpoint.

One explicit loop for every algorithm; an algorithm is an ``AlgorithmSpec`` in
rl_reason/algorithms (per-sequence or per-token advantages, a critic or not, where the KL
goes). The parts live beside it: batching.py (TrainBatch, MicroBatch), update.py (frozen pass,
token advantages, critic and actor steps), distributed.py (Dist), train_state.py (seeds,
schedules, checkpoint state). Under ``torchrun``/``accelerate launch`` each rank takes a slice
of every step's prompts (a prompt's whole group stays on one rank), gradients of the LoRA
parameters are averaged across ranks, and metrics are reduced before logging.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any, Optional

import torch

from rl_reason import algorithms, guards, packing, train_state, update
from rl_reason.config import RunConfig, config_hash, dump_yaml, to_dict
from rl_reason.distributed import AccelerateDist
from rl_reason.errors import ConfigError, RunDirError
from rl_reason.producer import make_producer
from rl_reason.rollout import Rollout, SamplingParams, multiturn
from rl_reason.step_metrics import rollout_rows, step_metrics

log = logging.getLogger("rl_reason")


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
        from rl_reason.rollout.factory import make_engine
        from rl_reason.tracking import Tracker

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.recipe_path = recipe_path
        self.dist = AccelerateDist(cfg.model.device, fsdp=cfg.train.fsdp)
        self.start_step = 0
        self.bad: list[str] = []  # what made the current step a bad one (rl_reason/guards.py)
        self.best: dict[str, Any] = {}  # checkpoint.keep_best: {"step", "value"} of the best eval
        train_state.seed_everything(cfg.train.seed)
        if not cfg.logging.progress:  # the libraries' own progress bars too
            from rl_reason.tracking import quiet_library_progress

            quiet_library_progress()

        world = self.dist.world
        if cfg.rollout.prompts_per_step % world:
            raise RunDirError(
                f"rollout.prompts_per_step={cfg.rollout.prompts_per_step} must be divisible by "
                f"the number of processes ({world}) so every rank gets whole groups"
            )

        self._load_data()
        self._build_models(make_engine)
        self.sampling = SamplingParams.from_config(cfg.rollout)
        self.tools = multiturn.settings_from_config(cfg.rollout, self.policy.tokenizer)  # None: 1 turn
        self.producer = make_producer(self)  # rollout.max_staleness: sample now or ahead

        self._build_scorer()
        # bad steps are skipped; too many in a row stop the run (rl_reason/guards.py)
        self.guard = guards.BadStepGuard(cfg.train.max_bad_steps)
        self.no_update = guards.NoUpdateWatch()

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

    def _load_data(self) -> None:
        """Training prompts, the held-out set (and its scorer) and the per-step prompt sampler."""
        from rl_reason import data
        from rl_reason.evaluate import training_eval_set

        cfg = self.cfg
        self.records = data.load_records(cfg.data, seed=cfg.train.seed)
        self.eval_records, self.eval_scorer = training_eval_set(cfg, data)
        self.sampler = data.PromptSampler(
            self.records, cfg.rollout.prompts_per_step, seed=cfg.train.seed, shuffle=cfg.data.shuffle
        )

    def _build_scorer(self) -> None:
        """The recipe's checkers, run in worker processes with a timeout (rewards/runner.py)."""
        from rewards.runner import CheckerSpec, Scorer
        from rl_reason.judging import start_judge  # math_judge's model, before workers fork

        rewards = self.cfg.rewards
        self.judge = start_judge(self.cfg, self.run_dir)
        self.checker_specs = [
            CheckerSpec(name=c.name, weight=c.weight, params=dict(c.params), alias=c.alias)
            for c in rewards.checkers
        ]
        self.scorer = Scorer(
            self.checker_specs,
            timeout_s=rewards.timeout_s,
            workers=rewards.workers,
            on_error=rewards.on_error,
        )

    def _build_models(self, make_engine) -> None:
        """Policy (and critic), sharding, the rollout engine, optimizers: the update's Learner."""
        from rl_reason.critic import critic_for
        from rl_reason.policy import load_policy

        cfg, dist = self.cfg, self.dist
        self.policy = load_policy(cfg.model, cfg.lora, seed=cfg.train.seed, device=dist.device)
        self.tokenizer = self.policy.tokenizer
        # the critic is attached before DDP wraps the model: its matrices are frozen at that
        # moment (peft trains only the active adapter), so DDP leaves them to Dist.sum_grads
        self.critic = critic_for(self.policy, cfg)
        from rl_reason.teacher import teacher_for  # distill: the frozen teacher, loaded once

        self.teacher = teacher_for(self.policy, cfg)
        if dist.sharded:
            if self.critic is not None and not cfg.critic.shared_base:
                raise ConfigError(
                    "critic.shared_base=false with train.fsdp: the critic's own base copy would "
                    "not be sharded; use critic.shared_base=true"
                )
            # after the critic is attached, so its LoRA matrices stay whole too
            from rl_reason.sharding import shard_base

            shard_base(self.policy.model, dist.device)
        self.engine = make_engine(
            cfg.rollout, self.policy, self.run_dir, lockstep=dist if dist.sharded else None, dist=dist
        )
        self.params = self.policy.trainable_parameters()
        self.optimizer, self.scheduler, self.critic_optimizer, self.critic_scheduler = (
            train_state.make_optimizers(cfg, self.params, self.critic)
        )
        self.learner = update.Learner(
            cfg,
            dist,
            self.policy,
            dist.prepare_model(self.policy.model),
            self.params,
            self.optimizer,
            self.scheduler,
            self.critic,
            self.critic_optimizer,
            self.critic_scheduler,
            # prefix sharing runs two forwards per backward, which DDP does not allow, and
            # needs the KV cache that gradient checkpointing turns off
            share_prompt=cfg.train.share_prompt and dist.world == 1 and not cfg.model.gradient_checkpointing,
            # MoE bases pack too: packing.moe_logprobs moves the replayed experts onto the row
            packing=packing.layout(cfg.train.packing, cfg.train.share_prompt, self.policy.model),
            teacher=self.teacher,
        )

    # ------------------------------------------------------------------ helpers
    def _prompt_ids(self, records) -> list[list[int]]:
        from rl_reason.data import tokenize_prompts

        return tokenize_prompts(records, self.tokenizer)

    def say(self, msg: str) -> None:
        if self.dist.is_main:
            (self.tracker.print if self.tracker else print)(msg)

    def evaluate(self) -> dict[str, float]:
        """Greedy held-out accuracy (rl_reason.evaluate.evaluate_in_training)."""
        from rl_reason.evaluate import evaluate_in_training

        return evaluate_in_training(self)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        stop = train_state.StopFlag()
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
                guards.after_step(self, step, metrics)  # may warn, or checkpoint and stop
                due = cfg.checkpoint.every and step % cfg.checkpoint.every == 0
                if due or step == cfg.train.steps or stop.requested:
                    self.save_checkpoint(step)
                if stop.requested and step < cfg.train.steps:
                    self._print_resume_hint(step)
                    break
            self._save_final_adapter()
        finally:
            stop.restore()
            self.producer.close()  # stops the sampler process or thread, if any
            self.engine.close()  # vLLM: shut down, drop tmpfs adapter copies, unload from servers
            self.scorer.close()
            if self.eval_scorer is not None:
                self.eval_scorer.close()
            if self.judge is not None:
                self.judge.close()
            if self.tracker is not None:
                self.tracker.close()
        summary = {"step": step, "eval_before": first_eval, "eval_after": last_eval}
        return summary

    def train_step(self, step: int) -> dict[str, float]:
        cfg, dist = self.cfg, self.dist
        t_step = time.perf_counter()
        torch.manual_seed(train_state.step_seed(cfg.train.seed, step, dist.rank))

        # 1. rollouts: sampled now (max_staleness 0) or ahead of the update (rl_reason/producer.py)
        got = self.producer.next_batch(step)
        local, rollouts, t_gen = got.records, got.rollouts, got.generate_s

        # 2. rewards
        t0 = time.perf_counter()
        # the record's fields, the model's token count, the turns of a multi-turn rollout, the step
        fields = [
            dict(multiturn.checker_fields(local[r.prompt_index].fields, r), step=step) for r in rollouts
        ]
        # groups (the prompt index) and step: for rewards.shaping's batch-level length rewards
        groups = [r.prompt_index for r in rollouts]
        scores = self.scorer.score([multiturn.graded_text(r) for r in rollouts], fields, groups=groups)
        t_score = time.perf_counter() - t0

        # 3. advantages: per sequence here (groups never span ranks); per-token algorithms
        # get the rewards and build theirs inside the update
        advantages, keep = self._sequence_advantages(scores, rollouts)
        # unfit rewards or advantages, or a failing checker: this step is not trained on
        problems = guards.step_problems(
            scores.total, advantages, scores.errors, len(rollouts), cfg.rewards.max_error_frac
        )
        self.bad = sorted({p for part in dist.gather_objects(problems) for p in part})
        if self.bad:
            keep[:] = False

        # 4. update
        t0 = time.perf_counter()
        update_stats, seq_adv = self.update(rollouts, advantages, keep, step)
        if update_stats.pop("guard/nonfinite_grad", 0.0):  # the optimizer step was not taken
            self.bad.append("non-finite gradient (NaN/inf loss or gradient)")
        if seq_adv is not None:  # per-token algorithms: log each sequence's mean advantage
            advantages = seq_adv
        t_update = time.perf_counter() - t0
        self.producer.after_update(step)  # the engine (or the sampler) gets adapter version `step`

        # 5. metrics
        if self.tools is not None:  # tools/* of multi-turn rollouts, averaged over ranks
            update_stats.update(multiturn.tool_metrics(rollouts))
        times = (t_gen, t_score, t_update)
        lr = self.scheduler.get_last_lr()[0]
        metrics = step_metrics(
            dist, scores, rollouts, keep, update_stats, times, t_step, bad=bool(self.bad), lr=lr
        )
        metrics.update(got.metrics)  # async/* from the producer (empty when synchronous)
        if cfg.logging.log_rollouts:
            rows = dist.gather_objects(rollout_rows(step, local, rollouts, scores, advantages, keep))
            if self.tracker is not None:
                self.tracker.log_rollouts(step, [row for part in rows for row in part])
        return metrics

    def _sequence_advantages(self, scores, rollouts: list[Rollout]) -> tuple[torch.Tensor, torch.Tensor]:
        """The registered per-sequence advantages, and which sequences the update keeps."""
        alg = self.cfg.algorithm
        spec = algorithms.get(alg.name)
        rewards_t = torch.tensor(scores.total, dtype=torch.float32)
        keep = torch.ones(len(rollouts), dtype=torch.bool)
        if spec.level != "sequence":
            return rewards_t, keep  # update() turns rewards into per-token advantages
        group_ids = torch.tensor([r.prompt_index for r in rollouts], dtype=torch.long)
        advantages = spec.sequence_advantages(rewards_t, group_ids)
        if alg.drop_uniform_groups:
            keep &= ~algorithms.uniform_group_mask(rewards_t, group_ids)
        return advantages, keep

    def update(self, rollouts: list[Rollout], advantages: torch.Tensor, keep: torch.Tensor, step: int):
        """Critic then actor update on the kept sequences (rl_reason.update.update)."""
        return update.update(self.learner, rollouts, advantages, keep, step)

    # ------------------------------------------------------------------ outputs
    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if self.tracker is not None:
            self.tracker.log(step, metrics)

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
                torch.save(self.critic.state_dict(), self.run_dir / train_state.CRITIC_FILE)
        self.dist.barrier()

    def _keep_best(self, step: int, eval_metrics: dict[str, float]) -> None:
        train_state.keep_best(self, step, eval_metrics)

    def _print_resume_hint(self, step: int) -> None:
        self.say(
            f"stopped after step {step}; checkpoint written. Resume with:\n"
            f"  rl-reason resume {shlex.quote(str(self.run_dir))}"
        )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step: int) -> Optional[Path]:
        return train_state.save(self, step)

    def _load_checkpoint(self, ckpt: Path) -> dict:
        return train_state.load(self, ckpt)
