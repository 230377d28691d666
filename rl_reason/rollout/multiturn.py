"""Multi-turn rollouts: sample, pause a sequence at a tool call, run the tool, splice its
output in, continue.

Token in, token out: every sequence is carried as the exact token ids the sampler produced;
the model's text is decoded to show it to the environment and is never encoded again. A tool
turn is encoded once, when it is spliced in. ``Rollout.loss_mask`` is 1 on the model's tokens
and 0 on tool tokens, so tool output never gets gradient (rl_reason.batching).

The driver runs rounds: every live sequence is continued by one batched call of the
engine's ``continue_rows(seqs, sampling)`` until it ends (EOS, a stop string, its budget);
sequences that paused at a call have their tools run (in parallel threads; each call is a
sandboxed process) and join the next round. Within a round the other sequences keep
decoding; a paused one waits for the round's end. ``rollout.max_new_tokens`` counts the
model's tokens over all turns; tool tokens come on top (at most
``max_tool_calls * (tool_output_tokens + a note)``).

Engines give ``continue_rows(seqs, sampling) -> [(ids, logprobs, how)]`` with ``how`` one of
``"eos"``, ``"stop"`` (a stop string; ids end at the token that completed it) or
``"length"``.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from rl_reason.envs import Environment, Step
from rl_reason.rollout import Rollout, SamplingParams

CUT_NOTE = "\n[tool output cut: {shown} of {total} tokens shown]\n"


@dataclass
class Turn:
    """One turn of a rollout: the model's text or a tool's output, and its token span."""

    role: str  # "model" or "tool"
    text: str
    start: int  # [start, end) in completion_ids
    end: int
    seconds: float = 0.0  # tool turns: time the call took
    error: bool = False
    timed_out: bool = False
    cut: bool = False  # tool output longer than rollout.tool_output_tokens

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ToolSettings:
    make_env: Callable[[], Environment]
    max_tool_calls: int = 4
    tool_output_tokens: int = 256
    workers: int = 4  # tool calls of one round run in parallel


def settings_from_config(rollout_cfg, tokenizer=None) -> Optional[ToolSettings]:
    """The recipe's tool settings, or None when ``rollout.tools`` is empty.
    ``rollout.tool_format: chat_template`` needs the ``tokenizer`` (its chat template)."""
    if not rollout_cfg.tools:
        return None
    from rl_reason.envs import make_factory

    make_env = make_factory(list(rollout_cfg.tools), dict(rollout_cfg.tool_params))
    if getattr(rollout_cfg, "tool_format", "fenced") == "chat_template":
        from rl_reason.envs.chat_tools import chat_template_factory

        make_env = chat_template_factory(make_env, tokenizer)
    return ToolSettings(
        make_env=make_env,
        max_tool_calls=rollout_cfg.max_tool_calls,
        tool_output_tokens=rollout_cfg.tool_output_tokens,
    )


@dataclass
class _Seq:
    prompt_index: int
    prompt: list[int]
    env: Environment
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    turn_start: int = 0  # where the current model turn starts in ids
    model_tokens: int = 0
    calls: int = 0
    finish: Optional[str] = None  # set when the rollout has ended
    pending: Optional[str] = None  # "eos" or "stop": the turn ended and the env decides

    def close_model_turn(self, tok) -> str:
        text = tok.decode(self.ids[self.turn_start :], skip_special_tokens=True)
        if len(self.ids) > self.turn_start:
            self.turns.append(Turn("model", text, self.turn_start, len(self.ids)))
        return text


def _user_stop_hit(text: str, sampling: SamplingParams) -> bool:
    return any(s in text for s in sampling.stop)


def generate(
    engine,
    records: Sequence[Any],
    n: int,
    sampling: SamplingParams,
    tools: ToolSettings,
    tokenizer,
) -> list[Rollout]:
    """n multi-turn rollouts per record (rl_reason.data.PromptRecord), prompt-major."""
    from rl_reason.data import tokenize_prompts

    seqs: list[_Seq] = []
    prompt_records = []
    for i, rec in enumerate(records):
        envs = [tools.make_env() for _ in range(n)]
        prompts = [env.reset(rec.fields) for env in envs]
        prompt_records.append(_with_prompt(rec, prompts[0]))
        seqs.extend(_Seq(i, [], env) for env in envs)
    # an environment's tool schemas (rollout.tool_format: chat_template) go to the template
    chat_tools = getattr(seqs[0].env, "chat_tools", None) if seqs else None
    prompt_ids = tokenize_prompts(prompt_records, tokenizer, tools=chat_tools)
    for s in seqs:
        s.prompt = list(prompt_ids[s.prompt_index])
    env_stops = tuple(dict.fromkeys(st for s in seqs[:1] for st in getattr(s.env, "stop", ())))
    lockstep = getattr(engine, "lockstep", None)
    with ThreadPoolExecutor(max_workers=max(1, tools.workers)) as pool:
        while True:
            live = [s for s in seqs if s.finish is None]
            if (lockstep.max(len(live)) if lockstep is not None else len(live)) == 0:
                break
            budget = max((sampling.max_new_tokens - s.model_tokens for s in live), default=1)
            if lockstep is not None:  # sharded: every rank decodes the same number of steps
                budget = int(lockstep.max(budget))
            round_sampling = dataclasses.replace(
                sampling, max_new_tokens=max(budget, 1), stop=tuple(sampling.stop) + env_stops
            )
            outs = engine.continue_rows([s.prompt + s.ids for s in live], round_sampling)
            stepping = []
            for s, (ids, lps, how) in zip(live, outs):
                left = sampling.max_new_tokens - s.model_tokens
                if len(ids) >= left and how != "eos":
                    ids, lps, how = ids[:left], lps[:left], "length"
                s.ids += list(ids)
                s.mask += [1] * len(ids)
                s.logprobs += list(lps) if len(lps) == len(ids) else [0.0] * len(ids)
                s.model_tokens += len(ids)
                if how == "length" or not ids:  # (no token at all would loop for ever)
                    s.close_model_turn(tokenizer)
                    s.finish = "length" if how == "length" else "stop"
                    continue
                text = tokenizer.decode(s.ids[s.turn_start :], skip_special_tokens=True)
                if how == "stop" and _user_stop_hit(text, sampling):
                    s.close_model_turn(tokenizer)
                    s.finish = "stop"
                    continue
                s.pending = how
                stepping.append((s, text))
            steps = list(pool.map(lambda st: _step(st[0].env, st[1]), stepping))
            for (s, _), step in zip(stepping, steps):
                _apply(s, step, tools, tokenizer)
    return [
        Rollout(
            prompt_index=s.prompt_index,
            prompt_ids=s.prompt,
            completion_ids=s.ids,
            completion_text=tokenizer.decode(s.ids, skip_special_tokens=True),
            sample_logprobs=s.logprobs,
            finish_reason=s.finish or "stop",
            loss_mask=s.mask,
            turns=s.turns,
            answer_text=_answer(s),
        )
        for s in seqs
    ]


def _answer(s: _Seq) -> str:
    """What the checkers grade: the final model turn, as the environment's ``answer(text)``
    reads it (the python tool drops its code blocks); "" when a tool turn came last. Tool output
    is never graded, so a box the model's code printed is not the model's answer."""
    if not s.turns or s.turns[-1].role != "model":
        return ""
    text = s.turns[-1].text
    answer = getattr(s.env, "answer", None)
    if answer is None:
        return text
    try:
        return str(answer(text))
    except Exception:  # a user environment's bug must not end the run: nothing is graded
        return ""


def round_results(rollouts: Sequence[Rollout], eos_ids) -> list[tuple[list[int], list[float], str]]:
    """An engine's ``generate(seqs, 1, ...)`` as one round's (ids, logprobs, how): "eos" when
    the last id is an EOS id, "stop" for a stop string, "length" otherwise."""
    eos = set(eos_ids)
    out = []
    for r in rollouts:
        how = r.finish_reason
        if how == "stop":
            how = "eos" if r.completion_ids and r.completion_ids[-1] in eos else "stop"
        out.append((list(r.completion_ids), list(r.sample_logprobs), how))
    return out


def eos_ids(policy) -> list[int]:
    """The ids that end a completion: the model's generation config's and the tokenizer's."""
    ids = set()
    config = getattr(getattr(policy, "model", None), "generation_config", None)
    cfg_eos = getattr(config, "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif cfg_eos:
        ids.update(cfg_eos)
    if policy.tokenizer.eos_token_id is not None:
        ids.add(policy.tokenizer.eos_token_id)
    return sorted(ids)


def _step(env: Environment, text: str) -> Step:
    """The env's answer; an exception in the environment is an error observation, not a crash."""
    try:
        step = env.step(text)
    except Exception as exc:  # a user environment's bug must not end the run
        return Step(f"\n[environment error: {type(exc).__name__}: {exc}]\n", error=True)
    return step if isinstance(step, Step) else Step(done=True, error=True)


def _apply(s: _Seq, step: Step, tools: ToolSettings, tok) -> None:
    how, s.pending = s.pending, None
    if step.observation is None:
        if step.done or how == "eos":
            s.close_model_turn(tok)
            s.finish = "stop"
        return  # the stop string was not a call: the same turn goes on
    s.close_model_turn(tok)
    if s.calls >= tools.max_tool_calls:
        s.finish = "tool_limit"  # this call is not run
        return
    s.calls += 1
    enc = lambda text: list(tok(text, add_special_tokens=False)["input_ids"]) if text else []  # noqa: E731
    obs_ids = enc(step.observation)
    cut = len(obs_ids) > tools.tool_output_tokens
    if cut:
        note = CUT_NOTE.format(shown=tools.tool_output_tokens, total=len(obs_ids))
        obs_ids = obs_ids[: tools.tool_output_tokens] + enc(note)
    # a chat template's tool turn: its own text around the output, each piece encoded once
    obs_ids = enc(step.before) + obs_ids + enc(step.after)
    start = len(s.ids)
    s.ids += obs_ids
    s.mask += [0] * len(obs_ids)
    s.logprobs += [0.0] * len(obs_ids)
    text = tok.decode(obs_ids, skip_special_tokens=True)
    s.turns.append(Turn("tool", text, start, len(s.ids), step.seconds, step.error, step.timed_out, cut))
    s.turn_start = len(s.ids)
    if step.done:
        s.finish = "stop"


def _with_prompt(record, prompt: Optional[str]):
    """The record with the environment's prompt as its question (None: unchanged)."""
    if prompt is None:
        return record
    if record.messages is not None:
        messages = [m for m in record.messages if m.get("role") == "system"]
        return dataclasses.replace(record, messages=messages + [{"role": "user", "content": prompt}])
    return dataclasses.replace(record, text=prompt)


# --------------------------------------------------------------------------- what others read


def graded_text(rollout: Rollout) -> str:
    """The completion the checkers grade: for a multi-turn rollout its final model turn
    (``Rollout.answer_text``), never the tool output; otherwise the whole completion."""
    return rollout.completion_text if rollout.answer_text is None else rollout.answer_text


def checker_fields(fields: Mapping[str, Any], rollout: Rollout) -> dict:
    """A checker's fields for one rollout: the record's, the model's token count and, for
    multi-turn rollouts, ``turns`` (a list of Turn dicts) and ``transcript`` (the whole
    decoded completion, tool turns included: for a checker of your own; the completion a
    checker is given is ``graded_text``)."""
    model_tokens = sum(rollout.loss_mask) if rollout.loss_mask else len(rollout.completion_ids)
    out = dict(fields, completion_tokens=model_tokens)
    if rollout.turns:
        out["turns"] = [t.as_dict() for t in rollout.turns]
        out["transcript"] = rollout.completion_text
    return out


def tool_metrics(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """tools/calls_mean, tools/error_frac, tools/timeout_frac (of calls), tools/seconds (mean
    tool time per rollout)."""
    if not rollouts:
        return {}
    calls = [[t for t in r.turns if t.role == "tool"] for r in rollouts]
    flat = [t for c in calls for t in c]
    n_calls = max(len(flat), 1)
    return {
        "tools/calls_mean": len(flat) / len(rollouts),
        "tools/error_frac": sum(t.error for t in flat) / n_calls,
        "tools/timeout_frac": sum(t.timed_out for t in flat) / n_calls,
        "tools/seconds": sum(t.seconds for t in flat) / len(rollouts),
        "tools/limit_frac": sum(r.finish_reason == "tool_limit" for r in rollouts) / len(rollouts),
    }
