"""What one training step reports: its metrics (reduced over ranks as each is declared) and
its rows for rollouts.jsonl. Pure bookkeeping; the loop in trainer.py calls both."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from rl_reason.distributed import Reduction, reduce_metrics
from rl_reason.rollout import Rollout

# step metrics reduced by their maximum over ranks (the slowest rank, the longest completion)
STEP_MAX = (
    "completion/len_max",
    "rollout/logprob_diff_max",
    "policy/is_weight_max",
    "policy/is_ratio_max",
    "time/generate_s",
    "time/score_s",
    "time/update_s",
)
# counts for the progress line, summed over ranks
STEP_SUM = ("count/groups", "count/groups_kept", "count/samples")
# per-checker counts that add up over ranks; the checker's other metrics are means
CHECKER_SUM = ("errors", "timeouts", "stdout_lines")


def step_metrics(
    dist,
    scores,
    rollouts: list[Rollout],
    keep: torch.Tensor,
    update_stats: dict[str, float],
    times: tuple[float, float, float],
    t_step: float,
    *,
    bad: bool,
    lr: float,
) -> dict[str, float]:
    """One step's metrics: rewards, completion lengths, kept groups, phase times, the update's
    statistics; ``times`` is (generate, score, update) seconds, ``t_step`` the step's start."""
    lens = [len(r.completion_ids) for r in rollouts]
    group_ids = torch.tensor([r.prompt_index for r in rollouts], dtype=torch.long)
    gen_tokens = dist.sum([sum(lens)])[0]
    metrics: dict[str, float] = dict(scores.metrics())
    metrics.update(
        {
            "completion/len_mean": float(np.mean(lens)) if lens else 0.0,
            "completion/len_max": float(max(lens)) if lens else 0.0,
            "completion/truncated_frac": float(np.mean([r.truncated for r in rollouts])) if rollouts else 0.0,
            "groups/kept_frac": float(keep.float().mean()) if len(keep) else 0.0,
            "count/groups": float(len(set(group_ids.tolist()))),
            "count/groups_kept": float(len(set(group_ids[keep].tolist()))),
            "count/samples": float(len(rollouts)),
            "guard/bad_step": 1.0 if bad else 0.0,
            "time/generate_s": times[0],
            "time/score_s": times[1],
            "time/update_s": times[2],
        }
    )
    metrics.update(update_stats)
    how: dict[str, Reduction] = {k: "max" for k in STEP_MAX}
    how.update({k: "sum" for k in STEP_SUM})
    for alias in scores.scores:
        how.update({f"reward/{alias}/{count}": "sum" for count in CHECKER_SUM})
    metrics = reduce_metrics(dist, metrics, how)
    step_s = dist.max(time.perf_counter() - t_step)
    metrics["time/step_s"] = step_s
    metrics["throughput/tokens_per_s"] = gen_tokens / max(step_s, 1e-9)
    metrics["policy/lr"] = lr
    return metrics


def rollout_rows(
    step: int, records, rollouts: list[Rollout], scores, advantages, keep
) -> list[dict[str, Any]]:
    """This rank's rows for rollouts.jsonl: one per completion, with its rewards and advantage."""
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
                "adapter_version": r.adapter_version,  # rl_reason/producer.py
            }
        )
        if r.turns:  # multi-turn: each turn, what the tool returned and its time
            rows[-1]["turns"] = [t.as_dict() for t in r.turns]
            rows[-1]["graded"] = r.answer_text  # what the checkers graded: the final model turn
    return rows
