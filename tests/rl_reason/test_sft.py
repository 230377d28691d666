"""rl-reason sft: TRL's SFTTrainer on the recipe's adapter, in a train-like run dir."""

import shutil
from pathlib import Path

import pytest
import torch

from rl_reason.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TINY_SFT = ROOT / "recipes" / "test" / "tiny_sft.yaml"
DATA = ROOT / "recipes" / "test" / "tiny_sft.jsonl"


def _cfg(*overrides):
    from rl_reason.config import load_config

    return load_config(TINY_SFT, [f"sft.source={DATA}", *overrides])


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from rl_reason.sft import train_sft

    run_dir = tmp_path_factory.mktemp("sft") / "run"
    cfg = _cfg("checkpoint.every=2", "checkpoint.keep_last=3")
    train_sft(cfg, run_dir)
    return run_dir


def test_sft_loss_falls_and_run_dir_is_a_train_run_dir(sft_run):
    rows = read_jsonl(sft_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [r["sft/loss"] for r in rows]
    assert losses[-1] < 0.7 * losses[0], losses
    assert (sft_run / "adapter" / "adapter_model.safetensors").is_file()
    assert (sft_run / "config.yaml").is_file()
    from rl_reason import checkpoint

    names = [p.name for p in checkpoint.list_checkpoints(sft_run)]
    assert names == ["step-000002", "step-000004", "step-000006"]
    assert not (sft_run / ".hf").exists()  # TRL's own copies moved into the atomic checkpoints


def test_only_completion_tokens_carry_loss(tmp_path):
    from rl_reason.data import tokenize_prompts
    from rl_reason.sft import SftRun, row_prompt_completion

    cfg = _cfg()
    run = SftRun(cfg, tmp_path / "run").build()
    run.tracker.close()
    tok = run.policy.tokenizer
    batch = next(iter(run.trainer.get_train_dataloader()))
    labels, ids, att = batch["labels"], batch["input_ids"], batch["attention_mask"]
    by_ids = {tuple(e.prompt_ids + e.completion_ids): e for e in run.examples}
    checked = 0
    for row in range(ids.shape[0]):
        n = int(att[row].sum())
        ex = by_ids[tuple(ids[row, :n].tolist())]
        p = len(ex.prompt_ids)
        assert (labels[row, :p] == -100).all()  # the prompt
        assert (labels[row, n:] == -100).all()  # padding
        assert torch.equal(labels[row, p:n], ids[row, p:n])  # the completion, EOS included
        assert int(labels[row, n - 1]) == tok.eos_token_id
        checked += 1
    assert checked == ids.shape[0] >= 2
    # the prompt tokens are the ones RL rollouts see for the same row
    import json

    row0 = json.loads(DATA.read_text().splitlines()[0])
    record, completion = row_prompt_completion(row0, 0, cfg)
    ex0 = run.examples[0]
    assert ex0.prompt_ids == tokenize_prompts([record], tok)[0]
    assert tok.decode(ex0.completion_ids) == completion + tok.eos_token


def test_sft_resume_continues_exactly(sft_run, tmp_path):
    """A run killed after step 4's checkpoint, resumed, ends with the same adapter bitwise."""
    from peft import load_peft_weights

    from rl_reason.cli import main

    cut = tmp_path / "cut"
    shutil.copytree(sft_run, cut)
    shutil.rmtree(cut / "checkpoints" / "step-000006")
    shutil.rmtree(cut / "adapter")
    assert main(["resume", str(cut)]) == 0  # run.json says kind: sft
    a = load_peft_weights(str(sft_run / "adapter"), device="cpu")
    b = load_peft_weights(str(cut / "adapter"), device="cpu")
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # no step twice
    full = read_jsonl(sft_run / "metrics.jsonl")
    assert [r["sft/loss"] for r in rows] == [r["sft/loss"] for r in full]


def test_sft_adapter_seeds_train_through_init_adapter(sft_run, tiny_cfg):
    from peft import load_peft_weights

    from rl_reason.policy import load_policy

    cfg = tiny_cfg(f"model.init_adapter={sft_run / 'adapter'}")
    got = load_policy(cfg.model, cfg.lora, seed=3).adapter_state()
    want = load_peft_weights(str(sft_run / "adapter"), device="cpu")
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_sft_without_source_is_one_line_exit_2(tmp_path, capsys):
    from rl_reason.cli import main

    rc = main(["sft", str(TINY_SFT), "sft.source=null", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: sft.source:")
    assert not (tmp_path / "r").exists()


def test_sft_unknown_key_is_refused():
    from rl_reason.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sft.bogus: unknown key"):
        _cfg("sft.bogus=1")
