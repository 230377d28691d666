"""Multi-turn rollouts: tool turns spliced in as exact tokens, masked out of the loss.

The tiny random model never writes a fenced python block, so the python tool is driven by a
scripted first turn (``Scripted``: the first round of every sequence returns the ids of a
fixed tool call; later rounds sample from the model). The environment in
tests/rl_reason/_envs.py pauses on any lowercase letter, which the random model does write,
so the log-prob, id and gradient checks below run on turns the model really sampled.
"""

import json

import pytest
import torch

from rl_reason import algorithms
from rl_reason.batching import collate, train_batch
from rl_reason.envs import Step
from rl_reason.rollout import SamplingParams, multiturn
from rl_reason.rollout.hf import HFEngine
from rl_reason.rollout.multiturn import ToolSettings

from .conftest import ROOT

TOOLS = ROOT / "recipes" / "test" / "tiny_tools.yaml"
SCRIPT = "Compute it.\n```python\nprint(6 * 7)\n```"


class Scripted(HFEngine):
    """HF engine that writes SCRIPT (a tool call) as a sequence's first ``scripted_rounds``
    turns; after those it samples from the model."""

    scripted_rounds = 1

    def continue_rows(self, seqs, sampling):
        ids = list(self.policy.tokenizer(SCRIPT, add_special_tokens=False)["input_ids"])
        calls = [sum(seq[i : i + len(ids)] == ids for i in range(len(seq))) for seq in map(list, seqs)]
        rest = [k for k, c in enumerate(calls) if c >= self.scripted_rounds]
        sampled = dict(zip(rest, super().continue_rows([seqs[k] for k in rest], sampling))) if rest else {}
        return [sampled.get(k, (ids, [], "stop")) for k in range(len(seqs))]


def records(n=2):
    from rl_reason.data import PromptRecord

    return [PromptRecord(id=f"r{i}", messages=[{"role": "user", "content": f"{i} * 7?"}]) for i in range(n)]


def settings(env_factory, **kw):
    return ToolSettings(make_env=env_factory, **kw)


def python_env():
    from rl_reason.envs.python_tool import PythonTool

    return PythonTool(timeout_s=2.0)


def letters(done_after=0):
    from tests.rl_reason._envs import Letters

    return lambda: Letters(done_after=done_after)


def test_python_call_is_run_and_its_output_spliced_once_masked(tiny_policy):
    tok = tiny_policy.tokenizer
    torch.manual_seed(0)
    out = multiturn.generate(
        Scripted(tiny_policy), records(), 2, SamplingParams(max_new_tokens=40), settings(python_env), tok
    )
    assert len(out) == 4 and [r.prompt_index for r in out] == [0, 0, 1, 1]
    script_ids = tok(SCRIPT, add_special_tokens=False)["input_ids"]
    obs = "\n```output\n42\n```\n"
    obs_ids = tok(obs, add_special_tokens=False)["input_ids"]
    for r in out:
        model, tool = r.turns[0], r.turns[1]
        assert (model.role, model.text, model.start, model.end) == ("model", SCRIPT, 0, len(script_ids))
        assert tool.role == "tool" and tool.text == obs and not tool.error and tool.seconds > 0
        assert r.completion_ids[: len(script_ids)] == script_ids
        assert r.completion_ids[tool.start : tool.end] == obs_ids  # encoded once, as is
        assert r.loss_mask[tool.start : tool.end] == [0] * len(obs_ids)
        assert r.loss_mask[: tool.start] == [1] * tool.start and all(r.loss_mask[tool.end :])
        assert len(r.loss_mask) == len(r.completion_ids) == len(r.sample_logprobs)
        assert "42" in r.completion_text
        # the budget counts the model's tokens only
        assert sum(r.loss_mask) <= 40 and sum(r.loss_mask) == len(r.completion_ids) - len(obs_ids)
        f = multiturn.checker_fields({"answer": "42"}, r)
        assert f["turns"][1]["text"] == obs and f["completion_tokens"] == sum(r.loss_mask)


@pytest.mark.parametrize("max_calls", [0, 2])
def test_max_tool_calls_ends_the_rollout(tiny_policy, max_calls):
    eng = Scripted(tiny_policy)
    eng.scripted_rounds = 10  # the policy calls the tool every turn
    out = multiturn.generate(
        eng,
        records(1),
        1,
        SamplingParams(max_new_tokens=200),
        settings(python_env, max_tool_calls=max_calls),
        tiny_policy.tokenizer,
    )
    (r,) = out
    assert r.finish_reason == "tool_limit" and not r.truncated
    assert [t.role for t in r.turns] == ["model", "tool"] * max_calls + ["model"]
    assert multiturn.tool_metrics(out)["tools/calls_mean"] == max_calls


