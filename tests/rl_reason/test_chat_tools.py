"""rollout.tool_format: chat_template -- the python tool called in the chat template's own
format, on the tiny model with a small ChatML template that renders tools (set in the test).

The first round of every sequence is scripted (a Hermes-style call); later rounds are sampled
by the tiny model through the hf engine, so the tool turn is spliced between real samples.
"""

import copy

import pytest
import torch

from rl_reason.data import PromptRecord, tokenize_prompts
from rl_reason.envs import chat_tools
from rl_reason.envs.python_tool import PythonTool
from rl_reason.errors import ConfigError
from rl_reason.rollout import SamplingParams, multiturn
from rl_reason.rollout.hf import HFEngine
from rl_reason.rollout.multiturn import ToolSettings

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools:\n{%- for t in tools %}\n{{ t | tojson }}{%- endfor %}\n"
    'Call one as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n{% endif %}'
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n{{ m.content }}"
    "{%- for c in m.tool_calls %}<tool_call>\n"
    '{{ {"name": c.function.name, "arguments": c.function.arguments} | tojson }}\n</tool_call>'
    "{%- endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BEFORE = "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
AFTER = "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
CALL = '<tool_call>\n{"name": "python", "arguments": {"code": "print(6 * 7)"}}\n</tool_call>'


@pytest.fixture()
def policy(tiny_policy):
    tiny_policy.tokenizer = copy.deepcopy(tiny_policy.tokenizer)
    tiny_policy.tokenizer.chat_template = TEMPLATE
    return tiny_policy


class FirstTurn(HFEngine):
    """Writes ``first`` as every sequence's first turn; samples from the model after it."""

    first = CALL

    def continue_rows(self, seqs, sampling):
        tok = self.policy.tokenizer
        ids = list(tok(self.first, add_special_tokens=False)["input_ids"])
        fresh = [k for k, s in enumerate(seqs) if tok.decode(list(s)).endswith("<|im_start|>assistant\n")]
        fresh = [k for k in fresh if self.first not in tok.decode(list(seqs[k]))]
        rest = [k for k in range(len(seqs)) if k not in fresh]
        sampled = dict(zip(rest, super().continue_rows([seqs[k] for k in rest], sampling))) if rest else {}
        return [sampled.get(k, (ids, [0.0] * len(ids), "stop")) for k in range(len(seqs))]


def records():
    return [PromptRecord(id="q", messages=[{"role": "user", "content": "6 * 7?"}], fields={"answer": "42"})]


def run(policy, first=CALL, n=2, max_new_tokens=150):
    tok = policy.tokenizer
    make = chat_tools.chat_template_factory(lambda: PythonTool(timeout_s=5.0), tok)
    eng = FirstTurn(policy)
    eng.first = first
    torch.manual_seed(0)
    return multiturn.generate(
        eng,
        records(),
        n,
        SamplingParams(max_new_tokens=max_new_tokens),
        ToolSettings(make, max_tool_calls=1),
        tok,
    )


def enc(tok, text):
    return list(tok(text, add_special_tokens=False)["input_ids"])


def test_the_tool_turn_is_read_off_the_template(policy):
    assert chat_tools.tool_turn(policy.tokenizer) == chat_tools.ToolTurn(BEFORE, AFTER)


def test_a_template_without_tools_is_a_config_error(tiny_policy):
    with pytest.raises(ConfigError, match="ignores tools=; use rollout.tool_format=fenced"):
        chat_tools.tool_turn(tiny_policy.tokenizer)


def test_the_schema_is_in_the_prompt_and_the_output_comes_back_as_the_tool_turn(policy):
    tok = policy.tokenizer
    out = run(policy)
    prompt = tok.decode(out[0].prompt_ids)
    assert prompt.startswith("<|im_start|>system\nTools:{") and '"name": "python"' in prompt
    assert out[0].prompt_ids == tokenize_prompts(records(), tok, tools=[chat_tools.SCHEMA])[0]
    call, obs = enc(tok, CALL), enc(tok, BEFORE) + enc(tok, "42") + enc(tok, AFTER)
    for r in out:
        model, tool = r.turns[0], r.turns[1]
        assert (model.role, model.text, model.start, model.end) == ("model", CALL, 0, len(call))
        assert (tool.start, tool.end) == (len(call), len(call) + len(obs)) and not tool.error
        # token in, token out: the call's ids as sampled, the template's tool turn as encoded once
        assert r.completion_ids[: tool.end] == call + obs
        assert r.loss_mask == [1] * len(call) + [0] * len(obs) + [1] * (len(r.completion_ids) - tool.end)
        assert len(r.sample_logprobs) == len(r.completion_ids)
        assert sum(r.loss_mask) <= 150 and len(r.completion_ids) > tool.end  # the model went on
        assert multiturn.graded_text(r) == chat_tools.strip_calls(r.turns[-1].text)


