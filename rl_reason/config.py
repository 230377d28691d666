"""Recipe schema: dataclasses are the single source of truth.

A recipe is YAML whose top-level sections map onto ``RunConfig``'s fields. ``load_config``
reads it, applies ``key.path=value`` overrides, checks every key and type against the
dataclasses, runs cross-field checks, and returns a frozen view of the result. Every error
names the key path, the file, and what is allowed, so it fits on one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from rl_reason.errors import ConfigError

# --------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"  # built-in name, hub id, or local directory
    dtype: str = "float32"  # float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: Union[str, list[str]] = "all-linear"


@dataclass
class SyntheticConfig:
    """The built-in arithmetic task (``data.source: synthetic:arithmetic``)."""

    ops: list[str] = field(default_factory=lambda: ["+"])  # any of + - *
    min_value: int = 0
    max_value: int = 9
    num_terms: int = 2
    num_train: int = 2000
    num_eval: int = 200


@dataclass
class DataConfig:
    source: str = "synthetic:arithmetic"  # synthetic:arithmetic | path.jsonl/.parquet | hub id
    config_name: Optional[str] = None  # hub dataset config (e.g. "main" for openai/gsm8k)
    split: str = "train"
    prompt_field: str = "question"
    id_field: Optional[str] = None  # row id column; the row index when unset
    # checker field name -> dataset column; the answer column is parsed per answer_format
    fields: dict[str, str] = field(default_factory=lambda: {"answer": "answer"})
    answer_format: str = "auto"  # auto | gsm8k | boxed | plain
    template: str = "chat"  # chat (tokenizer's chat template) | plain
    prompt_template: str = "{prompt}"  # formats the user turn (chat) or the whole prompt (plain)
    system_prompt: Optional[str] = None
    shuffle: bool = True
    strict: bool = False  # rows missing a needed field: error (True) or skip with a warning
    limit: Optional[int] = None  # use only the first N rows (after shuffling)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class RolloutConfig:
    engine: str = "hf"  # hf | vllm | server
    prompts_per_step: int = 8
    num_generations: int = 8  # completions per prompt (the group)
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    generation_batch_size: int = 64  # sequences per generate() call (hf engine)
    # vllm / server engines (issue 4)
    sync: str = "hotload"  # hotload (new LoRARequest per step) | merge (merged weights into vLLM)
    gpu_memory_utilization: Optional[float] = None  # vllm engine, GPU only
    max_model_len: Optional[int] = None  # vllm engine
    sleep_mode: bool = False  # vllm engine, GPU only: free vLLM memory during the update
    enforce_eager: bool = True  # vllm engine: skip graph capture / compilation at start-up
    servers: list[str] = field(default_factory=list)  # server engine: base URLs of vllm serve
    server_timeout_s: float = 300.0  # server engine: per-request timeout
    adapter_dir: Optional[str] = None  # server engine: where servers read adapters (default run_dir/live_adapters)


@dataclass
class AlgorithmConfig:
    name: str = "grpo"  # a registered algorithm (rl_reason/algorithms/registry.py)
    epochs: int = 1  # update passes over each batch (old log-probs are stored when > 1)
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low is DAPO clip-higher
    loss_agg: str = "auto"  # auto | token_mean | seq_mean_token_mean | seq_mean_token_sum_norm
    kl_coef: float = 0.0  # KL to the reference (the base with the adapter disabled)
    kl_estimator: str = "k3"  # k1 | k2 | k3
    drop_uniform_groups: bool = True  # skip groups whose rewards are all equal
    mask_truncated: bool = False  # no loss on completions cut at max_new_tokens
    # truncated importance sampling between the sampler's and the trainer's log-probs
    # (matters when another engine, e.g. vLLM, samples); 0 = off
    is_cap: float = 0.0
    # PPO (algorithm.name: ppo)
    gamma: float = 1.0
    lam: float = 1.0  # GAE lambda for the actor's advantages
    critic_lam: Optional[float] = None  # GAE lambda for the critic's returns (default: lam)
    whiten_advantages: bool = True  # ppo: normalise advantages over the batch
    # per-token KL penalty folded into the reward (REINFORCE++ always does this; PPO when set)
    kl_in_reward: bool = False


@dataclass
class CriticConfig:
    """PPO's critic: a second LoRA adapter plus a value head on the same frozen base."""

    lr: float = 1e-4
    warmup_steps: int = 0  # steps that train only the critic before the actor updates
    value_clip: float = 0.2  # clip of the value update around the old values; 0 = off
    value_coef: float = 1.0
    epochs: int = 1
    r: Optional[int] = None  # critic LoRA rank (default: lora.r)
    shared_base: bool = True  # False loads a second copy of the base (for memory comparison)


