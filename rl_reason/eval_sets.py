"""Held-out evaluation sets: built-in benchmarks by name, or any local file.

``load_eval_set("gsm8k", limit=50)`` gives the prompt records (rendered the same way training
prompts are, see ``rl_reason.data``) plus the checkers that grade them, so ``rl-reason eval``
and the trainer's periodic evaluation score a set identically.

Built-in names load from the Hugging Face Hub. Set ``RL_REASON_DATA_DIR`` (or pass
``data_dir``) to a folder holding the sets as local files (``gsm8k_test.jsonl``,
``math500_test.jsonl``, ``aime24.jsonl``, ``amc23.jsonl``, ``humaneval.jsonl``): a built-in
name then reads its file from there when it exists, with no network. A path to a
``.jsonl``/``.json``/``.parquet`` file is always accepted; rows with ``test`` (or ``tests``) and
``entry_point`` columns are graded as code, others as math answers.

Columns are looked up by a short list of usual names (``question``/``problem``/``prompt``;
``answer``), because the hub copies and the common local exports of one benchmark name them
differently (MATH-500 on the hub has ``problem`` + a short ``answer``; exports often have
``question`` + the full solution, whose last ``\\boxed{}`` is the answer).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rl_reason.errors import ConfigError, DataError

log = logging.getLogger("rl_reason.eval_sets")

__all__ = ["EvalSpec", "EvalSet", "BUILTIN", "load_eval_set", "resolve_source", "DATA_DIR_ENV"]

DATA_DIR_ENV = "RL_REASON_DATA_DIR"
DEMO_SET = "arith"  # the CPU demo's held-out single-digit sums (no file, no network)
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

MATH_TEMPLATE = (
    "Solve this problem. Reason step by step, then write only the final answer inside \\boxed{}.\n\n{prompt}"
)
CODE_TEMPLATE = (
    "Complete the Python function below. Reply with the whole function, imports included, "
    "in a single ```python code block.\n\n```python\n{prompt}```"
)

QUESTION_COLUMNS = ("question", "problem", "prompt")
ANSWER_COLUMNS = ("answer",)
ID_COLUMNS = ("task_id", "id", "unique_id")
TEST_COLUMNS = ("test", "tests")


@dataclass(frozen=True)
class EvalSpec:
    """A built-in benchmark: where it lives and how it is asked and graded."""

    name: str
    hub_id: str
    hub_split: str
    local_file: str  # file name under RL_REASON_DATA_DIR
    kind: str  # "math" (math_answer) or "code" (code_tests)
    hub_config: Optional[str] = None
    answer_format: str = "auto"  # see rl_reason.data.parse_answer


BUILTIN: dict[str, EvalSpec] = {
    s.name: s
    for s in (
        EvalSpec("gsm8k", "openai/gsm8k", "test", "gsm8k_test.jsonl", "math", hub_config="main"),
        EvalSpec("math500", "HuggingFaceH4/MATH-500", "test", "math500_test.jsonl", "math"),
        EvalSpec("aime24", "HuggingFaceH4/aime_2024", "train", "aime24.jsonl", "math"),
        EvalSpec("amc23", "math-ai/amc23", "test", "amc23.jsonl", "math"),
        EvalSpec("humaneval", "openai/openai_humaneval", "test", "humaneval.jsonl", "code"),
    )
}

CHECKERS = {
    "math": [{"name": "math_answer", "params": {}}],
    "code": [{"name": "code_tests", "params": {}}],
}
# Scorer's per-check limit: code runs test suites in the sandbox (its own 5 s limit per run)
SCORER_TIMEOUT_S = {"math": 10.0, "code": 30.0}


@dataclass
class EvalSet:
    """Prompts of one evaluation set and how to grade them."""

    name: str
    source: str  # the file or hub id the rows came from
    kind: str  # "math" | "code"
    records: list  # rl_reason.data.PromptRecord
    checkers: list[dict] = field(
        default_factory=list
    )  # [{"name", "params"[, "weight", "alias"]}] for the Scorer
    skipped: int = 0  # rows dropped for a missing question / answer / tests
    prompt_template: str = "{prompt}"  # the template the records were rendered with

    @property
    def timeout_s(self) -> float:
        return SCORER_TIMEOUT_S[self.kind]

    def checker_specs(self) -> list:
        from rewards.runner import CheckerSpec

        return [
            CheckerSpec(
                name=c["name"], params=dict(c["params"]), weight=c.get("weight", 1.0), alias=c.get("alias")
            )
            for c in self.checkers
        ]

    def extract(self, completion: str) -> Optional[str]:
        """What the grader will judge: the final answer (math) or the program (code).

        None when there is nothing to judge, which ``extract_fail_rate`` counts: a math answer
        the math checker cannot find, or (code) no fenced code block at all.
        """
        return extract_final(self.kind, completion)

    def gold(self, record) -> Optional[str]:
        value = record.fields.get("answer")
        return None if value is None else str(value)


def extract_final(kind: str, completion: str) -> Optional[str]:
    if kind == "math":
        from rewards.math import extract_answer

        return extract_answer(completion or "")
    from rewards.code import extract_code

    text = completion or ""
    if "```" not in text.rsplit("</think>", 1)[-1]:
        return None
    code = extract_code(text)
    return code if code.strip() else None


# --------------------------------------------------------------------------- resolution


def resolve_source(spec: str, data_dir: Optional[str] = None) -> tuple[str, Optional[EvalSpec]]:
    """(file path or hub id, built-in spec or None) for a ``--data`` value.

    A built-in name reads ``<data_dir>/<its file>`` when that file exists (``data_dir``
    defaults to ``$RL_REASON_DATA_DIR``), else its hub id.
    """
    name = spec.strip()
    builtin = BUILTIN.get(name.lower())
    if builtin is not None:
        folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
        if folder:
            local = Path(folder).expanduser() / builtin.local_file
            if local.is_file():
                return str(local), builtin
        return builtin.hub_id, builtin
    path = Path(name).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"--data {spec}: file not found; give an existing .jsonl/.json/.parquet file")
        return str(path), None
    if path.exists():
        raise ConfigError(f"--data {spec}: not a .jsonl/.json/.parquet file")
    raise ConfigError(
        f"--data {spec!r}: unknown eval set; use one of {', '.join([*BUILTIN, DEMO_SET])} "
        "or a path to a .jsonl/.json/.parquet file"
    )


def _read_rows(source: str, builtin: Optional[EvalSpec]) -> list[dict]:
    if Path(source).suffix.lower() in FILE_SUFFIXES:
        from rl_reason.config import DataConfig
        from rl_reason.data import _load_rows

        return _load_rows(DataConfig(source=source), None)
    from rl_reason import hub  # offline: one line in seconds, not a minute of retries

    hub.require(
        source,
        repo_type="dataset",
        key=builtin.name,
        error=DataError,
        way_out=f"set {DATA_DIR_ENV} to a folder holding {builtin.local_file}, or pass --data FILE",
    )
    try:
        import datasets

        ds = datasets.load_dataset(source, builtin.hub_config, split=builtin.hub_split)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"cannot load {builtin.name} from the Hugging Face Hub ({source}): {first}; without "
            f"network access set {DATA_DIR_ENV} to a folder holding {builtin.local_file}, "
            "or pass --data FILE"
        ) from exc
    return ds.to_list()


def _first_present(columns: set, names: tuple, what: str, where: str, required: bool = True):
    for name in names:
        if name in columns:
            return name
    if required:
        raise DataError(
            f"{where}: no {what} column (looked for {', '.join(names)}); "
            f"columns are: {', '.join(sorted(columns))}"
        )
    return None


def _data_config(
    rows: list[dict],
    kind: str,
    where: str,
    *,
    answer_format: str,
    template: str,
    prompt_template: Optional[str],
    system_prompt: Optional[str],
):
    """The DataConfig that maps this file's columns, so rl_reason.data renders the prompts."""
    from rl_reason.config import DataConfig

    columns: set = set()
    for row in rows:
        columns.update(row)
    if kind == "code":
        question = _first_present(columns, ("prompt",), "prompt", where)
        tests = _first_present(columns, TEST_COLUMNS, "test", where)
        fields = {"tests": tests, "entry_point": "entry_point", "prompt": question}
    else:
        question = _first_present(columns, QUESTION_COLUMNS, "question", where)
        fields = {"answer": _first_present(columns, ANSWER_COLUMNS, "answer", where)}
    return DataConfig(
        source=where,
        prompt_field=question,
        id_field=_first_present(columns, ID_COLUMNS, "id", where, required=False),
        fields=fields,
        answer_format=answer_format,
        template=template,
        prompt_template=prompt_template or (CODE_TEMPLATE if kind == "code" else MATH_TEMPLATE),
        system_prompt=system_prompt,
        shuffle=False,
        strict=False,
    )