def test_long_tool_output_is_cut_with_a_note(tiny_policy):
    tok = tiny_policy.tokenizer

    class Loud:
        stop = ("```",)

        def reset(self, fields):
            return None

        def step(self, text):
            return Step("y" * 500)

    (r,) = multiturn.generate(
        Scripted(tiny_policy),
        records(1),
        1,
        SamplingParams(max_new_tokens=60),
        settings(Loud, tool_output_tokens=16, max_tool_calls=1),
        tok,
    )
    tool = r.turns[1]
    note = multiturn.CUT_NOTE.format(
        shown=16, total=len(tok("y" * 500, add_special_tokens=False)["input_ids"])
    )
    assert tool.cut and tool.text == "y" * 16 + note
    assert tool.end - tool.start == 16 + len(tok(note, add_special_tokens=False)["input_ids"])


def test_an_environment_that_raises_gives_an_error_observation(tiny_policy):
    from tests.rl_reason._envs import Broken

    torch.manual_seed(0)
    out = multiturn.generate(
        HFEngine(tiny_policy),
        records(2),
        4,
        SamplingParams(max_new_tokens=40),
        settings(Broken, max_tool_calls=1),
        tiny_policy.tokenizer,
    )
    tools = [t for r in out for t in r.turns if t.role == "tool"]
    assert tools, "the random model wrote no letter in 8 x 40 tokens"
    assert all(t.error and "environment error: RuntimeError: boom" in t.text for t in tools)


def _sampled_with_letters(policy, done_after=0, n=4, max_new=32):
    torch.manual_seed(1)
    out = multiturn.generate(
        HFEngine(policy),
        records(2),
        n,
        SamplingParams(max_new_tokens=max_new),
        settings(letters(done_after), max_tool_calls=3),
        policy.tokenizer,
    )
    assert sum(t.role == "tool" for r in out for t in r.turns) >= 4, "too few tool turns to test"
    return out


def _micro_batch(rollouts, policy):
    adv = torch.linspace(-1, 1, len(rollouts))
    batch = train_batch(rollouts, adv, torch.ones(len(rollouts), dtype=torch.bool), mask_truncated=False)
    return collate(batch, list(range(len(batch))), policy.tokenizer.pad_token_id, "cpu")


def test_token_ids_and_logprobs_of_model_turns_match_the_trainer(tiny_policy):
    """hf: the update sees the sampler's exact ids, and scores the model's tokens as the
    sampler did across tool turns (positions and context include the spliced tool text)."""
    out = _sampled_with_letters(tiny_policy)
    mb = _micro_batch(out, tiny_policy)
    C = mb.completion_len
    with torch.no_grad():
        logp, _ = tiny_policy.completion_logprobs(tiny_policy.model, mb.input_ids, mb.attention_mask, C)
    for row, r in enumerate(out):
        n = len(r.completion_ids)
        assert mb.input_ids[row, -C:][:n].tolist() == r.completion_ids  # bit-identical ids
        assert mb.mask[row, :n].tolist() == [float(x) for x in r.loss_mask]
        assert mb.model[row, :n].tolist() == [float(x) for x in r.loss_mask]
        model_tok = torch.tensor(r.loss_mask, dtype=torch.bool)
        sampled = torch.tensor(r.sample_logprobs)[model_tok]
        assert torch.allclose(logp[row, :n][model_tok], sampled, atol=1e-4), (row, r.turns)


def _lora_grad(policy, mb, adv):
    policy.model.zero_grad(set_to_none=True)
    logp, _ = policy.completion_logprobs(policy.model, mb.input_ids, mb.attention_mask, mb.completion_len)
    loss, _ = algorithms.policy_loss(
        logp, logp.detach(), adv, mb.mask, agg="token_mean", num_tokens=float(mb.mask.sum())
    )
    loss.backward()
    return [p.grad.clone() for p in policy.trainable_parameters()]


