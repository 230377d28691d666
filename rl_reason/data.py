"""Dataset rows -> prompt records, and the data cursor.

``load_records`` turns a data source (the built-in synthetic arithmetic task, a local
``.jsonl``/``.json``/``.parquet`` file, or a Hugging Face dataset id) into ``PromptRecord``s:
the prompt as chat messages or plain text, plus the ``fields`` that reward checkers read
(``answer``, ``tests``, ...). ``PromptSampler`` walks the records in seeded per-epoch orders
and can save and restore its position, so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from rl_reason.config import DataConfig, SyntheticConfig
from rl_reason.errors import DataError

log = logging.getLogger("rl_reason.data")

__all__ = [
    "PromptRecord",
    "load_records",
    "parse_answer",
    "render_prompt",
    "tokenize_prompts",
    "PromptSampler",
]

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_TASKS = ("arithmetic",)
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_SHOW_IDS = 5  # row ids named in a skipped-rows warning


@dataclass
class PromptRecord:
    """One prompt: chat ``messages`` (template ``chat``) or ``text`` (template ``plain``)."""

    id: str
    messages: Optional[list[dict]] = None
    text: Optional[str] = None
    fields: dict = field(default_factory=dict)
    question: Optional[str] = None  # the dataset's prompt before templating (rl-reason sample writes it)


# --------------------------------------------------------------------------- answers


def _last_boxed(text: str) -> Optional[str]:
    """Contents of the last ``\\boxed{...}``, read by ``rewards.boxes`` (the one box reader every
    checker uses, so a gold and a completion are read alike), or None."""
    from rewards.boxes import last_box

    got = last_box(text)
    return got.strip() if got is not None else None


def parse_answer(value: Any, answer_format: str = "auto") -> Optional[str]:
    """The gold answer from a dataset cell: ``#### n`` (gsm8k), last ``\\boxed{}`` or as is.

    Returns None when the format's marker is missing or the result is empty.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    fmt = answer_format
    if fmt == "auto":
        fmt = "gsm8k" if "####" in text else "boxed" if "\\boxed" in text else "plain"
    if fmt == "gsm8k":
        if "####" not in text:
            return None
        out = text.rsplit("####", 1)[1].strip().replace(",", "")
    elif fmt == "boxed":
        out = _last_boxed(text)
    elif fmt == "plain":
        out = text.strip()
    else:
        raise DataError(f"data.answer_format={answer_format!r} is not one of: auto, gsm8k, boxed, plain")
    return out or None


# --------------------------------------------------------------------------- templates


def _fill(template: str, prompt: str) -> str:
    # only the {prompt} placeholder: templates may hold literal braces such as \boxed{}
    return template.replace("{prompt}", prompt)


def _make_record(rid: str, question: str, fields: dict, cfg: DataConfig) -> PromptRecord:
    body = _fill(cfg.prompt_template, question)
    if cfg.template == "chat":
        messages = []
        if cfg.system_prompt:
            messages.append({"role": "system", "content": cfg.system_prompt})
        messages.append({"role": "user", "content": body})
        return PromptRecord(id=rid, messages=messages, text=None, fields=fields, question=question)
    if cfg.template == "plain":
        text = (cfg.system_prompt + "\n\n" if cfg.system_prompt else "") + body
        return PromptRecord(id=rid, messages=None, text=text, fields=fields, question=question)
    raise DataError(f"data.template={cfg.template!r} is not one of: chat, plain")


def retemplated(record: PromptRecord, cfg: DataConfig, prompt_template: str) -> PromptRecord:
    """The same record (id, question, fields) under another ``data.prompt_template``."""
    return _make_record(
        record.id, record.question, record.fields, replace(cfg, prompt_template=prompt_template)
    )


# --------------------------------------------------------------------------- synthetic task


def _operand(v: int) -> str:
    return f"({v})" if v < 0 else str(v)


def _evaluate(values: list[int], ops: list[str]) -> int:
    """Usual precedence: * binds tighter than + and -, left to right otherwise."""
    terms, signs = [values[0]], []
    for op, v in zip(ops, values[1:]):
        if op == "*":
            terms[-1] *= v
        else:
            signs.append(op)
            terms.append(v)
    total = terms[0]
    for op, t in zip(signs, terms[1:]):
        total = total + t if op == "+" else total - t
    return total


