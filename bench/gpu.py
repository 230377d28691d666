"""Ours vs TRL's GRPOTrainer on one GPU, on models of real sizes with random weights.

Nothing is downloaded: each model is built from its config (Qwen2.5-1.5B-, Qwen2.5-7B- and,
where transformers has Qwen3-MoE, Qwen3-30B-A3B-shaped) with random weights, straight on the
device, and a word-level tokenizer over the model's whole vocabulary is written next to its
config. Both trainers get the same model (same seed), the same prompts (random words, about
100 tokens each), the same reward (the share of completion words that start with "t1": random
weights give every group a spread), bf16, gradient checkpointing, LoRA r=32 on all linear
layers, 8 prompts x 8 completions per step, 128 new tokens, transformers generation (no vLLM).
Each run is a child process (its own peak memory); the first step is warm-up and not averaged.

    python bench/gpu.py                              # on a GPU machine: 1.5b, 7b (and moe)
    python bench/gpu.py --device cpu --size tiny     # the same code path in seconds (a test)

One line per run, then ``gpu: <size> ratio=<ours/trl s per step> mem_ratio=<ours/trl peak> ...``.
Runs that would start past ``--budget-s`` are skipped (and said so), so the whole bench ends
in under 8 minutes on one H100/H200.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LORA_R = 32
PATTERN = r"\bt1\d*"  # the regex checker's reward: share of the text in words starting "t1"

# config kwargs per size; "moe" needs transformers' qwen3_moe
SIZES: dict[str, dict] = {
    "tiny": dict(
        model_type="qwen2",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    ),
    "1.5b": dict(  # Qwen2.5-1.5B
        model_type="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "7b": dict(  # Qwen2.5-7B
        model_type="qwen2",
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    "moe": dict(  # Qwen3-30B-A3B
        model_type="qwen3_moe",
        hidden_size=2048,
        intermediate_size=6144,
        moe_intermediate_size=768,
        num_hidden_layers=48,
        num_attention_heads=32,
        num_key_value_heads=4,
        head_dim=128,
        num_experts=128,
        num_experts_per_tok=8,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
}


def available(size: str) -> bool:
    """Whether this transformers can build the size's architecture."""
    from transformers import CONFIG_MAPPING

    return SIZES[size]["model_type"] in CONFIG_MAPPING


# --------------------------------------------------------------------------- the model dir


def write_model_dir(size: str, out: Path, prompts: int, steps: int, prompt_words: int) -> Path:
    """config.json, a word-level tokenizer over the whole vocabulary (tokenizer/), the prompts."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, PreTrainedTokenizerFast

    kw = dict(SIZES[size])
    model_type = kw.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = None, 1, 0
    cfg.save_pretrained(out)
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {s: i for i, s in enumerate(specials)}
    vocab.update({f"t{i}": i for i in range(len(specials), cfg.vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    # in a directory of its own: next to a qwen2 config.json, AutoTokenizer would load it as
    # Qwen2's byte-level tokenizer, which turns these words into nothing
    fast.save_pretrained(out / "tokenizer")
    rng = random.Random(0)
    with open(out / "prompts.jsonl", "w") as f:
        for i in range(prompts * steps):
            words = " ".join(f"t{rng.randrange(3, cfg.vocab_size)}" for _ in range(prompt_words))
            f.write(json.dumps({"question": words, "answer": "0", "id": str(i)}) + "\n")
    return out


def build_model(path: str, device: str, dtype_name: str, seed: int = 0):
    """The model of ``path``'s config with random weights, made on ``device`` (seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype_name]
    cfg = AutoConfig.from_pretrained(path)
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


# --------------------------------------------------------------------------- children


def recipe(a, path: Path, run_root: Path) -> Path:
    text = f"""
model: {{name: "{path}", dtype: {a.dtype}, device: {a.device}, gradient_checkpointing: true}}
lora: {{r: {LORA_R}, alpha: {2 * LORA_R}, target_modules: all-linear}}
data: {{source: "{path / "prompts.jsonl"}", template: plain, prompt_field: question, id_field: id, shuffle: false}}
rollout: {{engine: hf, prompts_per_step: {a.prompts}, num_generations: {a.gens}, max_new_tokens: {a.new_tokens},
  temperature: 1.0, generation_batch_size: {a.prompts * a.gens}}}
algorithm: {{name: grpo}}
rewards: {{checkers: [{{name: regex, params: {{pattern: '{PATTERN}', mode: fraction}}}}], workers: 0}}
train: {{steps: {a.steps}, lr: 1.0e-5, micro_batch_tokens: {a.micro_batch_tokens}}}
eval: {{at_start: false, at_end: false}}
checkpoint: {{every: 0}}
logging: {{runs_dir: "{run_root}", log_rollouts: false, plot: false, progress: false}}
"""
    out = run_root / "recipe.yaml"
    out.write_text(text)
    return out


