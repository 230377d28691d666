"""Parallel scoring with hard per-check timeouts.

The runner, not the checker, owns parallelism, timeouts and failure handling::

    with Scorer([CheckerSpec("math_answer"), CheckerSpec("think_format", weight=0.1)]) as scorer:
        batch = scorer.score(completions, fields_list)
        batch.total        # weighted sum per sample
        batch.metrics()    # reward/<alias>/mean, accuracy, errors, timeouts, seconds, ...

How it works
------------
A :class:`Scorer` keeps ``workers`` long-lived worker processes for its whole life (start-up is
paid once, not per batch). The parent hands each idle worker a *chunk* of checks; the worker runs
them one after another and sends each result back as soon as it is done, stamped with the
(system-wide monotonic) time it finished. The parent therefore knows when every single check
started, and gives each its own deadline of ``timeout_s``. A check that overruns has its worker
killed (SIGKILL to the worker's whole process group, so helper processes it started die too),
the check counts as a timeout, the rest of the chunk goes back to the queue, and a fresh worker
replaces the dead one. A check that raises counts as an error; the first traceback of each
checker is logged once (logger ``"rewards"``). A worker that dies by itself (segfault,
``os._exit``) costs its current check an error and is replaced. Nothing here uses SIGALRM, and
neither a raising nor a hanging checker can hang or crash the caller.

Chunks shrink as the queue drains (about four chunks per worker per batch, at most
``max_chunk`` checks), which keeps the pipe round-trips few while still balancing the load.

Start method
------------
Workers are started with ``fork`` where the platform has it (Linux). Fork inherits the parent's
imported modules and registry, so a checker added with :func:`rewards.register` at run time, or a
callable passed directly, works in the workers without being importable, and built-in checkers
resolved in the parent (sympy already imported) cost nothing to start. The parent may have torch
(and a CUDA context) loaded: that is fine because workers never touch torch or CUDA, they only
run checkers over text. With ``start_method="spawn"`` (or ``"forkserver"``) workers re-resolve
each checker by name in a fresh interpreter; runtime registrations are then not visible, so use
``package.module:function`` paths or entry points.

``workers=0`` scores in the calling process: exceptions are still caught and counted, but there
is no timeout. Use it for debugging and tests only.

Batch-level checkers
--------------------
A checker marked ``fn.batch_level = True`` (the length rewards in ``rewards.shaping``) is called
once per batch, in the calling process, after the per-sample checkers, as
``fn(completions, fields_list, correct, groups, **params)`` and returns one result per sample.
``correct`` is the per-sample checkers' combined flag, ``groups`` what the caller passed to
:meth:`Scorer.score` (the prompt index in training; every sample its own group when omitted).
An exception costs every sample of the batch an error for that checker; what it prints is
counted like a per-sample checker's output.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from rewards import Checker, as_result, check_params, resolve

__all__ = ["CheckerSpec", "ScoreBatch", "Scorer", "score"]

log = logging.getLogger("rewards")

# Checkers known to report a success flag: when one of them errors or times out, the sample
# counts as not correct (instead of "no flag reported"). Others join this set the first time
# they report a flag, and a checker function can declare it with ``fn.reports_correct = True``.
_CORRECTNESS_CHECKERS = {"math_answer", "code_tests"}

_OK, _NA, _ERR = 0, 1, 2


@dataclass
class CheckerSpec:
    """One checker in a scoring setup.

    name: registry name, entry-point name or ``package.module:function`` (a callable is also
    accepted). weight: factor in the weighted total. params: keyword arguments for the checker.
    alias: metric name; defaults to ``name``; required when one checker is used twice.
    """

    name: Union[str, Checker]
    weight: float = 1.0
    params: dict = field(default_factory=dict)
    alias: Optional[str] = None

    @property
    def key(self) -> str:
        if self.alias:
            return self.alias
        if isinstance(self.name, str):
            return self.name
        return getattr(self.name, "__name__", repr(self.name))


SpecLike = Union[CheckerSpec, str, tuple, Mapping[str, Any]]


def _as_spec(item: SpecLike) -> CheckerSpec:
    if isinstance(item, CheckerSpec):
        return item
    if isinstance(item, str) or callable(item):
        return CheckerSpec(item)
    if isinstance(item, tuple):
        if not 1 <= len(item) <= 4:
            raise ValueError(f"checker tuple must be (name, weight[, params[, alias]]), got {item!r}")
        name = item[0]
        weight = float(item[1]) if len(item) > 1 else 1.0
        params = dict(item[2] or {}) if len(item) > 2 else {}
        alias = item[3] if len(item) > 3 else None
        return CheckerSpec(name, weight, params, alias)
    if isinstance(item, Mapping):
        return CheckerSpec(
            item["name"], float(item.get("weight", 1.0)), dict(item.get("params") or {}), item.get("alias")
        )
    # duck-typed config objects (rl_reason.config.CheckerConfig) without importing them
    if hasattr(item, "name"):
        return CheckerSpec(
            item.name,
            float(getattr(item, "weight", 1.0)),
            dict(getattr(item, "params", None) or {}),
            getattr(item, "alias", None),
        )
    raise TypeError(f"cannot read a checker spec from {item!r}")


def _normalise_specs(checkers: Iterable[SpecLike]) -> list[CheckerSpec]:
    specs = [_as_spec(c) for c in checkers]
    if not specs:
        raise ValueError("at least one checker is needed")
    seen: set[str] = set()
    for s in specs:
        if s.key in seen:
            raise ValueError(f"metric name {s.key!r} is used by two checkers; give one of them an alias")
        if s.key == "total":
            raise ValueError("'total' is reserved for the weighted sum; give the checker an alias")
        seen.add(s.key)
        if not math.isfinite(float(s.weight)):
            raise ValueError(f"checker {s.key!r}: weight must be finite, got {s.weight!r}")
    return specs


# ----------------------------------------------------------------------------- results


@dataclass
class ScoreBatch:
    """Scores of one batch.

    total: weighted sum per sample (a None score contributes 0).
    scores: per checker alias, per sample: float, or None (not applicable, or failed with
        on_error="none"). A failed check scores 0.0 with on_error="zero".
    correct: per sample: True only if every checker that reported a success flag said correct;
        None when no checker reported one.
    checker_correct: per alias, per sample: the flag that checker reported (None if none).
    info: per alias, per sample: the ``RewardResult.info`` dict (None when not returned).
    errors / timeouts: per alias, number of checks that raised / ran past the timeout.
    seconds: per alias, total seconds spent in that checker (a timeout counts timeout_s).
    wall_s: wall-clock seconds for the whole batch.
    """

    total: list[float]
    scores: dict[str, list[Optional[float]]]
    correct: list[Optional[bool]]
    checker_correct: dict[str, list[Optional[bool]]]
    info: dict[str, list[Optional[dict]]]
    errors: dict[str, int]
    timeouts: dict[str, int]
    seconds: dict[str, float]
    wall_s: float = 0.0
    stdout_lines: dict[str, int] = field(default_factory=dict)  # lines checkers printed (captured)

    def __len__(self) -> int:
        return len(self.total)

    def metrics(self) -> dict[str, float]:
        """Flat metrics: ``reward/<alias>/{mean,accuracy,errors,timeouts,seconds}``,
        ``reward/total/mean`` and ``accuracy``. ``mean`` is over applicable (non-None) scores and
        is left out when there is none; ``accuracy`` keys are left out when no flag was reported."""
        out: dict[str, float] = {}
        for alias, vals in self.scores.items():
            applicable = [v for v in vals if v is not None]
            if applicable:
                out[f"reward/{alias}/mean"] = sum(applicable) / len(applicable)
            flags = [c for c in self.checker_correct[alias] if c is not None]
            if flags:
                out[f"reward/{alias}/accuracy"] = sum(flags) / len(flags)
            out[f"reward/{alias}/errors"] = float(self.errors[alias])
            out[f"reward/{alias}/timeouts"] = float(self.timeouts[alias])
            out[f"reward/{alias}/seconds"] = float(self.seconds[alias])
            if self.stdout_lines.get(alias):
                out[f"reward/{alias}/stdout_lines"] = float(self.stdout_lines[alias])
        if self.total:
            out["reward/total/mean"] = sum(self.total) / len(self.total)
        flags = [c for c in self.correct if c is not None]
        if flags:
            out["accuracy"] = sum(flags) / len(flags)
        return out


# ----------------------------------------------------------------------------- checking


def _run_check(fn: Callable, params: dict, completion: str, fields: Mapping[str, Any]) -> tuple:
    """Run one check, never raising: (status, score, correct, info, error_text)."""
    try:
        res = as_result(fn(completion, fields, **params))
        if res is None:
            return (_NA, None, None, None, None)
        score = float(res.score)
        if not math.isfinite(score):
            return (_ERR, None, None, None, f"checker returned a non-finite score: {score!r}")
        correct = None if res.correct is None else bool(res.correct)
        return (_OK, score, correct, dict(res.info) if res.info else None, None)
    except BaseException:  # noqa: BLE001 - a checker's SystemExit/KeyboardInterrupt is its error too
        return (_ERR, None, None, None, traceback.format_exc())


def _one_line(tb_text: str) -> str:
    """``ValueError: msg (file.py, line 12)`` from a formatted traceback."""
    lines = [ln for ln in tb_text.strip().splitlines() if ln.strip()]
    if not lines:
        return "an unknown error"
    last = lines[-1].strip()
    where = ""
    for ln in reversed(lines):
        ln = ln.strip()
        if ln.startswith('File "'):
            file, _, rest = ln[len('File "') :].partition('"')
            lineno = rest.split("line ", 1)[-1].split(",", 1)[0].strip()
            where = f" ({file}, line {lineno})"
            break
    return last + where


class _LineCounter:
    """A text sink that only counts lines (in-process scoring: a checker's prints)."""

    def __init__(self) -> None:
        self.lines = 0
        self._partial = False

    def write(self, text: str) -> int:
        if text:
            self.lines += text.count("\n")
            self._partial = not text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        pass

    def take(self) -> int:
        n = self.lines + (1 if self._partial else 0)
        self.lines, self._partial = 0, False
        return n


class _StdoutCapture:
    """Worker side: fd 1 (and sys.stdout) go to an unlinked temporary file, so a checker that
    prints (Python or C level, or a child it starts) never reaches the trainer's console; the
    lines are counted after each check and the file is emptied."""

    def __init__(self) -> None:
        self.ok = False
        try:
            self.file = tempfile.TemporaryFile()
            os.dup2(self.file.fileno(), 1)
            sys.stdout = open(1, "w", closefd=False, encoding="utf-8", errors="replace")
            self.ok = True
        except Exception:  # no capture is better than no worker
            pass

    def take(self) -> int:
        if not self.ok:
            return 0
        try:
            sys.stdout.flush()
            size = os.fstat(1).st_size
            if not size:
                return 0
            lines, last, offset = 0, b"", 0
            while offset < size:
                block = os.pread(1, min(1 << 20, size - offset), offset)
                if not block:
                    break
                lines += block.count(b"\n")
                last = block[-1:]
                offset += len(block)
            os.ftruncate(1, 0)
            os.lseek(1, 0, os.SEEK_SET)
            return lines + (0 if last == b"\n" else 1)
        except Exception:
            return 0


def _set_parent_death_signal() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(1)


def _worker_main(conn, close_conns, checkers, params, ppid, pdeathsig) -> None:
    """Worker process: receive chunks of (task, checker_index, completion, fields); send one
    result per check as soon as it is done."""
    for c in close_conns:  # the parent's ends of other workers' pipes, inherited by fork
        try:
            c.close()
        except Exception:
            pass
    try:
        os.setpgrp()  # own process group: the parent kills the group on timeout
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's business
    if pdeathsig:
        _set_parent_death_signal()
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    if os.getppid() != ppid:
        os._exit(1)

    capture = _StdoutCapture()
    fns: list[Optional[Callable]] = []
    resolve_errors: list[Optional[str]] = []
    for c in checkers:
        try:
            fns.append(resolve(c))
            resolve_errors.append(None)
        except Exception:
            fns.append(None)
            resolve_errors.append(traceback.format_exc())

    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if chunk is None:
            return
        for task, ci, completion, fields in chunk:
            t0 = time.monotonic()
            if fns[ci] is None:
                res = (_ERR, None, None, None, resolve_errors[ci])
            else:
                res = _run_check(fns[ci], params[ci], completion, fields)
            t1 = time.monotonic()
            msg = (task,) + res + (t1 - t0, t1, capture.take())
            try:
                conn.send(msg)
            except (BrokenPipeError, EOFError, OSError):
                return
            except Exception:  # an info dict that does not pickle
                conn.send(
                    (
                        task,
                        res[0],
                        res[1],
                        res[2],
                        {"unpicklable_info": repr(res[3])[:500]},
                        res[4],
                        t1 - t0,
                        t1,
                        msg[-1],
                    )
                )


class _Worker:
    __slots__ = ("proc", "conn", "chunk", "done", "deadline")

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.chunk: Optional[list[int]] = None  # task ids in flight
        self.done = 0
        self.deadline = math.inf

    @property
    def busy(self) -> bool:
        return self.chunk is not None


def _kill(proc) -> None:
    pid = proc.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except Exception:
        pass
    proc.join(timeout=5.0)


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class Scorer:
    """A reusable scoring pool. Keep one for a whole training run; close it at the end.

    checkers: CheckerSpec objects, or (name, weight) / (name, weight, params) tuples, names, or
        mappings with name/weight/params/alias.
    timeout_s: hard wall-clock limit per check (enforced by killing the worker process).
    workers: number of worker processes; None = usable CPUs (at most 8); 0 = in-process, without
        timeouts.
    on_error: "zero" (a failed or timed-out check scores 0.0) or "none" (it scores None).
    start_method: "fork" (default where available), "spawn" or "forkserver".
    max_chunk: most checks sent to a worker in one round-trip.
    """

    def __init__(
        self,
        checkers: Sequence[SpecLike],
        *,
        timeout_s: float = 5.0,
        workers: Optional[int] = None,
        on_error: str = "zero",
        start_method: Optional[str] = None,
        max_chunk: int = 64,
    ):
        if on_error not in ("zero", "none"):
            raise ValueError(f"on_error must be 'zero' or 'none', not {on_error!r}")
        if not (timeout_s > 0):
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.specs = _normalise_specs(checkers)
        self.aliases = [s.key for s in self.specs]
        self.timeout_s = float(timeout_s)
        self.on_error = on_error
        self.max_chunk = max(1, int(max_chunk))
        self.n_workers = _default_workers() if workers is None else int(workers)
        if self.n_workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers!r}")
        # Resolve in the parent: unknown names fail here, with the list of known names, and
        # forked workers inherit the imported modules.
        self._fns = [resolve(s.name) for s in self.specs]
        for s, fn in zip(self.specs, self._fns):  # a typo in params fails here, not per call
            check_params(fn, s.params, s.key)
        self._params = [dict(s.params) for s in self.specs]
        self._reports_correct = {
            s.key
            for s, fn in zip(self.specs, self._fns)
            if s.name in _CORRECTNESS_CHECKERS or getattr(fn, "reports_correct", False)
        }
        self._batch_level = [bool(getattr(fn, "batch_level", False)) for fn in self._fns]
        self._logged: set[tuple[str, str]] = set()
        self._workers: list[_Worker] = []
        self._closed = False
        self.start_method = start_method or (
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
        self._ctx = multiprocessing.get_context(self.start_method) if self.n_workers else None
        self.startup_s = 0.0
        self.restarts = 0
        if self.n_workers:
            t0 = time.perf_counter()
            for _ in range(self.n_workers):
                self._workers.append(self._start_worker())
            self.startup_s = time.perf_counter() - t0
        # Kill workers before multiprocessing's own exit handler would wait for them.
        self._finalizer = multiprocessing.util.Finalize(
            self, Scorer._shutdown, args=(self._workers,), exitpriority=10
        )

    # ------------------------------------------------------------------ lifecycle
    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        if self.start_method == "fork":
            checkers: list = list(self._fns)
            close = [parent_conn] + [w.conn for w in self._workers]
        else:
            checkers = [s.name for s in self.specs]
            close = []
        proc = self._ctx.Process(
            target=_worker_main,
            args=(
                child_conn,
                close,
                checkers,
                self._params,
                os.getpid(),
                threading.current_thread() is threading.main_thread(),
            ),
            name="rewards-worker",
            daemon=False,  # daemonic processes may not start children; checkers (sandbox) may
        )
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    @staticmethod
    def _shutdown(workers: list) -> None:
        for w in workers:
            try:
                w.conn.send(None)
            except Exception:
                pass
        deadline = time.monotonic() + 1.0
        for w in workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                _kill(w.proc)
            try:
                w.conn.close()
            except Exception:
                pass
        workers.clear()

    def close(self) -> None:
        """Stop the worker processes. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ scoring
    def score(
        self,
        completions: Sequence[str],
        fields_list: Optional[Sequence[Mapping[str, Any]]] = None,
        groups: Optional[Sequence[Any]] = None,
    ) -> ScoreBatch:
        """Score every completion with every checker. ``fields_list[i]`` belongs to
        ``completions[i]`` (None = empty fields for all); ``groups[i]`` is its group id for
        batch-level checkers (None = every sample its own group)."""
        if self._closed:
            raise RuntimeError("this Scorer is closed")
        n = len(completions)
        if fields_list is None:
            fields_list = [{} for _ in range(n)]
        if len(fields_list) != n:
            raise ValueError(f"{n} completions but {len(fields_list)} field dicts")
        k = len(self.specs)
        t_start = time.perf_counter()
        # results[task] with task = i * k + c
        status: list[int] = [_ERR] * (n * k)
        values: list[Optional[float]] = [None] * (n * k)
        flags: list[Optional[bool]] = [None] * (n * k)
        infos: list[Optional[dict]] = [None] * (n * k)
        timed_out = [False] * (n * k)
        errors = {a: 0 for a in self.aliases}
        timeouts = {a: 0 for a in self.aliases}
        seconds = {a: 0.0 for a in self.aliases}
        printed = {a: 0 for a in self.aliases}

        def record(
            task: int, st: int, val, flag, info, err: Optional[str], dt: float, out_lines: int = 0
        ) -> None:
            c = task % k
            alias = self.aliases[c]
            seconds[alias] += dt
            if out_lines:
                printed[alias] += out_lines
                self._log_once(
                    alias,
                    "stdout",
                    f"printed to stdout; captured, not shown (counted in reward/{alias}/stdout_lines)",
                )
            status[task] = st
            if st == _ERR:
                errors[alias] += 1
                self._log_once(alias, "error", err or "unknown error")
                return
            values[task] = val
            flags[task] = flag
            infos[task] = info
            if flag is not None:
                self._reports_correct.add(alias)

        def record_timeout(task: int) -> None:
            alias = self.aliases[task % k]
            seconds[alias] += self.timeout_s
            timed_out[task] = True
            timeouts[alias] += 1
            self._log_once(
                alias, "timeout", f"a check ran past timeout_s={self.timeout_s}; its worker was killed"
            )

        tasks = [t for t in range(n * k) if not self._batch_level[t % k]]
        if n:
            if self.n_workers == 0:
                counter = _LineCounter()
                for task in tasks:
                    i, c = divmod(task, k)
                    t0 = time.monotonic()
                    with redirect_stdout(counter):
                        st, val, flag, info, err = _run_check(
                            self._fns[c], self._params[c], completions[i], fields_list[i]
                        )
                    record(task, st, val, flag, info, err, time.monotonic() - t0, counter.take())
            else:
                self._run_pool(completions, fields_list, tasks, record, record_timeout)
            if any(self._batch_level):
                correct_so_far = self._per_sample_correct(n, k, status, flags, timed_out)
                self._score_batch_level(completions, fields_list, groups, correct_so_far, record)

        # assemble
        fail_value = 0.0 if self.on_error == "zero" else None
        scores: dict[str, list[Optional[float]]] = {a: [None] * n for a in self.aliases}
        checker_correct: dict[str, list[Optional[bool]]] = {a: [None] * n for a in self.aliases}
        info: dict[str, list[Optional[dict]]] = {a: [None] * n for a in self.aliases}
        total = [0.0] * n
        correct: list[Optional[bool]] = [None] * n
        for i in range(n):
            for c, spec in enumerate(self.specs):
                task = i * k + c
                alias = self.aliases[c]
                failed = timed_out[task] or status[task] == _ERR
                if failed:
                    v: Optional[float] = fail_value
                    flag = False if alias in self._reports_correct else None
                else:
                    v, flag = values[task], flags[task]
                    info[alias][i] = infos[task]
                scores[alias][i] = v
                checker_correct[alias][i] = flag
                if v is not None:
                    total[i] += float(spec.weight) * v
                if flag is not None:
                    correct[i] = flag if correct[i] is None else (correct[i] and flag)
        return ScoreBatch(
            total=total,
            scores=scores,
            correct=correct,
            checker_correct=checker_correct,
            info=info,
            errors=errors,
            timeouts=timeouts,
            seconds=seconds,
            wall_s=time.perf_counter() - t_start,
            stdout_lines=printed,
        )

    def _per_sample_correct(self, n, k, status, flags, timed_out) -> list[Optional[bool]]:
        """Each sample's combined success flag over the per-sample checkers (as assembled below)."""
        correct: list[Optional[bool]] = [None] * n
        for i in range(n):
            for c in range(k):
                if self._batch_level[c]:
                    continue
                task = i * k + c
                if timed_out[task] or status[task] == _ERR:
                    flag = False if self.aliases[c] in self._reports_correct else None
                else:
                    flag = flags[task]
                if flag is not None:
                    correct[i] = flag if correct[i] is None else (correct[i] and flag)
        return correct

    def _score_batch_level(self, completions, fields_list, groups, correct, record) -> None:
        """Run the batch-level checkers once each over the whole batch, in this process."""
        n, k = len(completions), len(self.specs)
        group_ids = list(groups) if groups is not None else list(range(n))
        if len(group_ids) != n:
            raise ValueError(f"{n} completions but {len(group_ids)} group ids")
        counter = _LineCounter()
        for c in range(k):
            if not self._batch_level[c]:
                continue
            t0 = time.monotonic()
            try:
                with redirect_stdout(counter):
                    results = list(
                        self._fns[c](
                            list(completions), list(fields_list), correct, group_ids, **self._params[c]
                        )
                    )
                if len(results) != n:
                    raise ValueError(f"batch-level checker returned {len(results)} results for {n} samples")
                parsed = [as_result(r) for r in results]
            except Exception:
                err = traceback.format_exc()
                lines = counter.take()
                for i in range(n):
                    record(i * k + c, _ERR, None, None, None, err, 0.0, lines if i == 0 else 0)
                continue
            dt = (time.monotonic() - t0) / max(n, 1)
            lines = counter.take()
            for i, res in enumerate(parsed):
                out_lines = lines if i == 0 else 0
                if res is None:
                    record(i * k + c, _NA, None, None, None, None, dt, out_lines)
                else:
                    record(i * k + c, _OK, float(res.score), res.correct, res.info, None, dt, out_lines)

    def _log_once(self, alias: str, kind: str, text: str) -> None:
        if (alias, kind) in self._logged:
            return
        self._logged.add((alias, kind))
        if kind == "error":
            # one line (the exception and the innermost line it came from); the whole
            # traceback at DEBUG level
            log.warning("reward checker %r raised %s (logged once per checker)", alias, _one_line(text))
            log.debug("reward checker %r raised:\n%s", alias, text)
        else:
            log.warning("reward checker %r: %s (logged once per checker)", alias, text)

    def _run_pool(self, completions, fields_list, tasks, record, record_timeout) -> None:
        k = len(self.specs)
        queue: deque[int] = deque(tasks)
        workers = self._workers
        timeout = self.timeout_s

        def replace(idx: int) -> None:
            _kill(workers[idx].proc)
            try:
                workers[idx].conn.close()
            except Exception:
                pass
            workers[idx] = self._start_worker()
            self.restarts += 1

        def give_back(w: _Worker, skip_current: bool) -> None:
            rest = w.chunk[w.done + (1 if skip_current else 0) :]
            queue.extendleft(reversed(rest))
            w.chunk = None
            w.done = 0
            w.deadline = math.inf

        try:
            while queue or any(w.busy for w in workers):
                # dispatch
                idle = [w for w in workers if not w.busy]
                for w in idle:
                    if not queue:
                        break
                    size = max(1, min(self.max_chunk, math.ceil(len(queue) / (4 * len(workers)))))
                    ids = [queue.popleft() for _ in range(min(size, len(queue)))]
                    payload = []
                    for task in ids:
                        i, c = divmod(task, k)
                        payload.append((task, c, completions[i], fields_list[i]))
                    w.chunk, w.done = ids, 0
                    w.deadline = time.monotonic() + timeout
                    try:
                        w.conn.send(payload)
                    except (BrokenPipeError, OSError):
                        # died while idle: put the chunk back and replace the worker
                        give_back(w, skip_current=False)
                        replace(workers.index(w))
                # wait for results or the next deadline
                busy = [w for w in workers if w.busy]
                if not busy:
                    continue
                wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=wait_s)
                ready_set = set(ready)
                for idx, w in enumerate(workers):
                    if not w.busy or w.conn not in ready_set:
                        continue
                    try:
                        while w.busy and w.conn.poll():
                            task, st, val, flag, info, err, dt, t_done, out_lines = w.conn.recv()
                            record(task, st, val, flag, info, err, dt, out_lines)
                            w.done += 1
                            w.deadline = t_done + timeout
                            if w.done >= len(w.chunk):
                                w.chunk, w.done, w.deadline = None, 0, math.inf
                    except (EOFError, OSError):
                        # the worker died by itself: its current check is an error
                        w.proc.join(timeout=1.0)
                        task = w.chunk[w.done]
                        record(
                            task,
                            _ERR,
                            None,
                            None,
                            None,
                            f"worker process died (exit code {w.proc.exitcode}) during this check",
                            0.0,
                        )
                        give_back(w, skip_current=True)
                        replace(idx)
                now = time.monotonic()
                for idx, w in enumerate(workers):
                    if w.busy and w.deadline <= now:
                        record_timeout(w.chunk[w.done])
                        give_back(w, skip_current=True)
                        replace(idx)
        except BaseException:
            # interrupted (Ctrl-C) or a bug: workers with checks in flight hold stale results
            for idx, w in enumerate(workers):
                if w.busy:
                    w.chunk = None
                    replace(idx)
            raise


def score(
    completions: Sequence[str],
    fields_list: Optional[Sequence[Mapping[str, Any]]],
    checkers: Sequence[SpecLike],
    *,
    timeout_s: float = 5.0,
    workers: Optional[int] = None,
    on_error: str = "zero",
) -> ScoreBatch:
    """Score one batch with a throwaway pool. In a loop, keep a :class:`Scorer` instead."""
    if workers is None:
        workers = min(_default_workers(), max(1, len(completions) * len(checkers)))
    with Scorer(checkers, timeout_s=timeout_s, workers=workers, on_error=on_error) as scorer:
        return scorer.score(completions, fields_list)
