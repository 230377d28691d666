"""Checks of a valid recipe against this machine and its files, before any model loads.

``config.validate`` knows only the recipe; ``preflight`` also looks outside it: the local data
files exist and their first rows have the columns the recipe names, the dtype suits the device
the run will get, and ``checkpoint.keep_best`` names a metric the run will log. Every problem
is one ConfigError (exit 2) naming the key. Hub datasets are not fetched here (no network
needed to validate); their errors come when the run loads them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from rl_reason.config import RunConfig
from rl_reason.errors import ConfigError, DataError
from rl_reason.evaluate import TRAINING_METRICS

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
PEEK_ROWS = 20  # rows read to check the columns

# what the in-training evaluation logs; checkpoint.keep_best must name one of them (a ``min:``
# prefix minimises). tests/rl_reason/test_bad_input_config.py checks a real run logs exactly these.
EVAL_METRICS = TRAINING_METRICS


def _fail(key: str, msg: str, source: str) -> ConfigError:
    return ConfigError(f"{key}: {msg} (in {source})")


def peek_rows(path: Path, n: int = PEEK_ROWS) -> list[dict]:
    """The first ``n`` rows of a .jsonl/.json/.parquet file (a ValueError says what is wrong)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
        except Exception as exc:
            raise ValueError(f"not a readable parquet file ({str(exc).splitlines()[0]})") from None
        return [] if batch is None else batch.to_pylist()
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":  # one JSON array
            try:
                rows = json.load(f)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
            return [r for r in rows[:n]]
        rows = []
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"line {number} is not valid JSON ({exc})") from None
            if len(rows) >= n:
                break
        return rows


def _columns(path: Path, key: str, source: str) -> set:
    from rl_reason.data import check_data_file  # the same file check the loader runs

    try:
        check_data_file(path)
    except DataError as exc:
        raise _fail(key, str(exc), source) from None
    try:
        rows = peek_rows(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(key, f"{path}: {exc}", source) from None
    if not rows:
        raise _fail(key, f"{path} has no rows", source)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise _fail(key, f"{path} row {bad + 1} is not a record (a mapping of columns)", source)
    columns: set = set()
    for row in rows:
        columns.update(row)
    return columns


def _local_file(spec: str) -> Optional[Path]:
    path = Path(spec).expanduser()
    return path if path.suffix.lower() in FILE_SUFFIXES else None


def check_data(cfg: RunConfig, source: str) -> None:
    data = cfg.data
    path = _local_file(data.source)
    if path is None:
        return  # synthetic task or hub id
    if not path.is_file():
        raise _fail(
            "data.source",
            f"file {data.source} not found; give an existing .jsonl/.json/.parquet path",
            source,
        )
    columns = _columns(path, "data.source", source)
    needed = [("data.prompt_field", data.prompt_field)]
    needed += [(f"data.fields.{name}", col) for name, col in data.fields.items()]
    if data.id_field:
        needed.append(("data.id_field", data.id_field))
    for key, col in needed:
        if col not in columns:
            raise _fail(
                key,
                f"{col!r} is not a column of {data.source} (first {PEEK_ROWS} rows read); "
                f"columns are: {', '.join(sorted(map(str, columns)))}",
                source,
            )


def check_eval_data(cfg: RunConfig, source: str) -> None:
    from rl_reason import eval_sets

    spec = cfg.eval.data
    if not spec:
        return
    if spec.strip().lower() in eval_sets.BUILTIN or spec.strip().lower() == eval_sets.DEMO_SET:
        return
    path = _local_file(spec)
    if path is None:
        raise _fail(
            "eval.data",
            f"{spec!r} is neither a built-in eval set ({', '.join([*eval_sets.BUILTIN, eval_sets.DEMO_SET])}) "
            "nor a .jsonl/.json/.parquet file",
            source,
        )
    if not path.is_file():
        raise _fail(
            "eval.data", f"file {spec} not found; give an existing .jsonl/.json/.parquet path", source
        )
    columns = _columns(path, "eval.data", source)
    if eval_sets._file_kind([{c: None for c in columns}]) == "code":
        return
    for what, names in (("question", eval_sets.QUESTION_COLUMNS), ("answer", eval_sets.ANSWER_COLUMNS)):
        if not columns & set(names):
            raise _fail(
                "eval.data",
                f"{spec} has no {what} column (looked for {', '.join(names)}); "
                f"columns are: {', '.join(sorted(map(str, columns)))}",
                source,
            )


def check_device(cfg: RunConfig, source: str) -> None:
    if cfg.model.dtype != "float16" or cfg.model.device == "cuda":
        return
    import torch

    if cfg.model.device == "cpu" or not torch.cuda.is_available():
        raise _fail(
            "model.dtype",
            "float16 is not supported on the CPU, and this run would be on the CPU "
            f"(model.device={cfg.model.device}, no CUDA device visible); use float32 or bfloat16",
            source,
        )


def evaluation_runs(cfg: RunConfig) -> Optional[str]:
    """None when the run will log eval/* metrics, else why it will not."""
    ev = cfg.eval
    if not (ev.every or ev.at_start or ev.at_end):
        return "no evaluation is scheduled (eval.every is 0 and eval.at_start/at_end are false)"
    path = _local_file(cfg.data.source)
    if not ev.data and path is not None and ev.split != cfg.data.split:
        return (
            f"data.source is a single file with no {ev.split!r} split and eval.data is unset, so "
            "no held-out set exists; set eval.data to a file"
        )
    return None


def check_keep_best(cfg: RunConfig, source: str) -> None:
    spec = cfg.checkpoint.keep_best
    if not spec:
        return
    metric = spec[4:] if spec.startswith("min:") else spec
    if metric not in EVAL_METRICS:
        raise _fail(
            "checkpoint.keep_best",
            f"{metric!r} is not a metric this run logs; use one of {', '.join(EVAL_METRICS)} "
            "(min: before it minimises)",
            source,
        )
    why = evaluation_runs(cfg)
    if why:
        raise _fail("checkpoint.keep_best", f"{metric} will never be logged: {why}", source)


def check_processes(cfg: RunConfig, source: str) -> None:
    """``rollout.max_staleness`` >= 1 in one training process: refused before the model loads
    (torchrun and ``accelerate launch`` set WORLD_SIZE), not after, on every rank.
    ``producer.make_producer`` keeps the same check for a process group made another way."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return
    if cfg.rollout.max_staleness >= 1 and world > 1:
        raise _fail(
            "rollout.max_staleness",
            f"{cfg.rollout.max_staleness} (asynchronous) runs in one training process for now, and "
            f"this launch has {world} (WORLD_SIZE); use rollout.max_staleness=0 with several processes",
            source,
        )


def preflight(cfg: RunConfig, source: str = "<config>") -> None:
    """Every check above; the first problem found is raised as a one-line ConfigError."""
    check_device(cfg, source)
    check_processes(cfg, source)
    check_data(cfg, source)
    check_eval_data(cfg, source)
    check_keep_best(cfg, source)