def test_tool_tokens_get_no_gradient(tiny_policy):
    """Perturbing tool tokens that end a rollout (nothing after them reads them) leaves the
    gradient bit-identical; perturbing a model token does not (so the check can fail)."""
    out = [r for r in _sampled_with_letters(tiny_policy, done_after=1) if r.turns[-1].role == "tool"]
    assert out
    mb = _micro_batch(out, tiny_policy)
    adv = torch.linspace(-1, 1, len(out))
    base = _lora_grad(tiny_policy, mb, adv)
    C = mb.completion_len
    ids = mb.input_ids.clone()
    for row, r in enumerate(out):
        t = r.turns[-1]
        ids[row, ids.shape[1] - C + t.start : ids.shape[1] - C + t.end] = 7 + row
    import dataclasses

    same = _lora_grad(tiny_policy, dataclasses.replace(mb, input_ids=ids), adv)
    assert all(torch.equal(a, b) for a, b in zip(base, same))
    ids2 = mb.input_ids.clone()
    ids2[0, ids.shape[1] - C] = (int(ids2[0, ids.shape[1] - C]) + 1) % 250 + 3  # a model token
    other = _lora_grad(tiny_policy, dataclasses.replace(mb, input_ids=ids2), adv)
    assert not all(torch.equal(a, b) for a, b in zip(base, other))


# --------------------------------------------------------------------------- training


def _train(tmp_path, *overrides, engine=None, monkeypatch=None):
    from rl_reason.cli import main

    if engine is not None:
        from rl_reason.rollout import factory

        monkeypatch.setattr(factory, "make_engine", lambda cfg, policy, *a, **kw: engine(policy))
    run_dir = tmp_path / "run"
    args = ["train", str(TOOLS), "--run-dir", str(run_dir), "train.steps=2", "logging.plot=false", *overrides]
    assert main(args) == 0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rollouts = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    return run_dir, rows, rollouts


def test_a_user_environment_from_a_test_module_trains_two_steps(tmp_path):
    # checkers grade the final model turn, which Letters ends at its first lowercase letter:
    # the share of letters in it varies across a group, digits there are rare
    letters_share = "{name: regex, alias: letters, params: {pattern: '[a-z]', mode: fraction}}"
    _, rows, rollouts = _train(
        tmp_path,
        "rollout.tools=[tests.rl_reason._envs:Letters]",
        "rollout.tool_params={}",
        f"rewards.checkers=[{letters_share}]",
    )
    steps = [r for r in rows if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert r["tools/calls_mean"] > 0 and r["tools/error_frac"] == 0.0
        assert r["rollout/logprob_diff_max"] < 1e-3  # model tokens only
        assert r["policy/grad_norm"] > 0
    turns = [t for row in rollouts for t in row.get("turns", [])]
    assert any(t["role"] == "tool" and t["text"].startswith(" <") for t in turns)


def test_python_tool_trains_two_steps_of_the_tiny_recipe(tmp_path, monkeypatch):
    _, rows, rollouts = _train(tmp_path, engine=Scripted, monkeypatch=monkeypatch)
    steps = [r for r in rows if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["tools/calls_mean"] >= 1.0 and r["tools/seconds"] > 0 for r in steps)
    first = [row for row in rollouts if row["step"] == 1]
    assert all(row["turns"][1]["text"] == "\n```output\n42\n```\n" for row in first)


@pytest.mark.slow  # ~100 s here: three tiny runs, one in a subprocess
def test_kill_mid_run_and_resume_is_exact(tmp_path):
    """SIGKILL after step 3 is logged (checkpoint at 2): the resumed run redoes step 3 and
    matches the uninterrupted run bit for bit, tool turns included."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from rl_reason.cli import main

    common = [
        "train.steps=4",
        "checkpoint.every=2",
        "logging.plot=false",
        "rollout.tools=[tests.rl_reason._envs:Letters]",
        "rollout.tool_params={}",
        "eval.at_start=false",
        "eval.at_end=false",
    ]
    ref = tmp_path / "ref"
    assert main(["train", str(TOOLS), "--run-dir", str(ref), *common]) == 0
    run = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl_reason.cli", "train", str(TOOLS), "--run-dir", str(run), *common],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = run / "metrics.jsonl"
    end = time.time() + 300
    while time.time() < end and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # steps 1..3
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert main(["resume", str(run)]) == 0

    def rows(d):
        out = []
        for line in (d / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            out.append(
                {
                    k: v
                    for k, v in r.items()
                    if not k.startswith(("time/", "throughput/")) and "seconds" not in k
                }
            )
        return out

    assert rows(run) == rows(ref)
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4]
    want, got = (
        load_file(ref / "adapter" / "adapter_model.safetensors"),
        load_file(run / "adapter" / "adapter_model.safetensors"),
    )
    assert all(torch.equal(want[k], got[k]) for k in want)

    def turns(d):
        return [
            (json.loads(x)["step"], json.loads(x).get("turns"))
            for x in (d / "rollouts.jsonl").read_text().splitlines()
        ]

    assert turns(run) == turns(ref)
