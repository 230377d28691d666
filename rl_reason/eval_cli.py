"""``rl-reason eval``: accuracy, pass@k and answer lengths of a model (+ adapter) on a held-out set.

    rl-reason eval --model demo --adapter runs/demo_arith/adapter --data gsm8k --limit 50 \\
        --samples 8 --k 1,8 --compare

Writes ``eval.json`` (metrics + settings, with the answer-speed figures of
``rl_reason.eval_metrics``) and ``samples.jsonl`` (one graded completion per line, with its
tokens and seconds) to ``--out`` (default ``evals/<set>-<model>-<UTC time>``). With ``--compare``
the same prompts are sampled with the same seeds from the base model (adapter switched off) and
from base + adapter, and the table shows both and their difference. With ``--budgets 64,128,256``
every prompt is asked once per budget (stated in the prompt as in training with ``data.budget``);
``budgets.csv`` and ``budgets.png`` (accuracy against budget) go beside eval.json, whose
top-level metrics are then those of the largest budget.

Sampling and grading are ``rl_reason.evaluate.generate_and_grade``, the path the trainer's
evaluation takes too; this module is the shell around it (flags, files, printing).

This module's top level imports no torch/transformers: ``rl-reason --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

from rl_reason.errors import ConfigError

DEFAULT_SAMPLING_TEMPERATURE = 1.0  # samples > 1 without --temperature: the policy's own distribution
ENGINES = ("hf", "vllm")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="accuracy / pass@k of a model (+ LoRA adapter) on gsm8k, math500, aime24, amc23, humaneval or a file",
        description="Evaluate a base model, optionally with a LoRA adapter, on a held-out set.",
    )
    p.add_argument(
        "--model",
        help="base model: hub id, local dir, tiny-random or demo "
        "(default with --adapter RUN_DIR/adapter: the run's model.name)",
    )
    p.add_argument(
        "--adapter",
        help="PEFT adapter dir (e.g. runs/NAME/adapter); an adapter inside a "
        "run dir brings the run's model, template, system prompt and checkers",
    )
    p.add_argument(
        "--no-run-config",
        action="store_true",
        help="ignore RUN_DIR/config.yaml of --adapter: the flags and the set's defaults only",
    )
    p.add_argument(
        "--data",
        required=True,
        help="gsm8k | math500 | aime24 | amc23 | humaneval | arith (the demo task) | a .jsonl/.json/.parquet file",
    )
    p.add_argument(
        "--data-dir",
        help="folder with local copies of the built-in sets "
        "(default $RL_REASON_DATA_DIR); used when the file is there",
    )
    p.add_argument("--limit", type=int, help="first N prompts only")
    p.add_argument("--samples", type=int, default=1, help="completions per prompt (default 1)")
    p.add_argument("--k", default=None, help="comma list of k for pass@k (default: 1 and --samples)")
    p.add_argument("--engine", default="hf", choices=ENGINES)
    p.add_argument("--out", help="output dir (default evals/<set>-<model>-<UTC time>)")
    p.add_argument("--compare", action="store_true", help="also run the base model; show deltas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help=f"default: greedy for --samples 1, {DEFAULT_SAMPLING_TEMPERATURE} otherwise",
    )
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument(
        "--template",
        default=None,
        choices=("chat", "plain"),
        help="default: the run's data.template with a run's adapter, else chat",
    )
    p.add_argument("--prompt-template", help="question wrapper with {prompt}; default: the set's own")
    p.add_argument("--system-prompt", help="default: the run's data.system_prompt with a run's adapter")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per generate call")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="auto: bfloat16 on a GPU, float32 on the CPU",
    )
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument(
        "--budgets",
        help="comma list of token budgets, e.g. 64,128,256: evaluate at each (stated in the "
        "prompt); writes budgets.csv and budgets.png",
    )
    p.add_argument(
        "--budget-template",
        default=None,
        help="text appended to the prompt with {budget}; default: data.budget_template's default",
    )
    p.add_argument(
        "--tools",
        help="multi-turn with an environment, e.g. python (a fenced python block runs in the "
        "sandbox); a name or module:function (docs/ENVIRONMENTS.md)",
    )
    p.add_argument("--max-tool-calls", type=int, default=4, help="tool calls per completion (default 4)")
    p.add_argument(
        "--tool-output-tokens", type=int, default=256, help="longest tool output spliced in (default 256)"
    )
    p.add_argument(
        "--tool-format",
        default="fenced",
        choices=["fenced", "chat_template"],
        help="python tool calls as fenced blocks (default) or in the chat template's format",
    )
    return p


# --------------------------------------------------------------------------- argument checks


def parse_ks(text: Optional[str], samples: int) -> list[int]:
    """The k values for pass@k; each must be a whole number in 1..samples."""
    if text is None:
        return sorted({1, samples})
    ks = []
    for part in str(text).split(","):
        part = part.strip()
        if not re.fullmatch(r"\d+", part) or int(part) < 1:
            raise ConfigError(f"--k {text}: {part!r} is not a positive whole number; write e.g. --k 1,8")
        ks.append(int(part))
    too_big = [k for k in ks if k > samples]
    if too_big:
        raise ConfigError(
            f"--k {text}: pass@{max(too_big)} needs at least {max(too_big)} samples per prompt but "
            f"--samples is {samples}; raise --samples or drop that k"
        )
    return sorted(set(ks))


def _check_args(args) -> list[int]:
    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.temperature is not None and args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.prompt_template is not None and "{prompt}" not in args.prompt_template:
        raise ConfigError("--prompt-template must contain {prompt} where the question goes")
    if args.compare and not args.adapter:
        raise ConfigError("--compare needs --adapter (it compares the base model with base + adapter)")
    if args.adapter:
        check_adapter_dir(args.adapter)
    if args.engine == "vllm":
        vllm_eval_factory()
    args.budget_list = []
    if getattr(args, "budgets", None):
        from rl_reason.budget import parse_budget_list

        try:
            args.budget_list = sorted(set(parse_budget_list(args.budgets)))
        except ValueError as exc:
            raise ConfigError(f"--budgets {args.budgets}: {exc}") from None
    template = getattr(args, "budget_template", None)
    if template is not None and "{budget}" not in template:
        raise ConfigError("--budget-template must contain {budget} where the number goes")
    return parse_ks(args.k, args.samples)


def find_run_config(adapter: str) -> Optional[Path]:
    """RUN_DIR/config.yaml of an adapter inside a run dir (RUN_DIR/adapter, RUN_DIR/best_adapter,
    RUN_DIR/checkpoints/step-N/adapter), or None."""
    here = Path(adapter).expanduser().resolve()
    for parent in list(here.parents)[:3]:
        if (parent / "config.yaml").is_file() and (parent / "run.json").is_file():
            return parent / "config.yaml"
    return None


def apply_run_defaults(args) -> None:
    """With --adapter from a run, what the flags leave unset comes from the run's config:
    model, template, system prompt, trust_remote_code, and the checkers that grade."""
    args.run_config = None
    args.run_checkers = None
    path = find_run_config(args.adapter) if args.adapter and not args.no_run_config else None
    if path is not None:
        from rl_reason.config import from_dict
        from rl_reason.runs import saved_config

        cfg = from_dict(saved_config(path.parent), str(path))
        args.run_config = str(path)
        args.model = args.model or cfg.model.name
        args.template = args.template or cfg.data.template
        if args.system_prompt is None:
            args.system_prompt = cfg.data.system_prompt
        args.trust_remote_code = args.trust_remote_code or cfg.model.trust_remote_code
        args.run_checkers = [
            {"name": c.name, "params": dict(c.params), "weight": c.weight, "alias": c.alias}
            for c in cfg.rewards.checkers
        ]
    if not args.model:
        raise ConfigError(
            "--model is required unless --adapter is a run's adapter (RUN_DIR/adapter next to "
            "RUN_DIR/config.yaml); give --model NAME"
        )
    args.template = args.template or "chat"


def check_adapter_dir(path: str) -> None:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(
            f"--adapter {path}: no such directory; pass a run's adapter folder, e.g. runs/NAME/adapter"
        )
    if not (p / "adapter_config.json").is_file():
        raise ConfigError(
            f"--adapter {path}: no adapter_config.json there, so it is not a PEFT adapter; "
            "pass a run's adapter folder, e.g. runs/NAME/adapter"
        )


def sampling_settings(samples: int, temperature: Optional[float]) -> tuple[bool, float]:
    """(greedy, temperature): one sample is greedy unless a temperature is asked for."""
    if temperature is None:
        return (True, 0.0) if samples == 1 else (False, DEFAULT_SAMPLING_TEMPERATURE)
    return temperature == 0, temperature


def default_out_dir(data_name: str, model: str, now: Optional[float] = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    short = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.rstrip("/")).name) or "model"
    return Path("evals") / f"{data_name}-{short}-{stamp}"


# --------------------------------------------------------------------------- model and engine


def resolve_dtype(dtype: str, device_type: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device_type == "cuda" else "float32"
    return dtype


def load_eval_policy(
    model: str, adapter: Optional[str], *, device: str, dtype: str, trust_remote_code: bool = False
):
    """The flags as a ModelConfig, loaded by ``policy.load_saved_policy`` (base frozen in eval
    mode, the adapter attached when one is given); errors name the flags."""
    from rl_reason.config import ModelConfig
    from rl_reason.policy import load_saved_policy, pick_device

    dev = pick_device(device)
    model_cfg = ModelConfig(
        name=model, dtype=resolve_dtype(dtype, dev.type), trust_remote_code=trust_remote_code
    )
    return load_saved_policy(model_cfg, adapter, dev, keys=("--model", "--dtype"))


def vllm_eval_factory():
    """The vLLM engine maker for evaluation, or a one-line ConfigError when there is none.

    Contract with ``rl_reason.rollout.vllm_engine``: ``eval_engine(model_path, *, adapter_path,
    dtype, seed, max_model_len)`` returns a RolloutEngine that samples from base (+ adapter).
    """
    try:
        from rl_reason.rollout import vllm_engine
    except ImportError as exc:
        raise ConfigError(
            "--engine vllm: this build's vLLM engine is not available; use --engine hf"
        ) from exc
    try:  # rollout/ is the one importer of vllm
        vllm_engine.import_vllm()
    except Exception as exc:
        raise ConfigError(
            "--engine vllm: the vllm package is not available here (install vllm on a GPU machine); use --engine hf"
        ) from exc
    factory = getattr(vllm_engine, "eval_engine", None)
    if factory is None:
        raise ConfigError(
            "--engine vllm: the vLLM engine is not available for evaluation in this build "
            "(rl_reason.rollout.vllm_engine has no eval_engine); use --engine hf"
        )
    return factory


def make_vllm_engine(model: str, adapter: Optional[str], args):
    import torch

    from rl_reason.model_zoo import resolve_model

    dtype = resolve_dtype(args.dtype, "cuda" if torch.cuda.is_available() else "cpu")
    return vllm_eval_factory()(
        resolve_model(model), adapter_path=adapter, dtype=dtype, seed=args.seed, max_model_len=None
    )


# --------------------------------------------------------------------------- passes


def tool_settings(args):
    """--tools as the multi-turn driver's settings (None without it)."""
    if not getattr(args, "tools", None):
        return None
    from rl_reason.envs import make_factory
    from rl_reason.rollout.multiturn import ToolSettings

    if args.max_tool_calls < 0 or args.tool_output_tokens <= 0:
        raise ConfigError("--max-tool-calls must be >= 0 and --tool-output-tokens > 0")
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    return ToolSettings(make_factory(names, {}), args.max_tool_calls, args.tool_output_tokens)


