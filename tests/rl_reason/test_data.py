"""data.py: records from synthetic/local/hub sources, answer parsing, templates, the sampler."""

import json
import logging
from pathlib import Path

import pytest

from rl_reason import data
from rl_reason.config import DataConfig, SyntheticConfig
from rl_reason.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def _cfg(**kw) -> DataConfig:
    syn = kw.pop("synthetic", None)
    cfg = DataConfig(**kw)
    if syn is not None:
        cfg.synthetic = syn
    return cfg


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_disjoint_and_correct():
    syn = SyntheticConfig(
        ops=["+", "-", "*"], min_value=0, max_value=99, num_terms=3, num_train=300, num_eval=50
    )
    cfg = _cfg(synthetic=syn)
    train = data.load_records(cfg, seed=3)
    held = data.load_records(cfg, seed=3, held_out=True)
    assert len(train) == 300 and len(held) == 50
    assert [r.fields for r in train] == [r.fields for r in data.load_records(cfg, seed=3)]
    assert [r.messages for r in train] != [r.messages for r in data.load_records(cfg, seed=4)]
    q_train = {r.messages[-1]["content"] for r in train}
    q_held = {r.messages[-1]["content"] for r in held}
    assert len(q_train) == 300 and len(q_held) == 50 and not q_train & q_held
    for rec in train + held:
        q = rec.messages[-1]["content"]
        assert q.startswith("What is ") and q.endswith("?")
        expr = q[len("What is ") : -1]
        assert set(expr) <= set("0123456789+-* ")
        assert rec.fields["answer"] == str(eval(expr))  # test-only check of precedence
    assert len({r.id for r in train}) == 300


def test_synthetic_negative_operands_parenthesised():
    syn = SyntheticConfig(ops=["-"], min_value=-5, max_value=5, num_train=40, num_eval=10)
    recs = data.load_records(_cfg(synthetic=syn), seed=0)
    for rec in recs:
        expr = rec.messages[-1]["content"][len("What is ") : -1]
        assert rec.fields["answer"] == str(eval(expr))
    assert any("(-" in r.messages[-1]["content"] for r in recs)


def test_synthetic_small_space_repeats_train_keeps_held_out_disjoint(caplog):
    syn = SyntheticConfig(ops=["+"], min_value=0, max_value=4, num_train=100, num_eval=20)  # 25 problems
    cfg = _cfg(synthetic=syn)
    data._WARNED_SMALL_SPACE.clear()
    with caplog.at_level(logging.WARNING, logger="rl_reason.data"):
        train = data.load_records(cfg, seed=0)
        held = data.load_records(cfg, seed=0, held_out=True)
    assert caplog.text.count("only 25 distinct problems") == 1  # once, not once per split
    assert len(train) == 100 and len(held) == 12  # held-out capped at half the space
    q_train = {r.messages[-1]["content"] for r in train}
    q_held = {r.messages[-1]["content"] for r in held}
    assert len(q_held) == 12 and len(q_train) == 13 and not q_train & q_held


def test_synthetic_unknown_task():
    with pytest.raises(DataError, match="unknown synthetic task"):
        data.load_records(_cfg(source="synthetic:chess"), seed=0)


def test_shuffle_and_limit():
    syn = SyntheticConfig(max_value=50, num_train=30, num_eval=5)
    a = data.load_records(_cfg(synthetic=syn, shuffle=False), seed=0)
    b = data.load_records(_cfg(synthetic=syn, shuffle=True), seed=0)
    assert sorted(r.id for r in a) == sorted(r.id for r in b) and [r.id for r in a] != [r.id for r in b]
    lim = data.load_records(_cfg(synthetic=syn, shuffle=True, limit=7), seed=0)
    assert [r.id for r in lim] == [r.id for r in b[:7]]
    assert len(data.load_records(_cfg(synthetic=syn, limit=2), seed=0, held_out=True)) == 5


# --------------------------------------------------------------------------- templates


def test_chat_template_with_system_prompt_and_literal_braces():
    syn = SyntheticConfig(num_train=3, num_eval=1)
    cfg = _cfg(synthetic=syn, system_prompt="Be brief.", prompt_template="{prompt} Put it in \\boxed{}.")
    rec = data.load_records(cfg, seed=0)[0]
    assert rec.text is None
    assert rec.messages[0] == {"role": "system", "content": "Be brief."}
    assert rec.messages[1]["role"] == "user"
    assert rec.messages[1]["content"].endswith("? Put it in \\boxed{}.")


