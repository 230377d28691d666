"""``rl-reason sft RECIPE``: supervised fine-tuning of the recipe's LoRA adapter with TRL.

TRL's ``SFTTrainer`` does the optimisation (loss on completion tokens only through its
``completion_only_loss``, padding, the optimizer, schedule and its own checkpoint/resume). What
is ours:

- the rows are tokenized here, not by TRL: the prompt goes through ``data.tokenize_prompts``,
  the very function RL rollouts use, so the prompt tokens an SFT adapter learns after are
  exactly the ones it sees in ``train`` (same chat template, system prompt and prompt
  template); the completion is what the chat template puts after that prompt, cut after the
  first EOS, as a sampled completion ends. TRL then gets ``input_ids`` + ``completion_mask``
  and builds the labels (-100 on the prompt);
- the model is ``policy.load_policy`` (the frozen base, the recipe's ``lora:``, and
  ``model.init_adapter``), so the saved adapter loads into ``train`` unchanged;
- the run directory is a ``train`` run's: ``config.yaml``, ``run.json`` (``kind: sft``),
  ``metrics.jsonl`` (``sft/loss``, ``sft/lr``, ``sft/grad_norm`` per step), ``adapter/`` and
  atomic ``checkpoints/step-N/`` (``checkpoint.save``: TRL's checkpoint under ``hf/`` plus the
  adapter, with a manifest), so ``rl-reason resume RUN_DIR`` continues it. TRL writes its
  checkpoint in ``RUN_DIR/.hf/`` and it is moved into the atomic checkpoint at once; resuming
  uses TRL's own ``resume_from_checkpoint`` (optimizer, schedule, RNG, data position), which
  reproduces the uninterrupted run bitwise on the CPU (tests/rl_reason/test_sft.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rl_reason.config import DataConfig, RunConfig, config_hash, dump_yaml, to_dict
from rl_reason.errors import ConfigError, DataError

log = logging.getLogger("rl_reason")

KIND = "sft"
HF_DIR = ".hf"  # TRL's checkpoints land here before they move into checkpoints/step-N/hf
RUN_FILE = "run.json"


@dataclass
class SftExample:
    """One tokenized row: prompt tokens as RL renders them, then the completion's."""

    id: str
    prompt_ids: list[int]
    completion_ids: list[int]


# --------------------------------------------------------------------------- data


def _rows(cfg: RunConfig) -> list[dict]:
    from rl_reason import data

    s = cfg.sft
    if not s.source:
        raise ConfigError(
            "sft.source: rl-reason sft needs a data file or hub dataset id (sft.source=FILE.jsonl)"
        )
    dcfg = DataConfig(source=s.source, config_name=s.config_name, split=s.split)
    rows = data._load_rows(dcfg, None)
    if s.limit is not None:
        rows = rows[: s.limit]
    if not rows:
        raise DataError(f"sft.source={s.source!r}: no rows")
    return rows