@pytest.mark.parametrize(
    "call, why",
    [
        ('<tool_call>\n{"name": "python", "arguments": {"code": </tool_call>', "not valid JSON"),
        ('<tool_call>\n{"name": "shell", "arguments": {"code": "ls"}}\n</tool_call>', "unknown tool 'shell'"),
        (
            '<tool_call>\n{"name": "python", "arguments": {"program": "1"}}\n</tool_call>',
            '{"code": "<program>"}',
        ),
    ],
)
def test_a_malformed_call_is_an_error_observation(policy, call, why):
    tok = policy.tokenizer
    out = run(policy, first=call, n=1)
    (r,) = out
    tool = r.turns[1]
    assert tool.role == "tool" and tool.error and why in tool.text
    ids = r.completion_ids[tool.start : tool.end]
    assert ids[: len(enc(tok, BEFORE))] == enc(tok, BEFORE) and ids[-len(enc(tok, AFTER)) :] == enc(
        tok, AFTER
    )
    assert multiturn.tool_metrics(out)["tools/error_frac"] == 1.0


def test_long_output_is_cut_inside_the_tool_turn(policy):
    tok = policy.tokenizer
    loud = '<tool_call>\n{"name": "python", "arguments": {"code": "print(\'y\' * 500)"}}\n</tool_call>'
    make = chat_tools.chat_template_factory(lambda: PythonTool(timeout_s=5.0), tok)
    eng = FirstTurn(policy)
    eng.first = loud
    (r,) = multiturn.generate(
        eng,
        records(),
        1,
        SamplingParams(max_new_tokens=200),
        ToolSettings(make, 1, tool_output_tokens=8),
        tok,
    )
    tool = r.turns[1]
    note = multiturn.CUT_NOTE.format(shown=8, total=len(enc(tok, "y" * 500)))
    want = enc(tok, BEFORE) + enc(tok, "y" * 500)[:8] + enc(tok, note) + enc(tok, AFTER)
    assert tool.cut and r.completion_ids[tool.start : tool.end] == want


def test_parse_and_strip():
    assert chat_tools.parse_call(CALL) == ("print(6 * 7)", None)
    args_as_string = '<tool_call>{"name": "python", "arguments": "{\\"code\\": \\"1\\"}"}</tool_call>'
    assert chat_tools.parse_call(args_as_string) == ("1", None)
    assert chat_tools.strip_calls("a " + CALL + " b <tool_call>{\\boxed{1}") == "a  b "


def test_recipe_field(tiny_cfg):
    from rl_reason.config import ConfigError as CfgError

    assert tiny_cfg().rollout.tool_format == "fenced"
    with pytest.raises(CfgError, match="tool_format"):
        tiny_cfg("rollout.tool_format=xml")
    with pytest.raises(CfgError, match="tool_format"):
        tiny_cfg("rollout.tools=[tests.rl_reason._envs:Letters]", "rollout.tool_format=chat_template")


def test_recipe_and_eval_flag_wrap_the_python_tool(tiny_cfg, policy):
    import argparse

    from rl_reason.eval_cli import _tools_for, tool_settings

    cfg = tiny_cfg("rollout.tools=[python]", "rollout.tool_format=chat_template")
    settings = multiturn.settings_from_config(cfg.rollout, policy.tokenizer)
    assert isinstance(settings.make_env(), chat_tools.ChatTemplatePython)
    with pytest.raises(ConfigError, match="ignores tools="):  # the stock tiny template has none
        multiturn.settings_from_config(
            cfg.rollout,
            copy.deepcopy(policy.tokenizer).__class__.from_pretrained(policy.tokenizer.name_or_path),
        )
    args = argparse.Namespace(
        tools="python", max_tool_calls=2, tool_output_tokens=32, tool_format="chat_template"
    )
    args.tool_settings = tool_settings(args)
    assert isinstance(_tools_for(args, policy.tokenizer).make_env(), chat_tools.ChatTemplatePython)
    args.tool_format = "fenced"
    assert isinstance(_tools_for(args, policy.tokenizer).make_env(), PythonTool)