def test_plain_template():
    syn = SyntheticConfig(num_train=3, num_eval=1)
    cfg = _cfg(synthetic=syn, template="plain", prompt_template="Question: {prompt}\nAnswer:")
    rec = data.load_records(cfg, seed=0)[0]
    assert (
        rec.messages is None and rec.text.startswith("Question: What is ") and rec.text.endswith("\nAnswer:")
    )
    cfg.system_prompt = "SYS"
    rec = data.load_records(cfg, seed=0)[0]
    assert rec.text.startswith("SYS\n\nQuestion: ")


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "value, fmt, want",
    [
        ("so 3 + 4 = 7\n#### 1,234", "gsm8k", "1234"),
        ("so\n#### 18", "auto", "18"),
        ("first \\boxed{1} then \\boxed{42}.", "boxed", "42"),
        ("so \\boxed{17} done", "auto", "17"),
        (" 42 ", "plain", "42"),
        (" 42 ", "auto", "42"),
        (7, "auto", "7"),
        ("no marker", "gsm8k", None),
        ("no box", "boxed", None),
        ("   ", "plain", None),
    ],
)
def test_parse_answer(value, fmt, want):
    assert data.parse_answer(value, fmt) == want


def test_last_boxed_nested_braces():
    # the fallback extractor (rewards.math.extract_answer is preferred when it exists)
    text = "x = \\boxed{\\frac{1}{2}} then \\boxed {\\left( 3, \\frac{\\pi}{2} \\right)}. \\boxed{"
    assert data._last_boxed(text) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert data._last_boxed("\\boxed{a{b}c} done") == "a{b}c"
    assert data._last_boxed("nothing") is None
    assert "frac" in data.parse_answer(text, "boxed")


# --------------------------------------------------------------------------- local files


ROWS = [
    {"uid": "a", "q": "What is 1+1?", "sol": "1+1=2\n#### 2", "tests": ["assert f() == 2"], "meta": {"k": 1}},
    {"uid": "b", "q": "What is 2+2?", "sol": "#### 4", "tests": ["assert f() == 4"], "meta": {"k": 2}},
    {"uid": "c", "q": None, "sol": "#### 5", "tests": [], "meta": {"k": 3}},
    {"uid": "d", "q": "What is 3+3?", "sol": "", "tests": [], "meta": {"k": 4}},
    {"uid": "e", "q": "What is 4+4?", "tests": [], "meta": {"k": 5}},
]


def test_jsonl_column_map_and_skips(tmp_path, caplog):
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = _cfg(
        source=str(path),
        prompt_field="q",
        id_field="uid",
        shuffle=False,
        fields={"answer": "sol", "tests": "tests", "meta": "meta"},
    )
    with caplog.at_level(logging.WARNING, logger="rl_reason.data"):
        recs = data.load_records(cfg, seed=0)
    assert [r.id for r in recs] == ["a", "b"]
    assert recs[0].fields == {"answer": "2", "tests": ["assert f() == 2"], "meta": {"k": 1}}
    assert recs[0].messages == [{"role": "user", "content": "What is 1+1?"}]
    assert "skipped 3 of 5 rows" in caplog.text and "rows c, d, e" in caplog.text