def _peak_memory(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return float("nan")  # the parent reads the child's peak RSS


def child_ours(a, path: Path) -> dict:
    import torch

    from rl_reason import policy
    from rl_reason.config import load_config
    from rl_reason.trainer import Trainer

    def load_base(model_cfg, model_path, device):  # random weights, made on the device
        base = build_model(model_path, device.type, model_cfg.dtype)
        base.requires_grad_(False)
        if model_cfg.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base.enable_input_require_grads()
        return base

    real_base, real_tokenizer = policy.load_base, policy.load_tokenizer
    policy.load_base = load_base
    policy.load_tokenizer = lambda model_path, trc=False: real_tokenizer(
        str(Path(model_path) / "tokenizer"), trc
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(recipe(a, path, Path(tmp)), [f"train.packing={a.packing}"])
            trainer = Trainer(cfg, Path(tmp) / "run")
            trainer.run()
            rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    finally:  # --in-process: leave the module as it was
        policy.load_base, policy.load_tokenizer = real_base, real_tokenizer
    rows = [r for r in rows if r["step"] > 0]
    n = a.prompts * a.gens
    return {
        "step_s": [r["time/step_s"] for r in rows],
        "generate_s": [r["time/generate_s"] for r in rows],
        "score_s": [r["time/score_s"] for r in rows],
        "update_s": [r["time/update_s"] for r in rows],
        "gen_tokens": [r["completion/len_mean"] * n for r in rows],
        "reward": [r["reward/total/mean"] for r in rows],
        "peak_gb": _peak_memory(a.device),
        "threads": torch.get_num_threads(),
    }


def child_trl(a, path: Path) -> dict:
    from trl.extras import profiling

    phases: dict[str, float] = {}

    def log_metrics(self, duration):  # TRL times its phases; keep them here
        phases[self.name] = phases.get(self.name, 0.0) + duration

    real_log = profiling.ProfilingContext._log_metrics
    profiling.ProfilingContext._log_metrics = log_metrics
    try:
        return _trl_run(a, path, phases)
    finally:  # --in-process: leave TRL as it was
        profiling.ProfilingContext._log_metrics = real_log


def _trl_run(a, path: Path, phases: dict) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import rewards
    from rewards.interop import for_trl

    tok = AutoTokenizer.from_pretrained(path / "tokenizer")
    rows = [json.loads(x) for x in (path / "prompts.jsonl").read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": r["question"]} for r in rows])
    reward = for_trl(rewards.resolve("regex"), pattern=PATTERN, mode="fraction")
    reward.__name__ = "regex"
    args = GRPOConfig(
        output_dir=str(path / "trl"),
        use_cpu=a.device == "cpu",
        bf16=a.dtype == "bfloat16",
        gradient_checkpointing=True,
        num_generations=a.gens,
        max_completion_length=a.new_tokens,
        temperature=1.0,
        learning_rate=1e-5,
        max_steps=a.steps,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        seed=0,
        beta=0.0,
        disable_tqdm=True,
        # TRL's default micro-batch of 8 completions, accumulated to the step's prompts x gens
        per_device_train_batch_size=min(8, a.prompts * a.gens),
        gradient_accumulation_steps=max(a.prompts * a.gens // 8, 1),
    )
    model = build_model(str(path), a.device, a.dtype)
    peft_cfg = LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, target_modules="all-linear", task_type="CAUSAL_LM")

    class Timer(TrainerCallback):
        def __init__(self):
            self.t0, self.times, self.marks = None, [], []

        def on_step_begin(self, *x, **k):
            self.t0 = time.perf_counter()
            self.marks.append(dict(phases))

        def on_step_end(self, *x, **k):
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_cfg,
        callbacks=[timer],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    marks = timer.marks + [dict(phases)]

    def phase(i: int, pick) -> float:
        return sum(v - marks[i].get(k, 0.0) for k, v in marks[i + 1].items() if pick(k))

    gen = [phase(i, lambda k: "generate" in k) for i in range(len(timer.times))]
    score = [phase(i, lambda k: k.endswith(".regex")) for i in range(len(timer.times))]
    n = a.prompts * a.gens
    return {
        "step_s": timer.times,
        "generate_s": gen,
        "score_s": score,
        "update_s": [t - g - s for t, g, s in zip(timer.times, gen, score)],
        "gen_tokens": [h.get("completions/mean_length", 0.0) * n for h in logs],
        "reward": [h["reward"] for h in logs],
        "peak_gb": _peak_memory(a.device),
    }


# --------------------------------------------------------------------------- parent


def run_child(a, kind: str, size: str, path: Path) -> dict:
    if a.in_process:  # the test's quick path: no new interpreter, peak memory not the run's own
        r = child_ours(a, path) if kind == "ours" else child_trl(a, path)
        if a.device != "cuda":
            import resource

            r["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        return summarise(r)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", kind, "--model-dir", str(path), "--out", str(out)]
        for k in (
            "device",
            "dtype",
            "steps",
            "prompts",
            "gens",
            "new_tokens",
            "micro_batch_tokens",
            "packing",
        ):
            cmd += [f"--{k.replace('_', '-')}", str(getattr(a, k))]
        proc = subprocess.Popen(
            cmd, env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return {"failed": True}
        r = json.loads(out.read_text())
    if a.device != "cuda":
        r["peak_gb"] = usage.ru_maxrss / 2**20  # the child's peak RSS
    return summarise(r)


def summarise(r: dict) -> dict:
    keep = slice(1, None) if len(r["step_s"]) > 1 else slice(None)  # step 1 is warm-up
    mean = lambda xs: sum(xs[keep]) / max(len(xs[keep]), 1)  # noqa: E731
    r["s_per_step"] = mean(r["step_s"])
    r["tok_per_s"] = sum(r["gen_tokens"][keep]) / max(sum(r["step_s"][keep]), 1e-9)
    for p in ("generate_s", "score_s", "update_s"):
        r[p + "_mean"] = mean(r[p])
    return r


def line(kind: str, size: str, r: dict) -> str:
    if r.get("failed"):
        return f"run={kind} size={size} failed"
    mem = "peak_gpu_gb" if "cuda" in r.get("device", "") else "peak_gb"
    return (
        f"run={kind} size={size} s_per_step={r['s_per_step']:.2f} gen_tok_per_s={r['tok_per_s']:.0f} "
        f"{mem}={r['peak_gb']:.1f} generate_s={r['generate_s_mean']:.2f} score_s={r['score_s_mean']:.2f} "
        f"update_s={r['update_s_mean']:.2f} reward={' '.join(f'{x:.3f}' for x in r['reward'])}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--size", default="1.5b,7b,moe", help="comma-separated: tiny, 1.5b, 7b, moe")
    p.add_argument("--only", default="ours,trl", help="comma-separated subset of ours,trl")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--gens", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=100)
    p.add_argument("--micro-batch-tokens", type=int, default=8192)
    p.add_argument("--packing", default="auto")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no run after this many seconds")
    p.add_argument("--in-process", action="store_true", help="run each trainer in this process (tests)")
    p.add_argument("--child")
    p.add_argument("--model-dir")
    p.add_argument("--out")
    a = p.parse_args(argv)
    a.dtype = a.dtype or ("bfloat16" if a.device == "cuda" else "float32")
    if a.child:
        path = Path(a.model_dir)
        res = child_ours(a, path) if a.child == "ours" else child_trl(a, path)
        Path(a.out).write_text(json.dumps(res))
        return 0
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU visible; use --device cpu --size tiny for the CPU path")
        card = torch.cuda.get_device_name(0)
    else:
        card = "cpu"
    t0 = time.perf_counter()
    summary = []
    print(
        f"bench/gpu.py on {card}: {a.prompts}x{a.gens} per step, {a.new_tokens} new tokens, {a.steps} steps",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in [s.strip() for s in a.size.split(",") if s.strip()]:
            if size not in SIZES:
                raise SystemExit(f"--size {size!r}: one of {', '.join(SIZES)}")
            if not available(size):
                print(
                    f"run=* size={size} skipped: this transformers has no {SIZES[size]['model_type']}",
                    flush=True,
                )
                continue
            path = write_model_dir(size, Path(tmp) / size, a.prompts, a.steps, a.prompt_words)
            res = {}
            for kind in [k.strip() for k in a.only.split(",") if k.strip()]:
                if time.perf_counter() - t0 > a.budget_s:
                    print(f"run={kind} size={size} skipped: past --budget-s {a.budget_s:.0f}", flush=True)
                    continue
                res[kind] = run_child(a, kind, size, path)
                res[kind]["device"] = a.device
                print(line(kind, size, res[kind]), flush=True)
            ok = {k: r for k, r in res.items() if not r.get("failed")}
            if "ours" in ok and "trl" in ok:
                o, t = ok["ours"], ok["trl"]
                summary.append(
                    f"{size} ratio={o['s_per_step'] / t['s_per_step']:.3f} "
                    f"mem_ratio={o['peak_gb'] / t['peak_gb']:.3f} "
                    f"tok_ratio={o['tok_per_s'] / max(t['tok_per_s'], 1e-9):.3f}"
                )
    print(
        f"gpu: card={card.replace(' ', '_')} "
        + ("; ".join(summary) or "no pair finished")
        + f" total_s={time.perf_counter() - t0:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
