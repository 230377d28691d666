"""``rl-reason``: train | resume | validate | demo | eval | report | serve.

User mistakes (a broken recipe, a missing run dir, a bad override) end in one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
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
    from rl_reason import eval_cli, report, serve

    for mod in (eval_cli, report, serve):
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

    cfg = load_config(recipe, overrides)
    check_checkers_resolve(cfg, recipe)
    return cfg


def cmd_validate(args) -> int:
    from rl_reason.config import dump_yaml

    cfg = _load(args.recipe, args.overrides)
    print(dump_yaml(cfg), end="")
    return 0


def _train(cfg, run_dir: Path, *, resume: bool, overwrite: bool, recipe: Optional[str]) -> dict:
    from rl_reason import runs
    from rl_reason.errors import RunDirError
    from rl_reason.trainer import Trainer

    ckpt = None
    if resume:
        ckpt = runs.latest_checkpoint(run_dir)
        if ckpt is None:
            raise RunDirError(f"{run_dir} has no usable checkpoint to resume from; start it with train")
        print(f"resuming {run_dir} from {ckpt.name}", file=sys.stderr)
    else:
        runs.prepare_new_run(run_dir, overwrite=overwrite)
    trainer = Trainer(cfg, run_dir, resume_from=ckpt, recipe_path=recipe)
    summary = trainer.run()
    if trainer.dist.is_main:
        before = summary["eval_before"].get("eval/accuracy")
        after = summary["eval_after"].get("eval/accuracy")
        if before is not None and after is not None:
            print(f"held-out accuracy: before={before:.3f} after={after:.3f}")
        elif after is not None:
            print(f"held-out accuracy: after={after:.3f}")
        print(f"run dir: {run_dir}")
    return summary


def cmd_train(args) -> int:
    from rl_reason import runs

    cfg = _load(args.recipe, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
    if args.resume and args.overwrite:
        from rl_reason.errors import ConfigError

        raise ConfigError("--resume and --overwrite contradict each other; pick one")
    if args.resume:
        cfg = runs.resume_config(run_dir, [], new_cfg=cfg)
    if args.dry_run:
        return _dry_run(cfg, run_dir)
    _train(cfg, run_dir, resume=args.resume, overwrite=args.overwrite, recipe=args.recipe)
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
    cfg = runs.resume_config(run_dir, args.overrides)
    check_checkers_resolve(cfg, str(run_dir / "config.yaml"))
    _train(cfg, run_dir, resume=True, overwrite=False, recipe=None)
    return 0


def cmd_demo(args) -> int:
    from rl_reason import runs

    cfg = _load(str(DEMO_RECIPE), args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
    _train(cfg, run_dir, resume=False, overwrite=True, recipe=str(DEMO_RECIPE))
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