def _decode(index: int, syn: SyntheticConfig, ops: list[str]) -> tuple[str, str]:
    """Problem number ``index`` of the operand/operator space (mixed radix) -> (question, answer)."""
    span = syn.max_value - syn.min_value + 1
    values, chosen = [], []
    for _ in range(syn.num_terms):
        index, r = divmod(index, span)
        values.append(syn.min_value + r)
    for _ in range(syn.num_terms - 1):
        index, r = divmod(index, len(ops))
        chosen.append(ops[r])
    expr = _operand(values[0])
    for op, v in zip(chosen, values[1:]):
        expr += f" {op} {_operand(v)}"
    return f"What is {expr}?", str(_evaluate(values, chosen))


_WARNED_SMALL_SPACE: set[tuple] = set()


def synthetic_problems(
    syn: SyntheticConfig, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held_out) lists of (question, answer); held-out questions never occur in train.

    When the operand space holds fewer distinct problems than num_train + num_eval, the
    held-out set keeps at most half of them (all distinct) and train repeats the rest.
    """
    ops = list(dict.fromkeys(syn.ops))  # dedupe, keep order
    if not ops:
        raise DataError("data.synthetic.ops is empty: name at least one of + - *")
    span = syn.max_value - syn.min_value + 1
    if span <= 0 or syn.num_terms < 1:
        raise DataError("data.synthetic needs min_value <= max_value and num_terms >= 1")
    total = span**syn.num_terms * len(ops) ** (syn.num_terms - 1)
    rng = random.Random(seed)
    want = syn.num_train + syn.num_eval
    if total >= want:
        picked = rng.sample(range(total), want)  # distinct indices -> distinct questions
        held = picked[: syn.num_eval]
        train = picked[syn.num_eval :]
    else:
        perm = rng.sample(range(total), total)
        n_eval = min(syn.num_eval, total // 2)
        held, pool = perm[:n_eval], perm[n_eval:]
        train = []
        while len(train) < syn.num_train:
            cycle = list(pool)
            rng.shuffle(cycle)
            train.extend(cycle)
        train = train[: syn.num_train]
        key = (total, syn.num_train, syn.num_eval, seed)
        if key not in _WARNED_SMALL_SPACE:  # train and held-out loads build the same split
            _WARNED_SMALL_SPACE.add(key)
            log.warning(
                "data.synthetic: only %d distinct problems (values %d..%d, %d terms, ops %s) for "
                "num_train=%d + num_eval=%d; held-out uses %d of them, train repeats the other %d. "
                "Widen min_value..max_value or add terms/ops for more variety.",
                total,
                syn.min_value,
                syn.max_value,
                syn.num_terms,
                " ".join(ops),
                syn.num_train,
                syn.num_eval,
                len(held),
                len(pool),
            )
    return [_decode(i, syn, ops) for i in train], [_decode(i, syn, ops) for i in held]


def _synthetic_records(cfg: DataConfig, seed: int, held_out: bool) -> list[PromptRecord]:
    task = cfg.source[len(SYNTHETIC_PREFIX) :]
    if task not in SYNTHETIC_TASKS:
        raise DataError(
            f"data.source={cfg.source!r}: unknown synthetic task; known: "
            + ", ".join(SYNTHETIC_PREFIX + t for t in SYNTHETIC_TASKS)
        )
    train, held = synthetic_problems(cfg.synthetic, seed)
    kind, problems = ("eval", held) if held_out else ("train", train)
    return [_make_record(f"{kind}-{i}", q, {"answer": a}, cfg) for i, (q, a) in enumerate(problems)]


# --------------------------------------------------------------------------- files and hub


def check_data_file(path: Path) -> None:
    """Raise DataError naming the file, the row (1-based line) and what is wrong, for an empty
    file or a JSON file with a line that does not parse or is not an object. datasets reports
    these as "StopIteration" or a generic error after logging the parser's message twice."""
    if path.stat().st_size == 0:
        raise DataError(
            f"{path}: the file is empty; it needs one record per line (JSON lines) or rows (parquet)"
        )
    if path.suffix.lower() not in (".jsonl", ".json"):
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: the file holds only whitespace; it needs one JSON record per line")
    if path.suffix.lower() == ".json":
        try:  # one JSON document: a list of records (or datasets' {"data": [...]} form)
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None  # JSON lines in a .json file, checked line by line below
        if doc is not None:
            if isinstance(doc, list):
                for i, row in enumerate(doc, 1):
                    if not isinstance(row, dict):
                        raise DataError(
                            f"{path}: row {i}: a JSON object is expected, got {type(row).__name__}"
                        )
                if not doc:
                    raise DataError(f"{path}: the JSON list is empty; it needs at least one record")
            elif not isinstance(doc, dict):
                raise DataError(f"{path}: a list of JSON objects is expected, got {type(doc).__name__}")
            return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: row {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: a JSON object is expected, got {type(row).__name__}")


def _load_rows(cfg: DataConfig, split: Optional[str]) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise DataError("the 'datasets' package is missing: pip install datasets") from exc

    source = cfg.source
    suffix = Path(source).suffix.lower()
    if suffix in LOCAL_SUFFIXES:
        if split is not None and split != cfg.split:
            raise DataError(
                f"data.source={source!r} is a single local file with no {split!r} split; "
                "a held-out set needs its own file or a hub dataset with that split"
            )
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(
                f"data.source: file {source} not found; give an existing .jsonl/.json/.parquet path"
            )
        check_data_file(path)  # [badinput] one line naming the file, the row and the fault
        try:
            ds = datasets.load_dataset(LOCAL_SUFFIXES[suffix], data_files=str(path), split="train")
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"cannot read {source} as {LOCAL_SUFFIXES[suffix]}: {first}; "
                "check that every line/row is a record with the same column types"
            ) from exc
        return ds.to_list()
    split = split or cfg.split
    from rl_reason import hub  # [badinput] offline: one line in seconds, not a minute of retries

    hub.require(source, repo_type="dataset", key="data.source", error=DataError)
    try:
        ds = datasets.load_dataset(source, cfg.config_name, split=split)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot load dataset {source!r} (config {cfg.config_name!r}, split {split!r}): {first}; "
            "check data.source / data.config_name / data.split and network access "
            "(or point data.source at a local .jsonl/.parquet file)"
        ) from exc
    if isinstance(ds, dict):  # a DatasetDict when the split argument was not honoured
        raise DataError(f"dataset {source!r} returned several splits; set data.split to one of {sorted(ds)}")
    return ds.to_list()