@dataclass
class CheckerConfig:
    name: str = ""  # registry name or package.module:function
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    alias: Optional[str] = None  # metric name when a checker is used twice


@dataclass
class RewardsConfig:
    checkers: list[CheckerConfig] = field(
        default_factory=lambda: [CheckerConfig(name="math_answer")]
    )
    timeout_s: float = 5.0  # hard per-check timeout (worker process killed past it)
    workers: int = 2  # scoring processes; 0 scores in-process without timeouts
    on_error: str = "zero"  # zero | none: score of a check that raised or timed out


@dataclass
class TrainConfig:
    steps: int = 20
    seed: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | linear | cosine
    micro_batch_tokens: int = 4096  # token budget per forward/backward (gradient accumulation)
    share_prompt: bool = True  # run each distinct prompt of a micro-batch once (one process only)
    # several processes: shard the frozen base across them (FSDP2), keep the adapters whole
    fsdp: bool = False


@dataclass
class EvalConfig:
    """Held-out accuracy (greedy). With no ``data``, the synthetic task's held-out split is used."""

    every: int = 0  # steps between evaluations; 0 = only at start and end (see at_start/at_end)
    data: Optional[str] = None  # built-in eval set (gsm8k, math500, ...) or a file; default: held-out data
    at_start: bool = True
    at_end: bool = True
    limit: int = 64  # prompts per evaluation
    max_new_tokens: Optional[int] = None  # default: rollout.max_new_tokens
    split: str = "test"  # split of data.source used for evaluation (non-synthetic sources)


@dataclass
class CheckpointConfig:
    every: int = 0  # steps between checkpoints; 0 = only at the end
    keep_last: int = 2
    keep_best: Optional[str] = None  # metric to keep the best adapter by, e.g. eval/accuracy


@dataclass
class LoggingConfig:
    run_name: Optional[str] = None  # default: recipe file stem
    runs_dir: str = "runs"
    wandb: bool = False
    wandb_project: str = "rl-reason"
    wandb_mode: str = "offline"  # offline | online | disabled
    progress: bool = True
    log_rollouts: bool = True
    plot: bool = True


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# --------------------------------------------------------------------------- choices

CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.device": ("auto", "cpu", "cuda"),
    "data.answer_format": ("auto", "gsm8k", "boxed", "plain"),
    "data.template": ("chat", "plain"),
    "rollout.engine": ("hf", "vllm", "server"),
    "rollout.sync": ("hotload", "merge"),
    "algorithm.loss_agg": ("auto", "token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"),
    "algorithm.kl_estimator": ("k1", "k2", "k3"),
    "rewards.on_error": ("zero", "none"),
    "train.lr_schedule": ("constant", "linear", "cosine"),
    "logging.wandb_mode": ("offline", "online", "disabled"),
}
SYNTHETIC_OPS = ("+", "-", "*")


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


