"""Evaluation on held-out sets: accuracy, unbiased pass@k, tokens per answer.

One path for every evaluation: :func:`generate_and_grade` samples and grades (the engine and
the scorer are passed in), :func:`summarize` turns the graded samples into the metrics.
``rl-reason eval`` (rl_reason/eval_cli.py, the CLI shell: arguments, files, printing) writes
them to eval.json; the trainer's ``eval.every`` / ``at_start`` / ``at_end``
(:func:`evaluate_in_training`) logs the same names under ``eval/``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from rl_reason.eval_metrics import SPEED_KEYS, answer_seconds, speed_metrics


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
    reward: float = 0.0  # weighted total of the checkers that graded it
    seconds: Optional[float] = None  # wall-clock seconds of this answer (rl_reason/eval_metrics.py)
    budget: Optional[int] = None  # the token budget stated in the prompt (data.budget, eval --budgets)


def summarize(results: Sequence[SampleResult], ks: Sequence[int], wall_s: float) -> dict[str, Any]:
    """The headline metrics of an evaluation, from its graded samples (the answer-speed ones
    are rl_reason.eval_metrics.speed_metrics of the same samples).

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
        "reward_mean": sum(r.reward for r in results) / n if n else 0.0,
        "pass_at_k": {str(k): v for k, v in mean_pass_at_k(counts, ks).items()},
        **length_stats(tokens),
        "extract_fail_rate": sum(r.extracted is None for r in results) / n if n else 0.0,
        "n_prompts": len(per_prompt),
        "n_samples": n,
        "wall_s": float(wall_s),
        "tokens_per_s": total_tokens / wall_s if wall_s > 0 else 0.0,
    }
    out.update(speed_metrics(results))  # tokens_per_correct, accuracy_per_1k_tokens, seconds_*
    return out


COMPARED = ("accuracy", "reward_mean", "tokens_mean", "tokens_median", "extract_fail_rate")


def compare(base: Mapping[str, Any], adapter: Mapping[str, Any]) -> dict[str, float]:
    """adapter - base for the quality metrics (``pass@k`` flattened) and the answer-speed ones
    both sides have (tokens_per_correct is None with no correct answer): what --compare shows."""
    deltas = {key: float(adapter[key]) - float(base[key]) for key in COMPARED}
    for k, value in adapter.get("pass_at_k", {}).items():
        if k in base.get("pass_at_k", {}):
            deltas[f"pass@{k}"] = float(value) - float(base["pass_at_k"][k])
    for key in SPEED_KEYS:
        a, b = adapter.get(key), base.get(key)
        if a is not None and b is not None:
            deltas[key] = float(a) - float(b)
    return deltas


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """Metrics in display order with ``pass@k`` keys side by side with the scalars (None: the
    metric has no value, e.g. tokens_per_correct with no correct answer)."""
    out: dict[str, Optional[float]] = {"accuracy": float(metrics["accuracy"])}
    for k, value in metrics.get("pass_at_k", {}).items():
        out[f"pass@{k}"] = float(value)
    for key in ("reward_mean", "tokens_mean", "tokens_median", "extract_fail_rate"):
        out[key] = float(metrics[key])
    for key in SPEED_KEYS:
        if key in metrics:
            out[key] = None if metrics[key] is None else float(metrics[key])
    return out


# --------------------------------------------------------------------------- generate and grade


@dataclass
class Graded:
    """One pass of :func:`generate_and_grade`: the graded samples in prompt order, and timings."""

    results: list[SampleResult]
    gen_s: float = 0.0  # seconds inside engine.generate
    score_s: float = 0.0  # seconds inside scorer.score


def records_kind(records: Sequence[Any]) -> str:
    """The records' kind: "code" when they carry tests (graded by running them), else "math"."""
    return "code" if any("tests" in r.fields for r in records) else "math"