def _rows_to_records(rows: list[dict], cfg: DataConfig, where: str) -> list[PromptRecord]:
    columns: set[str] = set()
    for row in rows:
        columns.update(row.keys())
    needed = [("data.prompt_field", cfg.prompt_field)] + [
        (f"data.fields.{name}", col) for name, col in cfg.fields.items()
    ]
    if cfg.id_field:
        needed.append(("data.id_field", cfg.id_field))
    if rows:
        for key, col in needed:
            if col not in columns:
                raise DataError(
                    f"{key}={col!r}: no such column in {where}; columns are: {', '.join(sorted(columns))}"
                )

    records: list[PromptRecord] = []
    bad: list[tuple[str, str]] = []  # (row id, why)
    for index, row in enumerate(rows):
        rid = row.get(cfg.id_field) if cfg.id_field else None
        rid = str(index) if rid is None else str(rid)
        problem = None
        prompt = row.get(cfg.prompt_field)
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            problem = f"missing or empty prompt column {cfg.prompt_field!r}"
        fields: dict[str, Any] = {}
        if problem is None:
            for name, col in cfg.fields.items():
                value = row.get(col)
                if value is None:
                    problem = f"missing column {col!r} (field {name!r})"
                    break
                if name == "answer":
                    value = parse_answer(value, cfg.answer_format)
                    if value is None:
                        problem = f"no answer in column {col!r} for answer_format={cfg.answer_format!r}"
                        break
                fields[name] = value
        if problem is not None:
            if cfg.strict:
                raise DataError(
                    f"{where}: row {rid}: {problem}; fix the row, map the right columns with "
                    "data.prompt_field / data.fields / data.answer_format, or set data.strict=false "
                    "to skip such rows"
                )
            bad.append((rid, problem))
            continue
        question = prompt if isinstance(prompt, str) else str(prompt)
        records.append(_make_record(rid, question, fields, cfg))
    if bad:
        shown = ", ".join(rid for rid, _ in bad[:_SHOW_IDS])
        more = ", ..." if len(bad) > _SHOW_IDS else ""
        log.warning(
            "%s: skipped %d of %d rows missing a needed field (rows %s%s; first: %s); "
            "set data.strict=true to make this an error",
            where,
            len(bad),
            len(rows),
            shown,
            more,
            bad[0][1],
        )
    return records


