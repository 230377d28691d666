"""Evaluation on held-out sets: accuracy, unbiased pass@k, tokens per answer."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct (Chen et al., 2021).

    pass@k = 1 - C(n - c, k) / C(n, k), computed as a running product so large n does not
    overflow. Needs k <= n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(per_problem: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """Average pass@k over problems given (n, c) pairs; k larger than n is left out."""
    pairs = list(per_problem)
    out = {}
    for k in ks:
        vals = [pass_at_k(n, c, k) for n, c in pairs if n >= k]
        if vals:
            out[k] = sum(vals) / len(vals)
    return out


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {"tokens_mean": 0.0, "tokens_median": 0.0}
    return {
        "tokens_mean": float(statistics.fmean(lengths)),
        "tokens_median": float(statistics.median(lengths)),
    }


# --------------------------------------------------------------------------- per-sample results


@dataclass
class SampleResult:
    """One graded completion; a row of ``samples.jsonl``."""

    prompt_id: str
    sample: int  # index among this prompt's samples
    completion: str
    extracted: Optional[str]  # final answer (math) or program (code); None = extraction failed
    gold: Optional[str]
    correct: bool
    tokens: int


def summarize(results: Sequence[SampleResult], ks: Sequence[int], wall_s: float) -> dict[str, Any]:
    """The headline metrics of an evaluation, from its graded samples.

    accuracy is over all samples (not per prompt) so it equals pass@1 when every prompt has the
    same number of samples; pass@k uses the unbiased estimator per prompt, then the mean over
    prompts. ``pass_at_k`` keys are strings so the dict survives a JSON round trip unchanged.
    """
    per_prompt: dict[str, list[bool]] = {}
    for r in results:
        per_prompt.setdefault(r.prompt_id, []).append(bool(r.correct))
    counts = [(len(v), sum(v)) for v in per_prompt.values()]
    n = len(results)
    tokens = [r.tokens for r in results]
    total_tokens = sum(tokens)
    out: dict[str, Any] = {
        "accuracy": sum(r.correct for r in results) / n if n else 0.0,
        "pass_at_k": {str(k): v for k, v in mean_pass_at_k(counts, ks).items()},
        **length_stats(tokens),
        "extract_fail_rate": sum(r.extracted is None for r in results) / n if n else 0.0,
        "n_prompts": len(per_prompt),
        "n_samples": n,
        "wall_s": float(wall_s),
        "tokens_per_s": total_tokens / wall_s if wall_s > 0 else 0.0,
    }
    return out


COMPARED = ("accuracy", "tokens_mean", "tokens_median", "extract_fail_rate")


def compare(base: Mapping[str, Any], adapter: Mapping[str, Any]) -> dict[str, float]:
    """adapter - base for the quality metrics (``pass@k`` flattened), the numbers --compare shows."""
    deltas = {key: float(adapter[key]) - float(base[key]) for key in COMPARED}
    for k, value in adapter.get("pass_at_k", {}).items():
        if k in base.get("pass_at_k", {}):
            deltas[f"pass@{k}"] = float(value) - float(base["pass_at_k"][k])
    return deltas


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics in display order with ``pass@k`` keys side by side with the scalars."""
    out = {"accuracy": float(metrics["accuracy"])}
    for k, value in metrics.get("pass_at_k", {}).items():
        out[f"pass@{k}"] = float(value)
    for key in ("tokens_mean", "tokens_median", "extract_fail_rate"):
        out[key] = float(metrics[key])
    return out


# --------------------------------------------------------------------------- during training


def training_eval_set(cfg, data) -> tuple[list, Any]:
    """The held-out records of ``eval.every`` / ``at_start`` / ``at_end``, and the scorer
    that grades them (None: the run's own checkers)."""
    import logging

    if cfg.eval.data:
        # a named set (gsm8k, math500, ...) or a file, graded by that set's checkers and
        # prompted with the set's own template: the training template may ask for a
        # different answer form
        from rewards.runner import Scorer
        from rl_reason.eval_sets import load_eval_set

        es = load_eval_set(
            cfg.eval.data,
            limit=cfg.eval.limit,
            template=cfg.data.template,
            system_prompt=cfg.data.system_prompt,
        )
        scorer = Scorer(
            es.checker_specs(),
            timeout_s=es.timeout_s,
            workers=cfg.rewards.workers,
            on_error=cfg.rewards.on_error,
        )
        return es.records, scorer
    if cfg.data.source.startswith("synthetic:"):
        recs = data.load_records(cfg.data, seed=cfg.train.seed, held_out=True)
    else:
        try:
            recs = data.load_records(cfg.data, seed=cfg.train.seed, split=cfg.eval.split)
        except Exception as exc:  # no held-out split: evaluation is skipped, not fatal
            logging.getLogger("rl_reason").warning("no evaluation set (%s); eval/* metrics are skipped", exc)
            return [], None
    return recs[: cfg.eval.limit], None


def evaluate_in_training(trainer) -> dict[str, float]:
    """Greedy held-out accuracy on this rank's share of the eval records, summed over ranks:
    ``eval/accuracy``, ``eval/reward_mean``, ``eval/len_mean``, ``eval/n``."""
    from rl_reason.rollout import SamplingParams

    cfg, dist = trainer.cfg, trainer.dist
    if not trainer.eval_records:
        return {}
    recs = trainer.eval_records[dist.rank :: dist.world]
    max_new = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    sampling = SamplingParams(max_new_tokens=max_new, greedy=True, stop=tuple(cfg.rollout.stop))
    # a sharded base needs every rank in every forward, prompts or not
    tools = getattr(trainer, "tools", None)
    if tools is not None:  # a run with rollout.tools is evaluated with them
        from rl_reason.rollout import multiturn

        rollouts = multiturn.generate(trainer.engine, recs, 1, sampling, tools, trainer.tokenizer)
    else:
        rollouts = (
            trainer.engine.generate(trainer._prompt_ids(recs), 1, sampling) if recs or dist.sharded else []
        )
    scorer = trainer.eval_scorer or trainer.scorer
    from rl_reason.rollout.multiturn import checker_fields

    scores = scorer.score(
        [r.completion_text for r in rollouts],
        [
            checker_fields(recs[r.prompt_index].fields, r) if r.turns else recs[r.prompt_index].fields
            for r in rollouts
        ],
    )
    correct = [bool(c) for c in scores.correct]
    sums = dist.sum(
        [sum(correct), len(correct), sum(scores.total), sum(len(r.completion_ids) for r in rollouts)]
    )
    n = max(sums[1], 1)
    return {
        "eval/accuracy": sums[0] / n,
        "eval/reward_mean": sums[2] / n,
        "eval/len_mean": sums[3] / n,
        "eval/n": sums[1],
    }