def _tools_for(args, tokenizer):
    """--tools with --tool-format chat_template: calls in the tokenizer's template format."""
    settings = getattr(args, "tool_settings", None)
    if settings is None or getattr(args, "tool_format", "fenced") != "chat_template":
        return settings
    import dataclasses

    from rl_reason.envs.chat_tools import chat_template_factory

    return dataclasses.replace(settings, make_env=chat_template_factory(settings.make_env, tokenizer))


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _one_pass(
    label: str, engine, policy_tok, eval_set, args, sampling, scorer, progress
) -> tuple[dict, list]:
    """One model variant over the set: rl_reason.evaluate's generate_and_grade + summarize."""
    from rl_reason import evaluate
    from rl_reason.data import tokenize_prompts

    records = eval_set.records
    task = progress.add_task(f"{label}: generating + grading", total=len(records))
    t0 = time.perf_counter()
    graded = evaluate.generate_and_grade(
        engine,
        tokenize_prompts(records, policy_tok),
        records,
        scorer,
        sampling,
        samples=args.samples,
        kind=eval_set.kind,
        chunk_prompts=max(1, args.batch_size // args.samples),
        seed=args.seed,
        on_chunk=lambda n: progress.advance(task, n),
        tools=_tools_for(args, policy_tok),
        tokenizer=policy_tok,
    )
    wall = time.perf_counter() - t0
    metrics = evaluate.summarize(graded.results, args.ks, wall)
    tokens = sum(r.tokens for r in graded.results)
    metrics["tokens_per_s"] = tokens / graded.gen_s if graded.gen_s > 0 else 0.0
    metrics["gen_s"] = graded.gen_s
    metrics["score_s"] = graded.score_s
    return metrics, graded.results


def _check_template(args, tokenizer) -> None:
    if args.template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"--model {args.model} has no chat template (a base model?); use --template plain")