def _seed(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def generate_and_grade(
    engine,
    prompt_ids: Sequence[Sequence[int]],
    records: Sequence[Any],
    scorer,
    sampling,
    *,
    samples: int = 1,
    kind: Optional[str] = None,
    chunk_prompts: Optional[int] = None,
    seed: Optional[int] = None,
    lockstep: bool = False,
    on_chunk: Optional[Callable[[int], None]] = None,
    tools=None,
    tokenizer=None,
) -> Graded:
    """Sample ``samples`` completions per record and grade them: the one evaluation path of
    ``rl-reason eval`` and of the trainer's ``eval.every`` / ``at_start`` / ``at_end``.

    Prompts go to the engine ``chunk_prompts`` at a time (None: all in one call). With a
    ``seed``, chunk i is sampled right after seeding with ``seed + i``, so two passes over the
    same prompts (base and adapter under --compare) draw from identical random streams; the
    trainer passes none (each training step reseeds torch itself). ``lockstep``: call the
    engine even with no prompts (a sharded base needs every rank in every forward).
    ``kind`` ("math" | "code", default from the records) picks what ``extracted`` holds.
    ``tools`` (rl_reason.rollout.multiturn.ToolSettings, with the ``tokenizer``): multi-turn
    rollouts with an environment; token counts are the model's own tokens, not tool output.
    """
    import time

    from rl_reason.eval_sets import extract_final
    from rl_reason.rollout import multiturn

    kind = kind or records_kind(records)
    per_chunk = max(1, chunk_prompts or len(records) or 1)
    starts = list(range(0, len(records), per_chunk)) or ([0] if lockstep else [])
    out = Graded(results=[])
    for i, start in enumerate(starts):
        chunk = records[start : start + per_chunk]
        if seed is not None:
            _seed(seed + i)
        t0 = time.perf_counter()
        if tools is not None:  # multi-turn (rollout.tools, eval --tools): rl_reason.rollout.multiturn
            rollouts = multiturn.generate(engine, chunk, samples, sampling, tools, tokenizer)
        else:
            rollouts = engine.generate(list(prompt_ids[start : start + per_chunk]), samples, sampling)
        t1 = time.perf_counter()
        # as in training: the model's token count for length rewards, the turns, a group per prompt
        batch = scorer.score(
            [multiturn.graded_text(r) for r in rollouts],  # tool rollouts: the final model turn
            [multiturn.checker_fields(chunk[r.prompt_index].fields, r) for r in rollouts],
            groups=[r.prompt_index for r in rollouts],
        )
        out.score_s += time.perf_counter() - t1
        out.gen_s += t1 - t0
        seen: dict[int, int] = {}
        seconds = answer_seconds(t1 - t0, [sum(r.model_mask()) for r in rollouts])
        for r, ok, total, sec in zip(rollouts, batch.correct, batch.total, seconds):
            rec = chunk[r.prompt_index]
            index = seen.get(r.prompt_index, 0)
            seen[r.prompt_index] = index + 1
            gold = rec.fields.get("answer")
            out.results.append(
                SampleResult(
                    prompt_id=rec.id,
                    sample=index,
                    completion=r.completion_text,
                    extracted=extract_final(kind, multiturn.graded_text(r)),
                    gold=None if gold is None else str(gold),
                    correct=bool(ok),
                    tokens=sum(r.model_mask()),  # the model's own tokens (not tool output)
                    reward=float(total),
                    seconds=sec,
                    budget=rec.fields.get("budget"),
                )
            )
        if on_chunk is not None:
            on_chunk(len(chunk))
    return out


# --------------------------------------------------------------------------- during training


# the summary metrics logged as ``eval/<name>`` during training: the names eval.json uses
# (wall-clock figures are left out: a resumed run logs exactly what the uninterrupted one did)
TRAINING_KEYS = (
    "accuracy",
    "reward_mean",
    "tokens_mean",
    "tokens_median",
    "extract_fail_rate",
    "tokens_per_correct",
    "accuracy_per_1k_tokens",
    "n_prompts",
    "n_samples",
)
# names of the first in-training evaluation, still logged so recipes (checkpoint.keep_best)
# and scripts written for them keep working: alias -> summary key
LEGACY_ALIASES = {"eval/len_mean": "tokens_mean", "eval/n": "n_samples"}
TRAINING_METRICS = tuple(f"eval/{k}" for k in TRAINING_KEYS) + tuple(LEGACY_ALIASES)


def training_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """A :func:`summarize` result as the trainer logs it (``eval/`` + the same names; a value
    that does not exist, as tokens_per_correct with no correct answer, is NaN: null in the log)."""
    out = {f"eval/{k}": math.nan if summary[k] is None else float(summary[k]) for k in TRAINING_KEYS}
    out.update({alias: float(summary[key]) for alias, key in LEGACY_ALIASES.items()})
    return out


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
    """Greedy held-out evaluation of this rank's share of the eval records through
    :func:`generate_and_grade`; every rank's samples are gathered and summarised together, and
    logged under the names of ``rl-reason eval`` (:data:`TRAINING_METRICS`)."""
    import time

    from rl_reason.rollout import SamplingParams

    cfg, dist = trainer.cfg, trainer.dist
    if not trainer.eval_records:
        return {}
    recs = trainer.eval_records[dist.rank :: dist.world]
    max_new = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    sampling = SamplingParams(max_new_tokens=max_new, greedy=True, stop=tuple(cfg.rollout.stop))
    t0 = time.perf_counter()
    producer = getattr(trainer, "producer", None)
    graded = generate_and_grade(
        producer.eval_engine() if producer is not None else trainer.engine,
        trainer._prompt_ids(recs),
        recs,
        trainer.eval_scorer or trainer.scorer,
        sampling,
        kind=records_kind(trainer.eval_records),
        lockstep=dist.sharded,
        tools=getattr(trainer, "tools", None),  # a run with rollout.tools is evaluated with them
        tokenizer=trainer.tokenizer,
    )
    results = [r for part in dist.gather_objects(graded.results) for r in part]
    return training_metrics(summarize(results, [1], time.perf_counter() - t0))
