"""Ours vs TRL's GRPOTrainer, side by side on this CPU.

Same model (the demo SmolLM2-135M-Instruct, float32), LoRA r=16 / alpha 32 on all linear layers,
the same prompts in the same order (8 prompts x 8 completions per step), 64 new tokens,
temperature 1.0, the same reward (math_answer + well-formed boxed answer), transformers
generation for both (no vLLM), the same number of steps. Each trainer runs in its own child
process so peak RSS is its own. TRL runs twice: with its default batching for 8x8 steps, and
with its best settings for this case.

    .venv/bin/python bench/vs_trl.py --steps 5
Last line: vs_trl: ours_s_per_step=<x> trl_s_per_step=<y> ratio=<x/y> rss_ratio=<r>
(y: the faster TRL run; r: our peak RSS / TRL default's peak RSS, when trl_default ran)
"""

from __future__ import annotations

import os
import sys

# bench/ holds math.py: keep it off sys.path so it does not shadow the standard library's math
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS, GENS, NEW_TOKENS, LORA_R = 8, 8, 64, 16


def overrides(steps: int) -> list[str]:
    return [
        f"train.steps={steps}",
        f"rollout.prompts_per_step={PROMPTS}",
        f"rollout.num_generations={GENS}",
        f"rollout.max_new_tokens={NEW_TOKENS}",
        "rollout.temperature=1.0",
        f"lora.r={LORA_R}",
        f"lora.alpha={2 * LORA_R}",
        "lora.target_modules=all-linear",
        "eval.at_start=false",
        "eval.at_end=false",
        "logging.log_rollouts=false",
        "logging.plot=false",
        "logging.progress=false",
        "checkpoint.every=0",
        "rewards.workers=0",
    ]


def load_cfg(steps: int):
    from rl_reason.config import load_config
    from rl_reason.demo import DEMO_RECIPE

    return load_config(DEMO_RECIPE, overrides(steps))


# --------------------------------------------------------------------------- children


def child_ours(steps: int, out: Path, extra: list[str]) -> dict:
    import torch

    from rl_reason.config import load_config
    from rl_reason.demo import DEMO_RECIPE
    from rl_reason.trainer import Trainer

    torch.set_num_threads(os.cpu_count() or 2)
    cfg = load_config(DEMO_RECIPE, overrides(steps) + extra)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        phases = _watch_phases(trainer)
        trainer.run()
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > 0]
    return {
        "rss_phases": phases,
        "step_s": [r["time/step_s"] for r in rows],
        "reward": [r["reward/total/mean"] for r in rows],
        "accuracy": [r["accuracy"] for r in rows],
    }


def _watch_phases(trainer) -> dict:
    """Peak RSS (MB) reached by the end of each phase's first run that raised it: sampling,
    the frozen (old/reference) pass, the actor update. ru_maxrss only grows, so the phase
    whose value is the run's peak is the one that set it."""
    import resource

    from rl_reason import update

    peaks: dict = {}

    def watched(name, fn):
        def run(*a, **k):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            try:
                return fn(*a, **k)
            finally:
                after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                if after > before:
                    peaks[name] = round(after)

        return run

    trainer.engine.generate = watched("sampling", trainer.engine.generate)
    update.frozen_pass = watched("frozen_pass", update.frozen_pass)
    update.actor_step = watched("actor_step", update.actor_step)
    return peaks