def _messages_of(value: Any, where: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        raise DataError(f"{where}: messages must be a list of {{role, content}} objects")
    return [{"role": m["role"], "content": m.get("content") or ""} for m in value]


def row_prompt_completion(row: dict, index: int, cfg: RunConfig):
    """(PromptRecord, completion text) of one row; DataError naming the row otherwise."""
    from rl_reason import data

    s = cfg.sft
    rid = str(row.get("id", index))
    where = f"{s.source}: row {index + 1}"
    completion = row.get(s.completion_field)
    if isinstance(completion, list):  # conversational completion: [{role: assistant, content}]
        completion = "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    messages = row.get(s.messages_field)
    if messages is not None:
        messages = _messages_of(messages, where)
        if completion is None:
            if not messages or messages[-1]["role"] != "assistant":
                raise DataError(
                    f"{where}: a {s.messages_field!r} row without {s.completion_field!r} must end "
                    "with an assistant turn (the completion)"
                )
            completion = messages[-1]["content"]
            messages = messages[:-1]
        if cfg.data.template == "chat":
            return data.PromptRecord(id=rid, messages=messages), completion
        # plain template: the conversation's text as written
        text = "\n\n".join(m["content"] for m in messages)
        return data.PromptRecord(id=rid, text=text), completion
    prompt = row.get(s.prompt_field)
    if isinstance(prompt, list):  # conversational prompt
        return data.PromptRecord(id=rid, messages=_messages_of(prompt, where)), completion
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(
            f"{where}: no {s.prompt_field!r} text and no {s.messages_field!r}; set sft.prompt_field / "
            f"sft.messages_field to the file's columns (it has: {', '.join(sorted(row))})"
        )
    if not isinstance(completion, str):
        raise DataError(f"{where}: no {s.completion_field!r} text; set sft.completion_field")
    return data._make_record(rid, prompt, {}, cfg.data), completion


def _completion_ids(record, completion: str, tokenizer) -> list[int]:
    """What follows the prompt in the rendered conversation, cut after the first EOS."""
    from rl_reason.data import render_prompt

    eos = tokenizer.eos_token_id
    if record.messages is not None:
        prompt_text = render_prompt(record, tokenizer)
        full = tokenizer.apply_chat_template(
            record.messages + [{"role": "assistant", "content": completion}], tokenize=False
        )
        tail = full[len(prompt_text) :] if full.startswith(prompt_text) else completion
        ids = list(tokenizer(tail, add_special_tokens=False)["input_ids"])
    else:
        ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
    else:
        ids.append(eos)
    return ids


def examples(cfg: RunConfig, tokenizer) -> list[SftExample]:
    from rl_reason.data import tokenize_prompts

    out = []
    for i, row in enumerate(_rows(cfg)):
        record, completion = row_prompt_completion(row, i, cfg)
        prompt_ids = tokenize_prompts([record], tokenizer)[0]
        out.append(SftExample(record.id, prompt_ids, _completion_ids(record, completion, tokenizer)))
    return out


def dataset(exs: list[SftExample]):
    """A tokenized dataset TRL takes as is: ``input_ids`` and ``completion_mask``."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "input_ids": [e.prompt_ids + e.completion_ids for e in exs],
            "completion_mask": [[0] * len(e.prompt_ids) + [1] * len(e.completion_ids) for e in exs],
        }
    )


# --------------------------------------------------------------------------- the trainer


def _callback(run: "SftRun"):
    from transformers import TrainerCallback

    class Bridge(TrainerCallback):
        """TRL's events -> our metrics.jsonl, atomic checkpoints and the stop flag."""

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs or run.tracker is None:
                return
            row = {"sft/loss": float(logs["loss"])}
            for src, dst in (
                ("learning_rate", "sft/lr"),
                ("grad_norm", "sft/grad_norm"),
                ("epoch", "sft/epoch"),
            ):
                if logs.get(src) is not None:
                    row[dst] = float(logs[src])
            run.tracker.log(state.global_step, row)

        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= state.max_steps or run.stop.requested:
                control.should_save = True
            if run.stop.requested:
                control.should_training_stop = True

        def on_save(self, args, state, control, **kw):
            run.store_checkpoint(state.global_step)

    return Bridge()


class SftRun:
    """One SFT run in ``run_dir`` (fresh, or resumed from ``resume_from``)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume_from: Optional[Path] = None, recipe=None):
        self.cfg, self.run_dir, self.resume_from, self.recipe = cfg, Path(run_dir), resume_from, recipe
        self.tracker = None
        from rl_reason.train_state import StopFlag

        self.stop = StopFlag()

    # ------------------------------------------------------------------ build
    def _args(self):
        from trl import SFTConfig

        cfg, s = self.cfg, self.cfg.sft
        every = cfg.checkpoint.every
        return SFTConfig(
            output_dir=str(self.run_dir / HF_DIR),
            max_steps=s.steps if s.steps is not None else -1,
            num_train_epochs=s.epochs,
            per_device_train_batch_size=s.batch_size,
            gradient_accumulation_steps=s.grad_accum,
            learning_rate=s.lr,
            lr_scheduler_type=s.lr_schedule,
            warmup_steps=s.warmup_steps,
            weight_decay=cfg.train.weight_decay,
            max_grad_norm=cfg.train.max_grad_norm,
            max_length=s.max_length,
            completion_only_loss=True,
            logging_steps=1,
            save_strategy="steps" if every else "no",
            save_steps=every or 500,
            report_to=[],
            disable_tqdm=not _progress(cfg),
            seed=cfg.train.seed,
            data_seed=cfg.train.seed,
            use_cpu=self.policy.device.type == "cpu",
            dataloader_num_workers=0,
            bf16=cfg.model.dtype == "bfloat16" and self.policy.device.type == "cuda",
            gradient_checkpointing=False,  # load_base already applied model.gradient_checkpointing
            dataset_num_proc=None,
        )

    def build(self):
        from transformers.trainer_callback import PrinterCallback
        from trl import SFTTrainer

        from rl_reason.policy import load_policy
        from rl_reason.tracking import Tracker

        cfg = self.cfg
        self.policy = load_policy(cfg.model, cfg.lora, seed=cfg.train.seed)
        self.policy.tokenizer.padding_side = "right"  # training batches; TRL's collator pads itself
        self.examples = examples(cfg, self.policy.tokenizer)
        self.trainer = SFTTrainer(
            model=self.policy.model,
            args=self._args(),
            train_dataset=dataset(self.examples),
            processing_class=self.policy.tokenizer,
            callbacks=[_callback(self)],
        )
        self.trainer.remove_callback(PrinterCallback)  # our Tracker prints the step lines
        start = self._start_step()
        state = None
        if self.resume_from is not None:
            from rl_reason import checkpoint

            state = checkpoint.read_manifest(self.resume_from).get("tracker") or {}
        self.tracker = Tracker(
            self.run_dir,
            cfg.logging,
            total_steps=self.total_steps(),
            config_dict=to_dict(cfg),
            start_step=start,
            state=state,
        )
        return self

    def total_steps(self) -> int:
        s = self.cfg.sft
        if s.steps is not None:
            return s.steps
        import math

        per_epoch = math.ceil(math.ceil(len(self.examples) / s.batch_size) / s.grad_accum)
        return max(1, math.ceil(per_epoch * s.epochs))

    def _start_step(self) -> int:
        if self.resume_from is None:
            return 0
        from rl_reason import checkpoint

        return int(checkpoint.read_manifest(self.resume_from).get("step", 0))

    # ------------------------------------------------------------------ checkpoints
    def store_checkpoint(self, step: int) -> Path:
        """Move TRL's checkpoint-N into an atomic RUN_DIR/checkpoints/step-N (hf/ + adapter/)."""
        from rl_reason import checkpoint

        hf = self.run_dir / HF_DIR / f"checkpoint-{step}"

        def write(tmp: Path) -> None:
            shutil.copytree(hf, tmp / "hf")
            self.policy.save_adapter(tmp / "adapter")

        path = checkpoint.save(
            self.run_dir,
            step,
            write,
            config_hash=config_hash(self.cfg),
            keep_last=self.cfg.checkpoint.keep_last,
            extra={
                "config": to_dict(self.cfg),
                "kind": KIND,
                "tracker": self.tracker.state_dict() if self.tracker else {},
            },
        )
        shutil.rmtree(hf, ignore_errors=True)
        return path

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        if self.resume_from is None:
            self._write_run_files()
        self.stop.install()
        try:
            resume = str(self.resume_from / "hf") if self.resume_from is not None else None
            out = self.trainer.train(resume_from_checkpoint=resume)
            step = int(self.trainer.state.global_step)
            stopped = self.stop.requested and step < self.trainer.state.max_steps
            if stopped:
                print(
                    f"stopped after step {step}; checkpoint written. Resume with:\n"
                    f"  rl-reason resume {self.run_dir}",
                    file=sys.stderr,
                )
            else:
                self.policy.save_adapter(self.run_dir / "adapter")
        finally:
            self.stop.restore()
            if self.tracker is not None:
                self.tracker.close()
            shutil.rmtree(self.run_dir / HF_DIR, ignore_errors=True)
        loss = getattr(out, "training_loss", None)
        return {"step": step, "train_loss": loss, "stopped": stopped}

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_yaml(self.cfg))
        meta = {"config_hash": config_hash(self.cfg), "recipe": self.recipe, "kind": KIND}
        (self.run_dir / RUN_FILE).write_text(json.dumps(meta, indent=1))