# --------------------------------------------------------------------------- entry point


def load_records(
    cfg: DataConfig, *, seed: int, split: Optional[str] = None, held_out: bool = False
) -> list[PromptRecord]:
    """Load prompt records from ``cfg.source``.

    ``held_out`` selects the synthetic task's held-out problems (disjoint from training);
    for other sources pass ``split`` (e.g. ``eval.split``) to read another split. Records are
    shuffled deterministically by ``seed`` when ``cfg.shuffle``; ``cfg.limit`` then keeps the
    first N, and applies only to the training set (not to ``held_out`` or an explicit ``split``).
    """
    if cfg.source.startswith(SYNTHETIC_PREFIX):
        records = _synthetic_records(cfg, seed, held_out)
        where = cfg.source
    else:
        if held_out and split is None:
            raise DataError(
                f"data.source={cfg.source!r} has no built-in held-out set; pass a split "
                "(eval.split) to evaluate on"
            )
        rows = _load_rows(cfg, split)
        where = cfg.source if split is None else f"{cfg.source} [{split}]"
        records = _rows_to_records(rows, cfg, where)
    if not records:
        raise DataError(f"{where}: no usable prompts; check data.source, data.prompt_field and data.fields")
    if cfg.budget:  # budget-conditioned prompts (rl_reason/budget.py)
        from rl_reason.budget import with_budgets

        records = with_budgets(records, cfg.budget, cfg.budget_template, seed)
    if cfg.shuffle:
        random.Random(seed).shuffle(records)
    if cfg.limit is not None and not held_out and split is None:
        records = records[: cfg.limit]
    return records


# --------------------------------------------------------------------------- tokenization


def render_prompt(record: PromptRecord, tokenizer, tools: Optional[list] = None) -> str:
    """The prompt text the model sees: chat template applied, generation prompt appended;
    ``tools`` (JSON schemas) go to the template's ``tools=`` (rollout.tool_format)."""
    if record.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(
                f"record {record.id}: the tokenizer has no chat template; set data.template=plain"
            )
        extra = {"tools": tools} if tools else {}
        return tokenizer.apply_chat_template(
            record.messages, tokenize=False, add_generation_prompt=True, **extra
        )
    if record.text is None:
        raise DataError(f"record {record.id} has neither messages nor text")
    return record.text


def tokenize_prompts(
    records: Iterable[PromptRecord], tokenizer, tools: Optional[list] = None
) -> list[list[int]]:
    """Token ids per record. Chat-rendered text already holds the template's special tokens,
    so it is encoded without adding more (no doubled BOS); plain text gets the usual ones."""
    out: list[list[int]] = []
    for rec in records:
        text = render_prompt(rec, tokenizer, tools)
        ids = tokenizer(text, add_special_tokens=rec.messages is None)["input_ids"]
        out.append(list(ids))
    return out


# --------------------------------------------------------------------------- the data cursor


class PromptSampler:
    """Batches of records from seeded per-epoch permutations (epoch e uses seed + e).

    ``state_dict``/``load_state_dict`` capture the cursor so a resumed run continues with
    exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(self, records: list[PromptRecord], batch_size: int, seed: int, shuffle: bool = True):
        if not records:
            raise DataError("no prompt records to sample from; check data.source")
        if batch_size <= 0:
            raise DataError(f"batch size must be > 0, got {batch_size}")
        self.records = list(records)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order: Optional[list[int]] = None
        self._order_epoch = -1

    def _epoch_order(self) -> list[int]:
        if self._order is None or self._order_epoch != self.epoch:
            order = list(range(len(self.records)))
            if self.shuffle:
                random.Random(self.seed + self.epoch).shuffle(order)
            self._order, self._order_epoch = order, self.epoch
        return self._order

    def next_batch(self) -> list[PromptRecord]:
        batch = []
        while len(batch) < self.batch_size:
            if self.position >= len(self.records):
                self.epoch += 1
                self.position = 0
            batch.append(self.records[self._epoch_order()[self.position]])
            self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        position = int(state["position"])
        if not 0 <= position <= len(self.records):
            raise DataError(
                f"data cursor position {position} is outside the {len(self.records)} records; "
                "the dataset changed since the checkpoint was written"
            )
        self.epoch = int(state["epoch"])
        self.position = position
        self.seed = int(state.get("seed", self.seed))
        self._order = None