def _hf_passes(args, eval_sets, sampling, scorer, progress) -> dict:
    """{budget (None without --budgets): {variant: (metrics, results)}}; the model loads once."""
    from rl_reason.rollout.hf import HFEngine

    policy = load_eval_policy(
        args.model,
        args.adapter,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    _check_template(args, policy.tokenizer)
    args.device_used = policy.device.type
    args.dtype_used = resolve_dtype(args.dtype, policy.device.type)
    sweep: dict = {budget: {} for budget, _ in eval_sets}
    if args.compare:
        plain = HFEngine(policy, batch_size=args.batch_size, merge_for_generation=False)
        with policy.reference():
            for budget, eval_set in eval_sets:
                sweep[budget]["base"] = _one_pass(
                    _tag("base", budget), plain, policy.tokenizer, eval_set, args, sampling, scorer, progress
                )
    engine = HFEngine(policy, batch_size=args.batch_size, merge_for_generation=bool(args.adapter))
    label = "adapter" if args.adapter else "model"
    for budget, eval_set in eval_sets:
        sweep[budget][label] = _one_pass(
            _tag(label, budget), engine, policy.tokenizer, eval_set, args, sampling, scorer, progress
        )
    return sweep


def _tag(label: str, budget) -> str:
    return label if budget is None else f"{label} @{budget}"


def _vllm_passes(args, eval_sets, sampling, scorer, progress) -> dict:
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_tokenizer

    tokenizer = load_tokenizer(resolve_model(args.model), args.trust_remote_code)
    _check_template(args, tokenizer)
    variants = ([("base", None)] if args.compare else []) + [
        ("adapter" if args.adapter else "model", args.adapter)
    ]
    sweep: dict = {budget: {} for budget, _ in eval_sets}
    for label, adapter in variants:
        engine = make_vllm_engine(args.model, adapter, args)
        try:
            for budget, eval_set in eval_sets:
                sweep[budget][label] = _one_pass(
                    _tag(label, budget), engine, tokenizer, eval_set, args, sampling, scorer, progress
                )
        finally:
            engine.close()
    return sweep


def budget_sets(eval_set, budgets, template: Optional[str] = None) -> list[tuple]:
    """[(budget, EvalSet with that budget in every prompt and fields.budget)], or [(None, eval_set)]."""
    import dataclasses

    from rl_reason.budget import DEFAULT_TEMPLATE, with_budget

    if not budgets:
        return [(None, eval_set)]
    template = template or DEFAULT_TEMPLATE
    return [
        (b, dataclasses.replace(eval_set, records=[with_budget(r, b, template) for r in eval_set.records]))
        for b in budgets
    ]


# --------------------------------------------------------------------------- output


def _settings(args, eval_set, greedy: bool, temperature: float) -> dict[str, Any]:
    from rl_reason import __version__

    return {
        "model": args.model,
        "adapter": args.adapter,
        "run_config": args.run_config,
        "data": args.data,
        "data_source": eval_set.source,
        "kind": eval_set.kind,
        "checkers": eval_set.checkers,
        "skipped_rows": eval_set.skipped,
        "engine": args.engine,
        "samples": args.samples,
        "k": args.ks,
        "limit": args.limit,
        "greedy": greedy,
        "temperature": temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "template": args.template,
        "prompt_template": eval_set.prompt_template,
        "system_prompt": args.system_prompt,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "budgets": list(getattr(args, "budget_list", []) or []) or None,
        "seconds_per_answer": "lockstep estimate per generate call (exact at --batch-size 1); "
        "see rl_reason/eval_metrics.py",
        "device": getattr(args, "device_used", args.device),
        "dtype": getattr(args, "dtype_used", args.dtype),
        "compare": bool(args.compare),
        "tools": getattr(args, "tools", None),
        "max_tool_calls": args.max_tool_calls if getattr(args, "tools", None) else None,
        "tool_format": getattr(args, "tool_format", "fenced") if getattr(args, "tools", None) else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rl_reason_version": __version__,
    }


def write_outputs(
    out_dir: Path, settings: dict, passes: dict[str, tuple[dict, list]], sweep: Optional[dict] = None
) -> dict:
    """eval.json: the evaluated model's metrics at the top level (base + adapter when it has
    one) plus settings; under --compare also ``runs`` {base, adapter} and ``delta``. ``sweep``
    ({budget: passes}, from --budgets) adds the ``budgets`` table, budgets.csv and budgets.png,
    and every budget's samples go into samples.jsonl."""
    from dataclasses import asdict

    from rl_reason.evaluate import compare

    out_dir.mkdir(parents=True, exist_ok=True)
    label = "adapter" if "adapter" in passes else "model"
    report: dict[str, Any] = dict(passes[label][0])
    report.update(settings)
    if "base" in passes:
        report["runs"] = {"base": passes["base"][0], "adapter": passes["adapter"][0]}
        report["delta"] = compare(passes["base"][0], passes["adapter"][0])
        # the wall time of the whole evaluation: both passes, not the adapter's alone
        report["wall_s"] = passes["base"][0]["wall_s"] + passes["adapter"][0]["wall_s"]
    if sweep:
        report["budgets"] = write_budget_table(out_dir, sweep)
    tmp = out_dir / "eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out_dir / "eval.json")
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        for one in sweep.values() if sweep else [passes]:
            for variant, (_, results) in one.items():
                for r in results:
                    row = asdict(r)
                    if "base" in passes:
                        row = {"variant": variant, **row}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return report


def write_budget_table(out_dir: Path, sweep: dict) -> list[dict]:
    """One row per (budget, variant) into budgets.csv, and budgets.png (accuracy vs budget)."""
    import csv

    from rl_reason.eval_metrics import budget_row
    from rl_reason.report import budget_curve_png

    rows = [
        budget_row(budget, variant, results)
        for budget in sorted(sweep)
        for variant, (_, results) in sweep[budget].items()
    ]
    with open(out_dir / "budgets.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "budgets.png").write_bytes(budget_curve_png(rows))
    return rows


def _fmt(key: str, value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "-"
    if key.startswith("tokens"):
        return f"{value:+.1f}" if signed else f"{value:.1f}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def print_report(report: dict, out_dir: Path, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from rl_reason.evaluate import flat_metrics

    console = console or Console()
    console.print(
        f"{report['data']}: {report['n_prompts']} prompts x {report['samples']} samples, "
        + ("greedy" if report["greedy"] else f"temperature {report['temperature']}")
    )
    if "runs" in report:
        base, adapter = flat_metrics(report["runs"]["base"]), flat_metrics(report["runs"]["adapter"])
        table = Table()
        for col in ("metric", "base", "adapter", "delta"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for key in adapter:
            diff = None if base[key] is None or adapter[key] is None else adapter[key] - base[key]
            table.add_row(key, _fmt(key, base[key]), _fmt(key, adapter[key]), _fmt(key, diff, signed=True))
    else:
        table = Table()
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in flat_metrics(report).items():
            table.add_row(key, _fmt(key, value))
    console.print(table)
    if report.get("budgets"):
        bt = Table(title="accuracy vs budget")
        columns = ("budget", "variant", "accuracy", "tokens_mean", "within_budget_frac", "tokens_per_correct")
        for col in columns:
            bt.add_column(col, justify="left" if col == "variant" else "right")
        for row in report["budgets"]:
            bt.add_row(str(row["budget"]), row["variant"], *(_fmt(c, row[c]) for c in columns[2:]))
        console.print(bt)
    both = " for both passes" if "runs" in report else ""
    console.print(
        f"{report['wall_s']:.1f} s{both}, {report['tokens_per_s']:.1f} generated tokens/s; "
        f"wrote {out_dir / 'eval.json'} and samples.jsonl",
        soft_wrap=True,  # a long path stays on one line, copyable
    )


# --------------------------------------------------------------------------- entry point


def run(args) -> int:
    from rewards.runner import Scorer
    from rl_reason.eval_sets import load_eval_set
    from rl_reason.rollout import SamplingParams

    if args.adapter:
        check_adapter_dir(args.adapter)
    apply_run_defaults(args)
    args.ks = _check_args(args)
    _quiet_progress_bars()
    eval_set = load_eval_set(
        args.data,
        limit=args.limit,
        template=args.template,
        prompt_template=args.prompt_template,
        system_prompt=args.system_prompt,
        data_dir=args.data_dir,
    )
    if args.run_checkers:  # graded as the run was rewarded
        eval_set.checkers = args.run_checkers
    if eval_set.skipped:
        print(f"note: skipped {eval_set.skipped} rows without a question/answer", file=sys.stderr)
    args.tool_settings = tool_settings(args)
    greedy, temperature = sampling_settings(args.samples, args.temperature)
    sampling = SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=temperature if not greedy else 1.0,
        top_p=args.top_p,
        greedy=greedy,
    )
    out_dir = Path(args.out) if args.out else default_out_dir(eval_set.name, args.model)
    passes_fn = _vllm_passes if args.engine == "vllm" else _hf_passes
    eval_sets = budget_sets(eval_set, args.budget_list, args.budget_template)
    with Scorer(eval_set.checker_specs(), timeout_s=eval_set.timeout_s, workers=_scorer_workers()) as scorer:
        with _progress() as progress:
            sweep = passes_fn(args, eval_sets, sampling, scorer, progress)
    passes = sweep[eval_sets[-1][0]]  # the largest budget's (or the only) passes
    settings = _settings(args, eval_set, greedy, temperature)
    report = write_outputs(out_dir, settings, passes, sweep=sweep if args.budget_list else None)
    print_report(report, out_dir)
    return 0


def _quiet_progress_bars() -> None:
    """Our own bar is the one to watch; the libraries' load bars would interleave with it."""
    try:
        from datasets.utils.logging import disable_progress_bar as quiet_datasets
        from transformers.utils.logging import disable_progress_bar as quiet_transformers

        quiet_datasets()
        quiet_transformers()
    except Exception:  # pragma: no cover - cosmetics only
        pass


def _scorer_workers() -> int:
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))
