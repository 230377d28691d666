"""``rl-reason``: train | resume | validate | demo | eval | report | serve | sft | sample.

User mistakes (a broken recipe, a missing run dir, a bad override) end in one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

from rl_reason.demo import DEMO_RECIPE
from rl_reason.errors import RLReasonError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rl-reason", description="RL fine-tuning of LoRA adapters")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train from a recipe")
    t.add_argument("recipe")
    t.add_argument("overrides", nargs="*", help="key.path=value")
    t.add_argument("--run-dir", help="run directory (default: logging.runs_dir/run_name)")
    t.add_argument("--dry-run", action="store_true", help="check recipe, checkers and data; no model")
    t.add_argument("--resume", action="store_true", help="continue the run in the run dir")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run dir")

    r = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    r.add_argument("run_dir")
    r.add_argument("overrides", nargs="*", help="safe key.path=value (train.steps, logging.*, ...)")

    v = sub.add_parser("validate", help="print the resolved config, or one precise error")
    v.add_argument("recipe")
    v.add_argument("overrides", nargs="*")

    d = sub.add_parser("demo", help="GRPO on the arithmetic task with the embedded small model")
    d.add_argument("overrides", nargs="*")
    d.add_argument("--run-dir", default=None)

    # subcommands whose modules own their arguments (module top levels stay light: no torch)
    from rl_reason import eval_cli, report, sample, serve, sft

    for mod in (eval_cli, report, serve, sft, sample):
        mod.add_parser(sub)
    return p


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "urllib3", "filelock", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _load(recipe: str, overrides: list[str]):
    from rl_reason.config import check_checkers_resolve, load_config
    from rl_reason.preflight import preflight

    cfg = load_config(recipe, overrides)
    check_checkers_resolve(cfg, recipe)
    preflight(cfg, recipe)  # data files, device, keep-best: before any model loads
    return cfg


def cmd_validate(args) -> int:
    from rl_reason.config import dump_yaml

    cfg = _load(args.recipe, args.overrides)
    print(dump_yaml(cfg), end="")
    return 0


def _train(cfg, run_dir: Path, *, resume=None, overwrite: bool = False, recipe: Optional[str] = None) -> dict:
    """Train a new run (``resume`` None) or continue one (a ``runs.Resume``)."""
    from rl_reason import runs
    from rl_reason.trainer import Trainer

    if not cfg.logging.progress:  # the libraries' own bars too, before anything loads
        from rl_reason.tracking import quiet_library_progress

        quiet_library_progress()
    created = False
    if resume is not None:
        runs.record_config(run_dir, cfg)
        print(f"resuming {run_dir} from {resume.checkpoint.name}", file=sys.stderr)
    else:
        created = runs.prepare_new_run(run_dir, overwrite=overwrite)
        print(f"run dir: {run_dir}", flush=True)  # at the start too: where to look while it runs
    ckpt = resume.checkpoint if resume is not None else None
    try:
        trainer = Trainer(cfg, run_dir, resume_from=ckpt, recipe_path=recipe)
        summary = trainer.run()
    except BaseException:
        if created:  # a start that failed leaves no empty run dir behind
            runs.discard_failed_start(run_dir)
        raise
    if trainer.dist.is_main:
        before = summary["eval_before"].get("eval/accuracy")
        after = summary["eval_after"].get("eval/accuracy")
        if before is not None and after is not None:
            print(f"held-out accuracy: before={before:.3f} after={after:.3f}")
        elif after is not None:
            print(f"held-out accuracy: after={after:.3f}")
        # the run dir was printed at the start (or named by the resume); say what was made
        print(f"adapter: {run_dir / 'adapter'} (step {summary['step']} of {cfg.train.steps})")
    return summary


def _finished(plan, run_dir: Path) -> int:
    """A resume of a run that already reached train.steps: say so, load nothing."""
    from rl_reason import runs

    restored = runs.restore_final_outputs(run_dir, plan.checkpoint)
    note = f" (restored {', '.join(restored)} from {plan.checkpoint.name})" if restored else ""
    print(
        f"{run_dir} is finished at step {plan.step} (train.steps={plan.cfg.train.steps}){note}; "
        f"to train longer, raise train.steps: rl-reason resume {shlex.quote(str(run_dir))} "
        f"train.steps={max(plan.step * 2, plan.step + 1)}",
        file=sys.stderr,
    )
    return 0


def cmd_train(args) -> int:
    from rl_reason import runs

    if args.resume and args.overwrite:
        from rl_reason.errors import ConfigError

        raise ConfigError("--resume and --overwrite contradict each other; pick one")
    cfg = _load(args.recipe, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
    plan = None
    if args.resume and not cfg.stages:
        plan = runs.plan_resume(run_dir, [], new_cfg=cfg)
        cfg = plan.cfg
    if cfg.stages and not args.dry_run:  # a staged recipe: each stage in RUN_DIR/stages/<name>/
        from rl_reason import stages

        return stages.run_stages(
            cfg, run_dir, resume=args.resume, overwrite=args.overwrite, recipe=args.recipe
        )
    if args.dry_run:
        return _dry_run(cfg, run_dir)
    if plan is not None and plan.finished:
        return _finished(plan, run_dir)
    _train(cfg, run_dir, resume=plan, overwrite=args.overwrite, recipe=args.recipe)
    return 0


def _dry_run(cfg, run_dir: Path) -> int:
    from rl_reason import data
    from rl_reason.config import dump_yaml

    records = data.load_records(cfg.data, seed=cfg.train.seed)
    print(dump_yaml(cfg), end="")
    print(
        f"dry run: {len(records)} prompts, {cfg.train.steps} steps x "
        f"{cfg.rollout.prompts_per_step} prompts x {cfg.rollout.num_generations} completions; "
        f"run dir {run_dir}; checkers: {', '.join(c.name for c in cfg.rewards.checkers)}"
    )
    return 0


def cmd_resume(args) -> int:
    from rl_reason import runs
    from rl_reason.config import check_checkers_resolve

    run_dir = Path(args.run_dir)
    from rl_reason.preflight import preflight
    from rl_reason.sft import run_kind

    kind = run_kind(run_dir)  # an `sft` run or a staged recipe resumes through its own module
    if kind == "sft":
        from rl_reason.sft import resume_sft

        return resume_sft(run_dir, args.overrides)
    if kind == "stages":
        from rl_reason import stages

        return stages.resume(run_dir, args.overrides)

    plan = runs.plan_resume(run_dir, args.overrides)
    if plan.finished:  # nothing to train: no checkers, data or model needed
        return _finished(plan, run_dir)
    check_checkers_resolve(plan.cfg, str(run_dir / "config.yaml"))
    preflight(plan.cfg, str(run_dir / "config.yaml"))
    _train(plan.cfg, run_dir, resume=plan)
    return 0


def cmd_demo(args) -> int:
    from rl_reason import runs

    cfg = _load(str(DEMO_RECIPE), args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
    _train(cfg, run_dir, overwrite=True, recipe=str(DEMO_RECIPE))
    return 0


def _module_command(module: str):
    def run(args) -> int:
        import importlib

        return importlib.import_module(f"rl_reason.{module}").run(args)

    return run


COMMANDS = {
    "train": cmd_train,
    "resume": cmd_resume,
    "validate": cmd_validate,
    "demo": cmd_demo,
    "eval": _module_command("eval_cli"),
    "report": _module_command("report"),
    "serve": _module_command("serve"),
    "sft": _module_command("sft"),
    "sample": _module_command("sample"),
}


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    # argparse stops collecting positionals at the first option, so overrides written after
    # an option (``train R --run-dir D train.steps=4``) come back as unknown: take them back.
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:  # every subcommand takes overrides
        args.overrides = list(args.overrides) + extra
    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except RLReasonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