def test_strict_raises_naming_row_and_column(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = _cfg(source=str(path), prompt_field="q", id_field="uid", strict=True, fields={"answer": "sol"})
    with pytest.raises(DataError, match=r"row c: .*'q'.*data.strict=false"):
        data.load_records(cfg, seed=0)


def test_unknown_column_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(
        DataError, match=r"data.fields.answer='answer': no such column .*columns are: meta, q, sol"
    ):
        data.load_records(_cfg(source=str(path), prompt_field="q"), seed=0)


def test_row_index_ids_and_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    pd.DataFrame({"question": ["p0", "p1", "p2"], "answer": ["\\boxed{1}", "2", "#### 3"]}).to_parquet(path)
    recs = data.load_records(_cfg(source=str(path), shuffle=False, template="plain"), seed=0)
    assert [(r.id, r.text, r.fields["answer"]) for r in recs] == [
        ("0", "p0", "1"),
        ("1", "p1", "2"),
        ("2", "p2", "3"),
    ]


def test_missing_file_and_bad_hub_id(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found"):
        data.load_records(_cfg(source=str(tmp_path / "nope.jsonl")), seed=0)
    import datasets

    calls = []

    def fake_load(*args, **kw):  # no hub access here: check the call and the error wrapping
        calls.append((args, kw))
        raise ConnectionError("offline\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr("rl_reason.hub.offline_reason", lambda: None)  # as if online
    cfg = _cfg(source="no-such-owner/no-such-set", config_name="main")
    with pytest.raises(
        DataError,
        match=r"cannot load dataset 'no-such-owner/no-such-set' \(config 'main', split 'test'\): offline;",
    ):
        data.load_records(cfg, seed=0, split="test")
    assert calls == [(("no-such-owner/no-such-set", "main"), {"split": "test"})]


def test_held_out_needs_a_split_for_files(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DataError, match="eval.split"):
        data.load_records(_cfg(source=str(path)), seed=0, held_out=True)
    # a local file has one split: never evaluate on the training rows by accident
    with pytest.raises(DataError, match="no 'test' split"):
        data.load_records(_cfg(source=str(path)), seed=0, split="test")
    assert len(data.load_records(_cfg(source=str(path)), seed=0, split="train")) == 1


@pytest.mark.skipif(not (SHARED / "gsm8k_test.jsonl").exists(), reason="shared data missing")
def test_shared_gsm8k():
    recs = data.load_records(_cfg(source=str(SHARED / "gsm8k_test.jsonl"), shuffle=False, limit=20), seed=0)
    assert len(recs) == 20 and recs[0].id == "0"
    assert recs[0].fields["answer"] == "18"
    assert all(r.fields["answer"].lstrip("-").replace(".", "").isdigit() for r in recs)


@pytest.mark.skipif(not (SHARED / "math500_test.jsonl").exists(), reason="shared data missing")
def test_shared_math500():
    recs = data.load_records(_cfg(source=str(SHARED / "math500_test.jsonl"), shuffle=False), seed=0)
    assert len(recs) == 500
    assert "\\frac{\\pi}{2}" in recs[0].fields["answer"]
    assert all(
        "\\boxed" not in r.fields["answer"] and "The answer is" not in r.fields["answer"] for r in recs
    )


# --------------------------------------------------------------------------- the sampler


def _recs(n):
    return [data.PromptRecord(id=str(i), text=f"p{i}", fields={}) for i in range(n)]


def test_sampler_epochs_cover_all_and_wrap_mid_batch():
    s = data.PromptSampler(_recs(10), batch_size=4, seed=1)
    ids = [r.id for _ in range(5) for r in s.next_batch()]  # 20 = two full epochs
    assert sorted(ids[:10]) == sorted(ids[10:]) == [str(i) for i in range(10)]
    assert ids[:10] != ids[10:]  # epoch 1 has its own order
    assert s.state_dict() == {"epoch": 1, "position": 10, "seed": 1}
    plain = data.PromptSampler(_recs(5), batch_size=3, seed=1, shuffle=False)
    assert [[r.id for r in plain.next_batch()] for _ in range(2)] == [["0", "1", "2"], ["3", "4", "0"]]


def test_sampler_resume_is_exact():
    recs = _recs(7)
    s = data.PromptSampler(recs, batch_size=3, seed=5)
    for _ in range(5):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # survives serialisation
    want = [[r.id for r in s.next_batch()] for _ in range(3)]
    fresh = data.PromptSampler(recs, batch_size=3, seed=5)
    fresh.load_state_dict(state)
    assert [[r.id for r in fresh.next_batch()] for _ in range(3)] == want


def test_sampler_rejects_foreign_state():
    s = data.PromptSampler(_recs(3), batch_size=2, seed=0)
    with pytest.raises(DataError, match="dataset changed"):
        s.load_state_dict({"epoch": 0, "position": 9, "seed": 0})


# --------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    zoo = pytest.importorskip("rl_reason.model_zoo")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(zoo.resolve_model("tiny-random"))


def test_render_and_tokenize_chat(tokenizer):
    rec = data.PromptRecord(id="0", messages=[{"role": "user", "content": "What is 2 + 3?"}], fields={})
    text = data.render_prompt(rec, tokenizer)
    assert "What is 2 + 3?" in text
    assert text == tokenizer.apply_chat_template(rec.messages, tokenize=False, add_generation_prompt=True)
    (ids,) = data.tokenize_prompts([rec], tokenizer)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None:
        assert ids[:2] != [bos, bos]


def test_render_and_tokenize_plain(tokenizer):
    rec = data.PromptRecord(id="0", text="Question: 1 + 1 =", fields={})
    assert data.render_prompt(rec, tokenizer) == "Question: 1 + 1 ="
    (ids,) = data.tokenize_prompts([rec], tokenizer)
    assert ids == tokenizer("Question: 1 + 1 =")["input_ids"]


def test_hub_id_goes_through_load_dataset(monkeypatch):
    import datasets

    def fake_load(source, config_name, split):
        assert (source, config_name, split) == ("openai/gsm8k", "main", "train")
        return datasets.Dataset.from_list(
            [{"question": "q0", "answer": "#### 1"}, {"question": "q1", "answer": "#### 2"}]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr("rl_reason.hub.offline_reason", lambda: None)  # as if online
    recs = data.load_records(_cfg(source="openai/gsm8k", config_name="main", shuffle=False), seed=0)
    assert [(r.id, r.fields["answer"]) for r in recs] == [("0", "1"), ("1", "2")]


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("e.jsonl", "", "e.jsonl: the file is empty"),
        ("w.jsonl", "\n  \n", "w.jsonl: the file holds only whitespace"),
        (
            "b.jsonl",
            '{"q": "a"}\n\n{"q": b}\n',
            "b.jsonl: row 3: not valid JSON (Expecting value at column 7)",
        ),
        ("l.jsonl", '{"q": "a"}\n"text"\n', "l.jsonl: row 2: a JSON object is expected, got str"),
        ("a.json", '[{"q": "a"}, 3]', "a.json: row 2: a JSON object is expected, got int"),
        ("n.json", "[]", "n.json: the JSON list is empty"),
    ],
)
def test_broken_data_files_name_file_row_and_fault(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as exc:
        data.load_records(_cfg(source=str(path)), seed=0)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
