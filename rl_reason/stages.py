"""``stages:``: several runs in order in one run directory, each seeding the next.

A recipe with ``stages: [{name: cold_start, kind: sft, ...}, {name: rl, kind: grpo, ...}]``
runs each stage as its own run in ``RUN_DIR/stages/<name>/`` (the run-dir layout of ``sft``
or ``train``: config.yaml, metrics.jsonl, checkpoints/, adapter/). A stage's config is the
recipe without ``stages``, with the stage's section overrides merged in, ``algorithm.name``
set to its ``kind`` (RL stages), and ``model.init_adapter`` set to the previous stage's
``adapter/`` (the first stage keeps the recipe's own ``init_adapter``, if any).

A finished stage writes ``stage.json`` (atomically) last. ``rl-reason resume RUN_DIR``
skips the stages that have it, resumes the first one that does not from its latest
checkpoint (``runs.plan_resume`` checks the stage's config against that checkpoint's), or
starts it when it has none, and goes on with the rest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rl_reason.config import RunConfig, check_stages, config_hash, dump_yaml, from_dict, stage_config
from rl_reason.errors import ConfigError

KIND = "stages"
DONE_FILE = "stage.json"


def stage_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "stages" / name


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(data, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _run_rl(scfg: RunConfig, sdir: Path, recipe) -> bool:
    """One RL stage, fresh or resumed; True when it reached train.steps."""
    from rl_reason import checkpoint, runs
    from rl_reason.trainer import Trainer

    plan = None
    if checkpoint.find_latest(sdir) is not None:
        plan = runs.plan_resume(sdir, [], new_cfg=scfg)
        if plan.finished:
            runs.restore_final_outputs(sdir, plan.checkpoint)
            return True
        runs.record_config(sdir, plan.cfg)
        print(f"resuming {sdir} from {plan.checkpoint.name}", file=sys.stderr)
    else:
        runs.prepare_new_run(sdir, overwrite=True)  # nothing to resume in it: start the stage over
        print(f"stage dir: {sdir}", flush=True)
    trainer = Trainer(scfg, sdir, resume_from=plan.checkpoint if plan else None, recipe_path=recipe)
    summary = trainer.run()
    return summary["step"] >= scfg.train.steps


def _run_sft(scfg: RunConfig, sdir: Path, recipe) -> bool:
    from rl_reason import checkpoint, runs, sft

    ckpt = checkpoint.find_latest(sdir)
    if ckpt is not None:
        plan = runs.plan_resume(sdir, [], new_cfg=scfg)
        step, total = sft.finished_step(plan.checkpoint)
        if total and step >= total:
            runs.restore_final_outputs(sdir, plan.checkpoint)
            return True
        summary = sft.train_sft(plan.cfg, sdir, resume_from=plan.checkpoint)
    else:
        summary = sft.train_sft(scfg, sdir, overwrite=True, recipe=recipe)
    return (sdir / "adapter").is_dir() and summary.get("stopped") is not True


def run_stages(cfg: RunConfig, run_dir: Path, *, resume: bool, overwrite: bool = False, recipe=None) -> int:
    """Run (or continue) every stage in order; 0 when all finished."""
    from rl_reason import runs

    run_dir = Path(run_dir)
    if resume:
        runs.record_config(run_dir, cfg)
    else:
        created = runs.prepare_new_run(run_dir, overwrite=overwrite)
        if not created and (run_dir / "stages").exists() and not overwrite:
            raise ConfigError(
                f"{run_dir} already holds stages; use rl-reason resume {run_dir} or --overwrite"
            )
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
        meta = {"config_hash": config_hash(cfg), "recipe": recipe, "kind": KIND}
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        print(f"run dir: {run_dir}", flush=True)
    prev = cfg.model.init_adapter
    for i, stage in enumerate(cfg.stages):
        sdir = stage_dir(run_dir, stage.name)
        done = sdir / DONE_FILE
        if done.is_file():
            prev = str(sdir / "adapter")
            continue
        scfg = stage_config(cfg, i, prev)
        sdir.parent.mkdir(parents=True, exist_ok=True)
        print(f"stage {i + 1}/{len(cfg.stages)}: {stage.name} ({stage.kind})", file=sys.stderr, flush=True)
        finished = (_run_sft if stage.kind == "sft" else _run_rl)(scfg, sdir, recipe)
        if not finished:  # stopped by a signal: its checkpoint is written; resume continues here
            print(f"stopped in stage {stage.name}; resume with: rl-reason resume {run_dir}", file=sys.stderr)
            return 0
        _atomic_json(done, {"name": stage.name, "kind": stage.kind, "adapter": str(sdir / "adapter")})
        prev = str(sdir / "adapter")
    print(f"stages done: {', '.join(s.name for s in cfg.stages)}; final adapter: {prev}")
    return 0


def resume(run_dir: Path, overrides: list[str]) -> int:
    from rl_reason.config import apply_overrides
    from rl_reason.runs import saved_config

    run_dir = Path(run_dir)
    data = saved_config(run_dir)
    if overrides:
        data = apply_overrides(data, overrides)
    cfg = from_dict(data, str(run_dir / "config.yaml") + (" + overrides" if overrides else ""))
    return run_stages(cfg, run_dir, resume=True)


__all__ = ["check_stages", "resume", "run_stages", "stage_config", "stage_dir"]