def _file_kind(rows: list[dict]) -> str:
    """Code when the rows carry tests and an entry point (HumanEval/MBPP style), else math."""
    columns: set = set()
    for row in rows[:50]:
        columns.update(row)
    has_tests = any(c in columns for c in TEST_COLUMNS)
    return "code" if has_tests and "entry_point" in columns else "math"


def load_eval_set(
    spec: str,
    *,
    limit: Optional[int] = None,
    template: str = "chat",
    prompt_template: Optional[str] = None,
    system_prompt: Optional[str] = None,
    data_dir: Optional[str] = None,
) -> EvalSet:
    """The first ``limit`` prompts of an eval set (file order, no shuffling, so runs compare).

    ``prompt_template`` (``{prompt}`` marks the question) defaults to the set's own: math asks
    for the final answer in ``\\boxed{}``, code for the function in a ```python block.
    Rows missing a question, answer or tests are skipped with one warning.
    """
    from rl_reason.data import _rows_to_records

    if limit is not None and limit <= 0:
        raise ConfigError(f"eval limit must be a positive number of prompts, got {limit}")
    if template not in ("chat", "plain"):
        raise ConfigError(f"template {template!r} is not one of: chat, plain")
    checkers = None
    if spec.strip().lower() == DEMO_SET:
        source, builtin, kind = "the demo recipe's held-out sums", None, "math"
        from rl_reason.demo import held_out_rows

        rows, demo_template, checkers = held_out_rows()
        prompt_template = prompt_template or demo_template
    else:
        source, builtin = resolve_source(spec, data_dir)
        rows = _read_rows(source, builtin)
        if not rows:
            raise DataError(f"{source}: no rows")
        kind = builtin.kind if builtin else _file_kind(rows)
    cfg = _data_config(
        rows,
        kind,
        source,
        answer_format=builtin.answer_format if builtin else "auto",
        template=template,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
    )
    records = _rows_to_records(rows, cfg, source)
    skipped = len(rows) - len(records)
    if not records:
        raise DataError(f"{source}: no usable rows (all {len(rows)} lack a question or answer)")
    if limit is not None:
        records = records[:limit]
    name = DEMO_SET if checkers else (builtin.name if builtin else _file_name(source))
    checkers = checkers or CHECKERS[kind]
    return EvalSet(
        name=name,
        source=source,
        kind=kind,
        records=records,
        checkers=[dict(c, params=dict(c["params"])) for c in checkers],
        skipped=skipped,
        prompt_template=cfg.prompt_template,
    )


def _file_name(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem) or "data"