def _progress(cfg: RunConfig) -> bool:
    from rl_reason.tracking import PROGRESS_ENV

    return cfg.logging.progress and os.environ.get(PROGRESS_ENV, "1") != "0"


# --------------------------------------------------------------------------- entry points


def run_kind(run_dir: Path) -> str:
    """``sft``, ``stages`` or ``train``: what wrote ``run_dir`` (its run.json says)."""
    path = Path(run_dir) / RUN_FILE
    try:
        return str(json.loads(path.read_text()).get("kind") or "train")
    except (OSError, ValueError):
        return "train"


def finished_step(ckpt: Path) -> tuple[int, int]:
    """(step, max_steps) of an SFT checkpoint, from TRL's trainer_state.json."""
    state = json.loads((ckpt / "hf" / "trainer_state.json").read_text())
    return int(state.get("global_step", 0)), int(state.get("max_steps", 0))


def train_sft(cfg: RunConfig, run_dir: Path, *, resume_from=None, overwrite=False, recipe=None) -> dict:
    """A new SFT run (or a resumed one); the run-dir rules of ``train``."""
    from rl_reason import runs

    if not cfg.sft.source:
        raise ConfigError(
            "sft.source: rl-reason sft needs a data file or hub dataset id (sft.source=FILE.jsonl)"
        )
    if not _progress(cfg):  # the libraries' own progress bars too
        from rl_reason.tracking import quiet_library_progress

        quiet_library_progress()
    created = False
    if resume_from is None:
        created = runs.prepare_new_run(run_dir, overwrite=overwrite)
        print(f"run dir: {run_dir}", flush=True)
    else:
        runs.record_config(run_dir, cfg)
        print(f"resuming {run_dir} from {resume_from.name}", file=sys.stderr)
    try:
        summary = SftRun(cfg, run_dir, resume_from=resume_from, recipe=recipe).build().run()
    except BaseException:
        if created:
            runs.discard_failed_start(run_dir)
        raise
    print(f"run dir: {run_dir}")
    return summary


def resume_sft(run_dir: Path, overrides: list[str]) -> int:
    from rl_reason import runs

    plan = runs.plan_resume(run_dir, overrides)
    step, total = finished_step(plan.checkpoint)
    if total and step >= total and (plan.cfg.sft.steps is None or step >= plan.cfg.sft.steps):
        runs.restore_final_outputs(run_dir, plan.checkpoint)
        print(f"{run_dir} is finished at step {step}; to train longer, raise sft.steps", file=sys.stderr)
        return 0
    train_sft(plan.cfg, run_dir, resume_from=plan.checkpoint)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning of the LoRA adapter (TRL SFTTrainer)")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value")
    p.add_argument("--run-dir", help="run directory (default: logging.runs_dir/run_name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run dir")


def run(args) -> int:
    from rl_reason import runs
    from rl_reason.config import load_config
    from rl_reason.preflight import preflight

    cfg = load_config(args.recipe, args.overrides)
    preflight(cfg, args.recipe)
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
    train_sft(cfg, run_dir, overwrite=args.overwrite, recipe=args.recipe)
    return 0