def child_trl(steps: int, out: Path, best: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import rewards
    from rewards.interop import for_trl
    from rl_reason import data
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_tokenizer

    torch.set_num_threads(os.cpu_count() or 2)
    cfg = load_cfg(steps)
    path = resolve_model(cfg.model.name)
    tok = load_tokenizer(path)
    records = data.load_records(cfg.data, seed=cfg.train.seed)
    sampler = data.PromptSampler(records, PROMPTS, seed=cfg.train.seed, shuffle=cfg.data.shuffle)
    ordered = [r for _ in range(steps) for r in sampler.next_batch()]  # our exact prompt order
    ds = Dataset.from_list([{"prompt": r.messages, "answer": r.fields["answer"]} for r in ordered])
    funcs, weights = [], []
    for c in cfg.rewards.checkers:
        f = for_trl(rewards.resolve(c.name), **c.params)
        f.__name__ = c.alias or c.name
        funcs.append(f)
        weights.append(c.weight)

    common = dict(
        output_dir=str(out / "trl"),
        use_cpu=True,
        num_generations=GENS,
        max_completion_length=NEW_TOKENS,
        temperature=1.0,
        learning_rate=cfg.train.lr,
        max_steps=steps,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        reward_weights=weights,
        seed=cfg.train.seed,
        beta=0.0,
        bf16=False,
        disable_tqdm=True,
    )
    if best:
        # one generation batch of 64 and one forward/backward over it per optimizer step
        extra = dict(
            per_device_train_batch_size=PROMPTS * GENS,
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            disable_dropout=True,
        )
    else:
        # TRL's default micro-batch (8 completions), accumulated to 8 prompts x 8 per step
        extra = dict(per_device_train_batch_size=8, gradient_accumulation_steps=PROMPTS)
    args = GRPOConfig(**common, **extra)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    peft_cfg = LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, target_modules="all-linear", task_type="CAUSAL_LM")

    class Timer(TrainerCallback):
        def __init__(self):
            self.t0, self.times = None, []

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_cfg,
        callbacks=[timer],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {"step_s": timer.times, "reward": [h["reward"] for h in logs]}


# --------------------------------------------------------------------------- parent


def run_child(kind: str, steps: int, extra: list[str] = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        sets = [x for kv in extra for x in ("--ours-set", kv)]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, "--steps", str(steps), "--out", str(out), *sets],
            env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{kind} run failed")
        result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    times = result["step_s"][1:] or result["step_s"]  # the first step pays warm-up
    result["s_per_step"] = sum(times) / len(times)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--child")
    p.add_argument("--out")
    p.add_argument("--skip-trl-default", action="store_true")
    p.add_argument("--only", help="comma-separated subset of ours,trl_best,trl_default")
    p.add_argument(
        "--ours-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override for our run only (e.g. train.packing=false); repeatable",
    )
    a = p.parse_args()
    if a.child:
        out = Path(a.out)
        if a.child == "ours":
            res = child_ours(a.steps, out.parent, a.ours_set)
        else:
            res = child_trl(a.steps, out.parent, best=(a.child == "trl_best"))
        out.write_text(json.dumps(res))
        return
    if a.steps < 5:
        raise SystemExit("use at least 5 steps")
    from rl_reason.model_zoo import resolve_model

    resolve_model("smollm2-135m-instruct")  # fetch once, outside the timings
    kinds = ["ours", "trl_best"] + ([] if a.skip_trl_default else ["trl_default"])
    if a.only:
        kinds = [k.strip() for k in a.only.split(",") if k.strip()]
    results = {k: run_child(k, a.steps, a.ours_set if k == "ours" else ()) for k in kinds}
    print(f"{'run':<12} {'s/step':>8} {'peak RSS MB':>12}  reward per step")
    for k, r in results.items():
        rewards_s = " ".join(f"{x:.2f}" for x in r["reward"])
        print(f"{k:<12} {r['s_per_step']:>8.2f} {r['peak_rss_mb']:>12.0f}  {rewards_s}")
        if r.get("rss_phases"):  # which phase set our peak (MB at the end of each)
            print(" " * 13 + "peak RSS by phase: " + " ".join(f"{n}={v}" for n, v in r["rss_phases"].items()))
    trl_runs = [results[k]["s_per_step"] for k in ("trl_best", "trl_default") if k in results]
    if "ours" in results and trl_runs:
        # against the faster TRL run: on this CPU TRL's default batching (micro-batches of 8)
        # measured faster than one 64-sequence pass, so "trl_best" is not always TRL's best
        ours, trl = results["ours"]["s_per_step"], min(trl_runs)
        line = f"vs_trl: ours_s_per_step={ours:.2f} trl_s_per_step={trl:.2f} ratio={ours / trl:.3f}"
        if "trl_default" in results:  # memory against TRL's default micro-batches of 8
            line += f" rss_ratio={results['ours']['peak_rss_mb'] / results['trl_default']['peak_rss_mb']:.3f}"
        print(line)


if __name__ == "__main__":
    main()