class _Converter:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg} (in {self.source})")

    def convert(self, value: Any, tp: Any, path: str) -> Any:
        if tp is Any:
            return value
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(value, arg, path)
                except ConfigError as exc:
                    errors.append(exc)
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)
        if origin is list:
            (arg,) = typing.get_args(tp)
            if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
            return [self.convert(v, arg, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            key_tp, val_tp = typing.get_args(tp)
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a mapping, got {value!r}")
            return {
                self.convert(k, key_tp, path): self.convert(v, val_tp, f"{path}.{k}")
                for k, v in value.items()
            }
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise self.fail(path, f"expected true or false, got {value!r}")
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise self.fail(path, f"expected an integer, got {value!r}")
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            raise self.fail(path, f"expected a number, got {value!r}")
        if tp is str:
            if isinstance(value, str):
                return value
            raise self.fail(path, f"expected a string, got {value!r}")
        raise self.fail(path, f"unsupported type {tp!r}")  # pragma: no cover

    def build(self, cls: type, data: Any, path: str) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            where = path or "the recipe"
            raise self.fail(where, f"expected a mapping of {cls.__name__} fields, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key not in hints:
                raise self.fail(
                    key_path, f"unknown key; allowed keys here: {', '.join(names)}"
                )
            kwargs[key] = self.convert(value, hints[key], key_path)
        return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value (e.g. train.steps=5)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` entries (values parsed as YAML scalars/lists) into a raw recipe dict."""
    data = json.loads(json.dumps(data)) if data else {}
    for text in overrides:
        parts, value = _parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_recipe(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found: give the path of a YAML recipe")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (model, data, ...)")
    return data


def from_dict(data: dict, source: str = "<dict>") -> RunConfig:
    cfg = _Converter(source).build(RunConfig, data, "")
    validate(cfg, source)
    return cfg


def load_config(
    recipe: Union[str, Path, None] = None, overrides: Optional[list[str]] = None
) -> RunConfig:
    """Read a recipe (or the defaults when None), apply overrides, validate."""
    data = read_recipe(recipe) if recipe is not None else {}
    source = str(recipe) if recipe is not None else "<defaults>"
    if overrides:
        data = apply_overrides(data, overrides)
        source += " + overrides"
    cfg = from_dict(data, source)
    if cfg.logging.run_name is None:
        cfg.logging.run_name = Path(recipe).stem if recipe is not None else "run"
    return cfg


# --------------------------------------------------------------------------- validation


def _walk(obj: Any, prefix: str = ""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _walk(value, path + ".")
        else:
            yield path, value


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    def bad(path: str, msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg} (in {source})")

    values = dict(_walk(cfg))
    for path, allowed in CHOICES.items():
        if values[path] not in allowed:
            raise bad(path, f"{values[path]!r} is not one of: {', '.join(allowed)}")
    from rl_reason.algorithms import registry  # the registered algorithms are the choices

    if cfg.algorithm.name not in registry.names():
        raise bad("algorithm.name", f"{cfg.algorithm.name!r} is not one of: {', '.join(registry.names())}")

    positive = [
        "lora.r", "lora.alpha", "rollout.prompts_per_step", "rollout.num_generations",
        "rollout.max_new_tokens", "rollout.generation_batch_size", "algorithm.epochs",
        "train.steps", "train.micro_batch_tokens", "rewards.timeout_s", "eval.limit",
        "checkpoint.keep_last", "data.synthetic.num_terms", "data.synthetic.num_train",
        "train.lr", "critic.epochs", "rollout.server_timeout_s",
    ]
    for path in positive:
        if values[path] <= 0:
            raise bad(path, f"must be > 0, got {values[path]}")
    non_negative = [
        "lora.dropout", "rollout.temperature", "rollout.top_k", "algorithm.clip_low",
        "algorithm.clip_high", "algorithm.kl_coef", "rewards.workers",
        "train.weight_decay", "train.max_grad_norm", "train.warmup_steps", "eval.every",
        "checkpoint.every", "data.synthetic.num_eval", "algorithm.is_cap", "critic.lr",
        "critic.warmup_steps", "critic.value_clip", "critic.value_coef",
    ]
    for path in non_negative:
        if values[path] < 0:
            raise bad(path, f"must be >= 0, got {values[path]}")
    if not 0 < cfg.rollout.top_p <= 1:
        raise bad("rollout.top_p", f"must be in (0, 1], got {cfg.rollout.top_p}")
    if cfg.lora.dropout >= 1:
        raise bad("lora.dropout", f"must be < 1, got {cfg.lora.dropout}")
    if registry.get(cfg.algorithm.name).needs_groups and cfg.rollout.num_generations < 2:
        raise bad(
            "rollout.num_generations",
            f"{cfg.algorithm.name} compares completions within a group, so it needs >= 2, "
            f"got {cfg.rollout.num_generations}",
        )
    for path in ("algorithm.gamma", "algorithm.lam"):
        if not 0 <= values[path] <= 1:
            raise bad(path, f"must be in [0, 1], got {values[path]}")
    if cfg.algorithm.critic_lam is not None and not 0 <= cfg.algorithm.critic_lam <= 1:
        raise bad("algorithm.critic_lam", f"must be in [0, 1], got {cfg.algorithm.critic_lam}")
    if cfg.rollout.engine == "server" and not cfg.rollout.servers:
        raise bad("rollout.servers", "rollout.engine=server needs at least one server URL, e.g. [http://127.0.0.1:8000]")
    if cfg.rollout.temperature == 0:
        raise bad("rollout.temperature", "must be > 0 for RL sampling (greedy groups are all equal)")
    syn = cfg.data.synthetic
    for i, op in enumerate(syn.ops):
        if op not in SYNTHETIC_OPS:
            raise bad(f"data.synthetic.ops[{i}]", f"{op!r} is not one of: {', '.join(SYNTHETIC_OPS)}")
    if not syn.ops:
        raise bad("data.synthetic.ops", "needs at least one operator")
    if syn.min_value > syn.max_value:
        raise bad("data.synthetic.min_value", f"{syn.min_value} > max_value {syn.max_value}")
    if "{prompt}" not in cfg.data.prompt_template:
        raise bad("data.prompt_template", "must contain {prompt}")
    if isinstance(cfg.lora.target_modules, list) and not cfg.lora.target_modules:
        raise bad("lora.target_modules", "must name at least one module, or be 'all-linear'")
    if not cfg.rewards.checkers:
        raise bad("rewards.checkers", "needs at least one checker")
    seen = set()
    for i, checker in enumerate(cfg.rewards.checkers):
        if not checker.name:
            raise bad(f"rewards.checkers[{i}].name", "is required (a registry name or module:function)")
        alias = checker.alias or checker.name
        if alias in seen:
            raise bad(f"rewards.checkers[{i}]", f"metric name {alias!r} used twice; set alias")
        seen.add(alias)


def check_checkers_resolve(cfg: RunConfig, source: str = "<config>") -> None:
    """Resolve every checker name now, so a typo fails before any model loads."""
    import rewards

    for i, checker in enumerate(cfg.rewards.checkers):
        try:
            fn = rewards.resolve(checker.name)
        except rewards.UnknownCheckerError as exc:
            raise ConfigError(f"rewards.checkers[{i}].name: {exc} (in {source})") from None
        _check_sandbox_fits(cfg, i, fn, source)


# what a sandboxed run needs on top of its own time limit: interpreter start-up, the harness
SANDBOX_MARGIN_S = 2.0


def _check_sandbox_fits(cfg: RunConfig, i: int, fn, source: str) -> None:
    """A checker with its own time limit (code_tests' sandbox) must finish inside the runner's.

    Otherwise a looping program is killed by the runner as a hung *checker* (an error, logged
    as a timeout of the checker) before the sandbox can report the program's own timeout.
    """
    from rewards.code import code_tests

    checker = cfg.rewards.checkers[i]
    inner = checker.params.get("timeout_s")
    if inner is None and getattr(fn, "__wrapped__", fn) is code_tests:
        inner = inspect.signature(code_tests).parameters["timeout_s"].default
    if inner is None or cfg.rewards.workers == 0:  # in-process scoring has no runner timeout
        return
    need = float(inner) + SANDBOX_MARGIN_S
    if cfg.rewards.timeout_s < need:
        raise ConfigError(
            f"rewards.timeout_s: {cfg.rewards.timeout_s:g} s leaves no room for "
            f"rewards.checkers[{i}] ({checker.name}), whose own timeout_s is {float(inner):g} s; "
            f"set rewards.timeout_s to at least {need:g} (in {source})"
        )


# --------------------------------------------------------------------------- output


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_hash(cfg: RunConfig) -> str:
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
