"""``rl-reason sample RECIPE --out FILE.jsonl``: rejection sampling / best-of-n into an SFT set.

n completions per prompt (``--n``, default ``rollout.num_generations``) from the recipe's
policy (the base, the base + ``model.init_adapter``, or ``--policy teacher``: the ``teacher:``
model) through the recipe's rollout engine (``rollout.engine``: hf, vllm, server), graded by
the recipe's checkers in their worker processes. Which completions are written (``--keep``):

- ``correct``: every distinct completion the checkers mark correct;
- ``shortest-correct``: the correct completion with the fewest tokens;
- ``best``: the completion with the highest total reward (correct or not), ties to the shorter.

Each row holds the prompt (``messages`` for chat templates, with the recipe's prompt template
even when ``--sample-template`` showed the model another; else
``prompt``: the question before the recipe's template, which ``sft`` applies again), the ``completion``, the row's data ``fields`` and the per-checker
``rewards``, so the file feeds ``rl-reason sft`` as is (``sft.source: FILE.jsonl``).

``--sample-template TEMPLATE`` samples with another ``data.prompt_template`` (a few-shot
prompt that shows the answer form, as DeepSeek-R1 built its cold-start set) while the rows are
written with the recipe's own template: the SFT set then holds the prompt that RL will use,
not the example the sampler was shown. Records are the same (ids, order, fields) either way.

Never losing work: after each prompt its kept rows are appended to FILE and fsynced, then a
line for the prompt (id, samples, pass rate, rows kept) is appended to ``FILE.progress`` and
fsynced. A restarted run (after SIGKILL too) skips every prompt in the progress file and
first cuts FILE back to rows of those prompts, so a prompt whose rows were written but whose
progress line was not is sampled again without leaving its first rows behind: no duplicates.
The settings that decide the rows (policy, templates, n, ``--keep``, sampling, checkers, seed)
go to ``FILE.settings.json``; a restarted run with other settings is refused in one line
(exit 2) instead of mixing rows of two settings in FILE. ``--limit`` may change.
The summary (prompts, samples, pass@1, prompts with at least one correct, rows) is printed and
written to ``FILE.summary.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

KEEP = ("correct", "shortest-correct", "best")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="rejection sampling: n completions per prompt, keep the verified ones")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value")
    p.add_argument("--out", required=True, help="JSONL file of kept rows (appended to; resumable)")
    p.add_argument("--keep", choices=KEEP, default="correct")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument(
        "--n", type=int, default=None, help="completions per prompt (default rollout.num_generations)"
    )
    p.add_argument("--policy", choices=("student", "teacher"), default="student")
    p.add_argument(
        "--sample-template",
        default=None,
        help="data.prompt_template for sampling only (must contain {prompt}); rows keep the recipe's",
    )


def _progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress")


def _append(path: Path, rows: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _settings_path(out: Path) -> Path:
    return out.with_name(out.name + ".settings.json")


def sampling_settings(cfg, *, keep: str, n: int, policy: str, sample_template: Optional[str]) -> dict:
    """What decides the rows of FILE (not ``--limit``, which a resumed run may raise)."""
    r, d = cfg.rollout, cfg.data
    settings = {
        "model": cfg.model.name,
        "init_adapter": cfg.model.init_adapter,
        "policy": policy,
        "data": d.source,
        "prompt_template": d.prompt_template,
        "system_prompt": d.system_prompt,
        "template": d.template,
        "sample_template": sample_template,
        "n": n,
        "keep": keep,
        "temperature": r.temperature,
        "top_p": r.top_p,
        "top_k": r.top_k,
        "max_new_tokens": r.max_new_tokens,
        "stop": list(r.stop),
        "checkers": [[c.name, c.weight, dict(c.params)] for c in cfg.rewards.checkers],
        "seed": cfg.train.seed,
    }
    if policy == "teacher":
        settings["teacher"] = [cfg.teacher.model, cfg.teacher.adapter]
    return json.loads(json.dumps(settings))  # as the JSON file will hold it


def check_settings(out: Path, settings: dict, resuming: bool) -> None:
    """Refuse to append to FILE rows sampled with other settings; record them for the next run.

    A file written before settings were recorded (progress, no settings file) is taken as is."""
    from rl_reason.errors import ConfigError

    path = _settings_path(out)
    if path.exists() and resuming:
        before = json.loads(path.read_text(encoding="utf-8"))
        diff = [k for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"{out} was sampled with {k}={before.get(k)!r}, this run has {k}={settings.get(k)!r}"
                f"{f' (and {len(diff) - 1} more)' if len(diff) > 1 else ''}: give another --out, "
                "or the first run's settings to continue it"
            )
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(settings, indent=1))
    os.replace(tmp, path)


def restore(out: Path) -> dict[str, dict]:
    """Prompts done before (from FILE.progress), with FILE cut back to their rows only."""
    from rl_reason.tracking import read_jsonl

    done = {str(r["id"]): r for r in read_jsonl(_progress_path(out)) if "id" in r}
    if out.exists():
        rows = read_jsonl(out)
        kept = [r for r in rows if str(r.get("prompt_id")) in done]
        raw = out.read_text(encoding="utf-8", errors="replace")
        torn = bool(raw) and not raw.endswith("\n")
        if len(kept) != len(rows) or torn:  # rows of a prompt in flight, or a torn last line
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            with tmp.open("w", encoding="utf-8") as f:
                for r in kept:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
    return done


def choose(keep: str, texts, tokens, totals, correct) -> list[int]:
    """Indices of the completions to write, per ``--keep`` (pure; tests call it)."""
    idx = list(range(len(texts)))
    if keep == "best":
        if not idx:
            return []
        return [min(idx, key=lambda i: (-(totals[i] if totals[i] is not None else float("-inf")), tokens[i]))]
    ok = [i for i in idx if correct[i]]
    if keep == "shortest-correct":
        return [min(ok, key=lambda i: tokens[i])] if ok else []
    seen, out = set(), []
    for i in ok:  # distinct completions only
        if texts[i] not in seen:
            seen.add(texts[i])
            out.append(i)
    return out


def _row(record, rollout, i, scores, prompt_text) -> dict:
    row = {"prompt_id": record.id}
    if record.messages is not None:
        row["messages"] = record.messages
    else:
        row["prompt"] = prompt_text
    row.update(
        {
            "completion": rollout.completion_text,
            "fields": dict(record.fields),
            "rewards": {k: v[i] for k, v in scores.scores.items()},
            "total": scores.total[i],
            "correct": scores.correct[i],
            "tokens": len(rollout.completion_ids),
        }
    )
    return row


def sample(
    cfg,
    out: Path,
    *,
    keep: str = "correct",
    limit: Optional[int] = None,
    n: Optional[int] = None,
    policy: str = "student",
    sample_template: Optional[str] = None,
) -> dict:
    """Sample, grade and write; returns the summary (also FILE.summary.json)."""
    import torch

    from rewards.runner import CheckerSpec, Scorer
    from rl_reason import data
    from rl_reason.rollout import SamplingParams
    from rl_reason.rollout.factory import make_engine
    from rl_reason.train_state import seed_everything, step_seed

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = n or cfg.rollout.num_generations
    if sample_template is not None and "{prompt}" not in sample_template:
        from rl_reason.errors import ConfigError

        raise ConfigError(
            f"--sample-template {sample_template!r} has no {{prompt}}: put {{prompt}} where the question goes"
        )
    records = data.load_records(cfg.data, seed=cfg.train.seed)
    if limit is not None:
        records = records[:limit]
    done = restore(out)
    check_settings(
        out,
        sampling_settings(cfg, keep=keep, n=n, policy=policy, sample_template=sample_template),
        bool(done),
    )
    todo = [(pos, r) for pos, r in enumerate(records) if r.id not in done]
    if done:
        print(f"{out}: {len(done)} prompts done before, {len(todo)} to go", file=sys.stderr)
    if todo:
        seed_everything(cfg.train.seed)
        if policy == "teacher":
            from rl_reason.teacher import load_teacher_policy

            pol = load_teacher_policy(cfg)
        else:
            from rl_reason.policy import load_policy

            pol = load_policy(cfg.model, cfg.lora, seed=cfg.train.seed)
        engine = make_engine(cfg.rollout, pol, out.parent / f".{out.name}.engine")
        scorer = Scorer(
            [
                CheckerSpec(name=c.name, weight=c.weight, params=dict(c.params), alias=c.alias)
                for c in cfg.rewards.checkers
            ],
            timeout_s=cfg.rewards.timeout_s,
            workers=cfg.rewards.workers,
            on_error=cfg.rewards.on_error,
        )
        sampling = SamplingParams(
            max_new_tokens=cfg.rollout.max_new_tokens,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            stop=tuple(cfg.rollout.stop),
        )
        per = max(1, cfg.rollout.generation_batch_size // n)
        try:
            for start in range(0, len(todo), per):
                chunk = todo[start : start + per]
                # seeded by the chunk's first prompt: a restart samples its prompts afresh
                torch.manual_seed(step_seed(cfg.train.seed, chunk[0][0], 0))
                recs = [r for _, r in chunk]
                # what the model is shown: the same records under the sampling template, if any
                shown = (
                    recs
                    if sample_template is None
                    else [data.retemplated(r, cfg.data, sample_template) for r in recs]
                )
                ids = data.tokenize_prompts(shown, pol.tokenizer)
                rollouts = engine.generate(ids, n, sampling)
                fields = [
                    dict(recs[r.prompt_index].fields, completion_tokens=len(r.completion_ids))
                    for r in rollouts
                ]
                scores = scorer.score([r.completion_text for r in rollouts], fields)
                for j, rec in enumerate(recs):
                    mine = [i for i, r in enumerate(rollouts) if r.prompt_index == j]
                    picked = choose(
                        keep,
                        [rollouts[i].completion_text for i in mine],
                        [len(rollouts[i].completion_ids) for i in mine],
                        [scores.total[i] for i in mine],
                        [scores.correct[i] for i in mine],
                    )
                    # plain template: the question before templating, which sft renders again
                    prompt_text = rec.question if rec.question is not None else rec.text
                    _append(out, [_row(rec, rollouts[mine[k]], mine[k], scores, prompt_text) for k in picked])
                    n_ok = sum(bool(scores.correct[i]) for i in mine)
                    line = {
                        "id": rec.id,
                        "n": len(mine),
                        "correct": n_ok,
                        "pass_rate": n_ok / max(1, len(mine)),
                        "kept": len(picked),
                    }
                    _append(_progress_path(out), [line])
                    done[rec.id] = line
                print(f"sampled {len(done)}/{len(records)} prompts", file=sys.stderr, flush=True)
        finally:
            engine.close()
            scorer.close()
    return _summary(out, records, done, keep)


def _summary(out: Path, records, done: dict, keep: str) -> dict:
    lines = [done[r.id] for r in records if r.id in done]
    samples = sum(x["n"] for x in lines)
    summary = {
        "out": str(out),
        "keep": keep,
        "prompts": len(lines),
        "samples": samples,
        "pass_at_1": sum(x["correct"] for x in lines) / max(1, samples),
        "prompts_with_correct": sum(1 for x in lines if x["correct"] > 0),
        "rows": sum(x["kept"] for x in lines),
    }
    tmp = out.with_name(f".{out.name}.summary.tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out.with_name(out.name + ".summary.json"))
    return summary


def run(args) -> int:
    from rl_reason.config import check_checkers_resolve, load_config
    from rl_reason.errors import ConfigError
    from rl_reason.preflight import preflight

    if args.limit is not None and args.limit <= 0:
        raise ConfigError(f"--limit must be > 0, got {args.limit}")
    if args.n is not None and args.n <= 0:
        raise ConfigError(f"--n must be > 0, got {args.n}")
    cfg = load_config(args.recipe, args.overrides)
    check_checkers_resolve(cfg, args.recipe)
    preflight(cfg, args.recipe)
    if args.policy == "teacher" and not cfg.teacher.configured():
        raise ConfigError(
            "--policy teacher: the recipe has no teacher (set teacher.model and/or teacher.adapter)"
        )
    s = sample(
        cfg,
        Path(args.out),
        keep=args.keep,
        limit=args.limit,
        n=args.n,
        policy=args.policy,
        sample_template=args.sample_template,
    )
    print(
        f"{s['prompts']} prompts x {s['samples'] // max(1, s['prompts'])} samples: pass@1 {s['pass_at_1']:.3f}, "
        f"{s['prompts_with_correct']} prompts with a correct completion; {s['rows']} rows in {s['out']}"
    )
    return 0
