"""rl-reason sample: n completions per prompt, graded; only verified rows kept; resumable."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_reason.sample import choose
from rl_reason.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "test" / "tiny_grpo.yaml"
CHECK = [
    "rewards.checkers=[{name: 'tests.rl_reason._sample_checkers:has_digit'}]",
    "rewards.workers=1",
    "rollout.max_new_tokens=6",
]


def test_choose_keeps_what_each_rule_says():
    texts, toks = ["a", "b", "a", "c"], [5, 3, 5, 2]
    totals, correct = [1.0, 1.0, 1.0, 0.5], [True, True, True, False]
    assert choose("correct", texts, toks, totals, correct) == [0, 1]  # distinct correct ones
    assert choose("shortest-correct", texts, toks, totals, correct) == [1]
    assert choose("best", texts, toks, totals, correct) == [1]  # top total, then shortest
    assert choose("correct", texts, toks, totals, [False] * 4) == []
    assert choose("best", ["x"], [1], [0.0], [False]) == [0]


def test_sample_keeps_only_verified_rows_and_feeds_sft(tiny_cfg, tmp_path):
    from rl_reason.sample import sample

    cfg = tiny_cfg(*CHECK)
    out = tmp_path / "kept.jsonl"
    s = sample(cfg, out, keep="correct", limit=6, n=4)
    rows = read_jsonl(out)
    progress = read_jsonl(Path(str(out) + ".progress"))
    assert s["prompts"] == 6 and s["samples"] == 24 and len(progress) == 6
    assert 0 < s["pass_at_1"] < 1  # some right, some wrong: the filter has work to do
    assert rows and len(rows) == s["rows"] == sum(p["kept"] for p in progress)
    for r in rows:
        assert any(c.isdigit() for c in r["completion"])  # verified by the checker
        assert r["correct"] is True and r["messages"][-1]["role"] == "user"
        assert set(r) >= {"prompt_id", "messages", "completion", "fields", "rewards"}
        assert "answer" in r["fields"]
    assert json.loads(Path(str(out) + ".summary.json").read_text())["rows"] == len(rows)
    # the file feeds sft as is
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_tokenizer
    from rl_reason.sft import examples

    scfg = tiny_cfg(f"sft.source={out}")
    exs = examples(scfg, load_tokenizer(resolve_model("tiny-random")))
    assert len(exs) == len(rows)


def test_sample_resumes_after_sigkill_without_duplicates(tmp_path):
    out = tmp_path / "kept.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "rl_reason.cli",
        "sample",
        str(TINY),
        *CHECK,
        "--out",
        str(out),
        "--keep",
        "best",
        "--limit",
        "24",
        "--n",
        "2",
        "rollout.generation_batch_size=2",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = Path(str(out) + ".progress")
    deadline = time.time() + 240
    while time.time() < deadline and len(read_jsonl(progress)) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = len(read_jsonl(progress))
    assert 3 <= first < 24, first
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{first} prompts done before" in done.stderr
    rows = read_jsonl(out)
    ids = [r["prompt_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 24  # best keeps one row per prompt: none twice, none lost
    assert len(read_jsonl(progress)) == 24


def test_restore_drops_rows_of_a_prompt_without_a_progress_line(tmp_path):
    from rl_reason.sample import restore

    out = tmp_path / "k.jsonl"
    out.write_text(
        json.dumps({"prompt_id": "a", "completion": "1"})
        + "\n"
        + json.dumps({"prompt_id": "b", "completion": "2"})
        + "\n"
        + '{"prompt_id": "c", "comp'
    )
    Path(str(out) + ".progress").write_text(json.dumps({"id": "a", "n": 1, "correct": 1, "kept": 1}) + "\n")
    assert set(restore(out)) == {"a"}
    assert [r["prompt_id"] for r in read_jsonl(out)] == ["a"]
    assert out.read_text().endswith("\n")


def test_sample_flags_are_checked(capsys, tmp_path):
    from rl_reason.cli import main

    assert main(["sample", str(TINY), "--out", str(tmp_path / "o.jsonl"), "--limit", "0"]) == 2
    assert main(["sample", str(TINY), "--out", str(tmp_path / "o.jsonl"), "--policy", "teacher"]) == 2
    err = capsys.readouterr().err
    assert "--limit must be > 0" in err and "no teacher" in err


def test_sample_template_shows_the_model_one_prompt_and_writes_the_recipes(tiny_cfg, tmp_path, monkeypatch):
    from rl_reason import data
    from rl_reason.errors import ConfigError
    from rl_reason.sample import sample

    seen = []
    real = data.tokenize_prompts

    def spy(recs, tok):
        seen.extend(r.messages[-1]["content"] for r in recs)
        return real(recs, tok)

    monkeypatch.setattr(data, "tokenize_prompts", spy)
    cfg = tiny_cfg(*CHECK)
    out = tmp_path / "kept.jsonl"
    s = sample(cfg, out, keep="best", limit=3, n=2, sample_template="EXAMPLE 2+3=5. {prompt}")
    rows = read_jsonl(out)
    assert s["prompts"] == 3 and len(rows) == 3 and len(seen) == 3
    assert all(t.startswith("EXAMPLE 2+3=5. ") for t in seen)  # the model saw the example
    plain = data.load_records(cfg.data, seed=cfg.train.seed)[:3]
    for r, rec in zip(rows, plain):  # the rows hold the recipe's own prompt, same records
        assert r["prompt_id"] == rec.id and r["messages"] == rec.messages
        assert "EXAMPLE" not in json.dumps(r["messages"])
    with pytest.raises(ConfigError, match=r"\{prompt\}"):
        sample(cfg, tmp_path / "x.jsonl", limit=1, n=1, sample_template="no placeholder")


def test_a_resumed_sample_with_other_settings_is_refused_and_more_prompts_are_not(tiny_cfg, tmp_path, capsys):
    from rl_reason.cli import main
    from rl_reason.errors import ConfigError
    from rl_reason.sample import sample

    cfg = tiny_cfg(*CHECK)
    out = tmp_path / "kept.jsonl"
    sample(cfg, out, keep="best", limit=2, n=2)
    settings = json.loads(Path(str(out) + ".settings.json").read_text())
    assert settings["n"] == 2 and settings["keep"] == "best" and settings["sample_template"] is None
    rows_before = out.read_text()
    for kwargs, key in [
        (dict(keep="best", n=3), "n=2"),
        (dict(keep="correct", n=2), "keep='best'"),
        (dict(keep="best", n=2, sample_template="EXAMPLE {prompt}"), "sample_template=None"),
    ]:
        with pytest.raises(ConfigError) as exc:  # else it appends to rows of other settings
            sample(cfg, out, limit=3, **kwargs)
        assert key in str(exc.value) and "another --out" in str(exc.value)
        assert out.read_text() == rows_before  # nothing written, nothing cut
    # other sampling settings through the recipe, from the command line: one line, exit 2
    assert (
        main(
            [
                "sample",
                str(TINY),
                *CHECK,
                "rollout.temperature=0.5",
                "--keep",
                "best",
                "--n",
                "2",
                "--limit",
                "3",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "temperature=1.0" in capsys.readouterr().err
    # the same settings with a larger --limit continue the file
    s = sample(cfg, out, keep="best", limit=3, n=2)
    assert s["prompts"] == 3 and len(read_jsonl(out)) == 3
    assert out.read_text().startswith(rows_before)
