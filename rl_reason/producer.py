"""Where each step's rollouts come from: sampled now (synchronous) or ahead of the trainer.

The trainer asks ``producer.next_batch(step)`` for a step's rollouts and calls
``producer.after_update(step)`` once the adapter has changed. Adapter *versions* are explicit:
version v is the adapter after v optimizer steps (0 = the initial one); step s trains version
s - 1 into version s, and a batch sampled with version u is ``(s - 1) - u`` versions stale.

- ``rollout.max_staleness: 0`` (the default): ``SyncProducer`` draws the prompts and samples
  them with the trainer's own engine at the step that needs them, exactly as the loop always
  did (same calls in the same order, so runs are bitwise unchanged).
- ``max_staleness: K >= 1``: ``AsyncProducer`` keeps K batches requested ahead of the trainer.
  Every request ("ticket") carries its prompts and its sampling seed, and is sent *after* the
  newest adapter, in one ordered command stream; so the batch of step s is sampled with
  version ``max(0, s - K - 1)``, at most K behind, while the trainer updates. A batch that is
  staler anyway (a sampler restarted on an old adapter) is dropped or re-sampled
  (``rollout.stale_policy``), counted and logged.

Where the sampling runs (a *backend*): ``rollout.engine: server`` drives the vLLM servers from
a thread of the trainer process (``ThreadBackend``; the servers hold the weights). ``hf`` and
colocated ``vllm`` run in a separate sampler process (``ProcessBackend``) that loads its own
frozen base and receives only the LoRA adapter's tensors after each update; it applies them
with the same ``load_adapter_state`` / engine ``sync_weights`` path a resume uses.

Because the command stream is ordered and every ticket has its seed, a run with K >= 1 on
the CPU is reproducible too: the checkpoint stores the pending tickets, the data cursor from
before they were drawn and the adapters they were requested under, and a resume (or a
restarted sampler) replays them. See docs/ASYNC.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch

from rl_reason import train_state
from rl_reason.errors import ConfigError, EngineError
from rl_reason.rollout import Rollout, SamplingParams

log = logging.getLogger("rl_reason")

POLL_S = 0.5  # how often a waiting trainer checks that the sampler is still alive


@dataclasses.dataclass
class RolloutBatch:
    """One step's rollouts and where they came from."""

    ticket: int  # request number (equals the step unless a batch was dropped)
    records: list  # this rank's PromptRecords; rollout.prompt_index points into it
    rollouts: list[Rollout]
    version: int  # adapter version the batch was sampled with
    generate_s: float  # time the sampler was busy on it
    wait_s: float = 0.0  # time the trainer waited for it
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # async/* of this step


def staleness(trainer_version: int, batch_version: int) -> int:
    """How many versions a batch is behind the adapter about to be trained."""
    return max(0, trainer_version - batch_version)


def is_stale(trainer_version: int, batch_version: int, max_staleness: int) -> bool:
    return staleness(trainer_version, batch_version) > max_staleness


def _set_version(rollouts: Sequence[Rollout], version: int) -> None:
    for r in rollouts:
        r.adapter_version = min(r.token_versions) if r.token_versions else version


class Producer(Protocol):
    def next_batch(self, step: int) -> RolloutBatch: ...

    def after_update(self, step: int) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Optional[dict]) -> None: ...

    def eval_engine(self): ...

    def close(self) -> None: ...


class SyncProducer:
    """K = 0: the prompts are drawn and sampled at the step that trains on them."""

    def __init__(self, trainer):
        self.t = trainer
        self.version = 0

    def next_batch(self, step: int) -> RolloutBatch:
        t, dist = self.t, self.t.dist
        local = t.sampler.next_batch()[dist.rank :: dist.world]
        t0 = time.perf_counter()
        n = t.cfg.rollout.num_generations
        if t.tools is not None:  # multi-turn with rollout.tools (rl_reason/rollout/multiturn.py)
            from rl_reason.rollout import multiturn

            rollouts = multiturn.generate(t.engine, local, n, t.sampling, t.tools, t.tokenizer)
        else:
            rollouts = t.engine.generate(t._prompt_ids(local), n, t.sampling)
        gen_s = time.perf_counter() - t0
        _set_version(rollouts, self.version)
        return RolloutBatch(step, local, rollouts, self.version, gen_s)

    def after_update(self, step: int) -> None:
        self.t.engine.sync_weights()
        self.version = step

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state and state.get("cursor_before"):  # resumed from a K >= 1 run: its pending
            self.t.sampler.load_state_dict(state["cursor_before"])  # prompts come next

    def eval_engine(self):
        return self.t.engine

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- backends
class SamplerDied(EngineError):
    """The sampler process exited while the trainer waited for it."""


@dataclasses.dataclass
class Ticket:
    number: int
    records: list
    prompt_ids: list[list[int]]
    seed: int
    version: int  # adapter version the ticket was requested under
    cursor: dict  # the data cursor before its prompts were drawn


class ProcessBackend:
    """A sampler process with its own frozen base; commands and results over two queues."""

    kind = "process"

    def eval_engine(self, trainer):
        return trainer.engine  # the trainer's own engine on its own policy: the current adapter

    def __init__(self, cfg, run_dir: Path, startup_timeout_s: float):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.startup_timeout_s = startup_timeout_s
        self.proc = None
        self.cmd = self.out = None

    def start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # a fresh interpreter: no forked torch threads or locks
        self.cmd, self.out = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(
            target=sampler_main,
            args=(self.cfg, str(self.run_dir), self.cmd, self.out, os.getpid()),
            name="rl-reason-sampler",
            daemon=True,
        )
        self.proc.start()
        kind, payload = self.receive("start-up (loading its copy of the base model)", self.startup_timeout_s)
        if kind != "ready":  # pragma: no cover - receive raises on errors
            raise EngineError(f"sampler process: unexpected first message {kind!r}")

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def publish(self, version: int, state: dict) -> None:
        self.cmd.put(("adapter", version, state))

    def request(self, ticket: Ticket, n: int, sampling: SamplingParams) -> None:
        self.cmd.put(("generate", ticket.number, ticket.prompt_ids, n, sampling, ticket.seed))

    def receive(self, what: str, timeout_s: float):
        """The next message; raises SamplerDied / EngineError naming what was awaited."""
        end = time.monotonic() + timeout_s
        while True:
            try:
                kind, *payload = self.out.get(timeout=POLL_S)
            except queue.Empty:
                if not self.alive():
                    code = self.proc.exitcode if self.proc is not None else None
                    raise SamplerDied(
                        f"sampler process (pid {self.pid}) died with exit code {code} during {what}"
                    )
                if time.monotonic() > end:
                    raise EngineError(
                        f"timed out after {timeout_s:.0f}s waiting for the sampler process (pid "
                        f"{self.pid}): {what} (rollout.producer_timeout_s)"
                    )
                continue
            if kind == "error":
                raise EngineError(f"sampler process: {payload[0]}")
            return kind, payload

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            try:
                self.cmd.put(("stop",))
            except (OSError, ValueError):  # pragma: no cover - queue already closed
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.kill()
            self.proc.join(5)
        for q in (self.cmd, self.out):
            q.cancel_join_thread()
            q.close()
        self.proc = None


class ThreadBackend:
    """The server engine driven from a thread of the trainer process (the servers hold the
    weights; this thread only sends requests and adapter loads, in order)."""

    kind = "thread"

    def __init__(self, engine, adapter_dir: Path, make_eval_engine=None):
        self.engine = engine
        self.adapter_dir = Path(adapter_dir)
        self.cmd: queue.Queue = queue.Queue()
        self.out: queue.Queue = queue.Queue()
        self.thread: Optional[threading.Thread] = None
        self.make_eval_engine = make_eval_engine
        self._eval_engine = None

    def eval_engine(self, trainer):
        """A second server engine, for held-out evaluation in the trainer's thread. The
        producer's engine serves the adapter the sampler thread loaded last (up to K versions
        old) and unloads it when the next one arrives, so evaluating through it would grade a
        stale policy, and a request in flight could name an adapter just unloaded. This one
        follows the trainer's policy and loads it under names of its own."""
        if self._eval_engine is None:
            self._eval_engine = self.make_eval_engine()
        return self._eval_engine

    def start(self) -> None:
        self.engine.follow_policy = False  # adapters come through this thread only
        self.thread = threading.Thread(target=self._loop, name="rl-reason-producer", daemon=True)
        self.thread.start()

    pid = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def publish(self, version: int, state: dict) -> None:
        # written here, in the trainer's thread, before the next update changes the weights
        path = self.adapter_dir / f"v{version}"
        self.engine.policy.save_adapter(path)
        self.cmd.put(("adapter", version, path))

    def request(self, ticket: Ticket, n: int, sampling: SamplingParams) -> None:
        self.cmd.put(("generate", ticket.number, ticket.prompt_ids, n, sampling, ticket.seed))

    def _loop(self) -> None:
        version = 0
        while True:
            cmd = self.cmd.get()
            try:
                if cmd[0] == "stop":
                    return
                if cmd[0] == "adapter":
                    self.engine.load_adapter_dir(cmd[2])
                    version = cmd[1]
                    continue
                _, number, prompt_ids, n, sampling, seed = cmd
                t0 = time.perf_counter()
                rollouts = self.engine.generate(prompt_ids, n, sampling, seed=seed)
                self.out.put(("batch", number, version, rollouts, time.perf_counter() - t0))
            except Exception as exc:  # noqa: BLE001 - reported to the trainer in one line
                self.out.put(("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    def receive(self, what: str, timeout_s: float):
        try:
            kind, *payload = self.out.get(timeout=timeout_s)
        except queue.Empty:
            raise EngineError(
                f"timed out after {timeout_s:.0f}s waiting for the vLLM servers: {what} "
                "(rollout.producer_timeout_s)"
            ) from None
        if kind == "error":
            raise EngineError(f"rollout producer: {payload[0]}")
        return kind, payload

    def close(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.cmd.put(("stop",))
            self.thread.join(5)
        self.thread = None
        if self._eval_engine is not None:
            self._eval_engine.close()
            self._eval_engine = None


# --------------------------------------------------------------------------- the async producer
class AsyncProducer:
    """K >= 1: keeps ``max_staleness`` batches requested ahead of the trainer."""

    def __init__(self, trainer, backend):
        self.t = trainer
        self.cfg = trainer.cfg.rollout
        self.k = int(self.cfg.max_staleness)
        self.backend = backend
        self.version = 0
        self.adapters: dict[int, dict] = {}  # version -> adapter tensors, while a ticket needs it
        self.pending: list[Ticket] = []  # requested, not yet trained on, oldest first
        self.next_ticket = 1
        self.started = False
        self.restarts = 0
        self.results: dict[int, tuple] = {}  # ticket -> (version, rollouts, generate_s)
        self.counts: Counter = Counter()  # staleness -> batches trained on
        self.dropped = 0
        self.resampled = 0
        self.used = 0

    # ------------------------------------------------------------------ requests
    def _start(self) -> None:
        t0 = time.perf_counter()
        self.backend.start()
        self.started = True
        log.info("rollout producer (%s) started in %.1fs", self.backend.kind, time.perf_counter() - t0)
        self._replay()

    def _replay(self) -> None:
        """(Re-)send the pending tickets, each after the adapter it was requested under, then
        the newest adapter: the sampler sees the command stream the first run sent."""
        sent = None
        for tk in self.pending:
            if tk.version != sent and tk.version in self.adapters:
                self.backend.publish(tk.version, self.adapters[tk.version])
                sent = tk.version
            self.backend.request(tk, self.t.cfg.rollout.num_generations, self.t.sampling)
        if sent != self.version:
            self.backend.publish(self.version, self._current_state())

    def _current_state(self) -> dict:
        if self.version not in self.adapters:
            self.adapters[self.version] = self.t.policy.adapter_state()
        return self.adapters[self.version]

    def _request(self, number: int) -> Ticket:
        tk = self._draw(number, self.version)
        self._current_state()  # kept while this ticket may need replaying
        self.pending.append(tk)
        self.backend.request(tk, self.t.cfg.rollout.num_generations, self.t.sampling)
        return tk

    def _draw(self, number: int, version: int) -> Ticket:
        t, dist = self.t, self.t.dist
        cursor = dict(t.sampler.state_dict())
        local = t.sampler.next_batch()[dist.rank :: dist.world]
        seed = train_state.step_seed(t.cfg.train.seed, number, dist.rank)
        return Ticket(number, local, t._prompt_ids(local), seed, version, cursor)

    def _fill(self, step: int) -> None:
        last = self.t.cfg.train.steps + self.dropped  # never sample past the last step
        while len(self.pending) <= self.k and self.next_ticket <= last:
            self._request(self.next_ticket)
            self.next_ticket += 1

    def _await(self, tk: Ticket, step: int) -> tuple:
        what = f"the rollouts of step {step} (request {tk.number})"
        while tk.number not in self.results:
            try:
                kind, payload = self.backend.receive(what, float(self.cfg.producer_timeout_s))
            except SamplerDied as exc:
                if self.restarts >= self.cfg.sampler_restarts:
                    raise SamplerDied(
                        f"{exc}; gave up after {self.restarts} restart(s) (rollout.sampler_restarts)"
                    ) from None
                self.restarts += 1
                self.t.say(f"warning: {exc}; restarting it ({self.restarts}/{self.cfg.sampler_restarts})")
                self.backend.close()
                self.results.clear()
                self._start()
                continue
            if kind == "batch":
                number, version, rollouts, gen_s = payload
                self.results[number] = (version, rollouts, gen_s)
        return self.results.pop(tk.number)

    # ------------------------------------------------------------------ the trainer's side
    def next_batch(self, step: int) -> RolloutBatch:
        if not self.started:
            self._start()
        t0 = time.perf_counter()
        while True:
            self._fill(step)
            if not self.pending:
                raise EngineError(f"rollout producer: nothing requested for step {step}")
            tk = self.pending[0]
            version, rollouts, gen_s = self._await(tk, step)
            self.pending.pop(0)
            if not is_stale(self.version, version, self.k):
                break
            behind = staleness(self.version, version)
            if self.cfg.stale_policy == "resample":
                self.resampled += 1
                self.t.say(f"step {step}: batch {behind} versions behind; re-sampling its prompts")
                t1 = time.perf_counter()
                rollouts = self.t.engine.generate(
                    tk.prompt_ids, self.t.cfg.rollout.num_generations, self.t.sampling
                )
                gen_s, version = time.perf_counter() - t1, self.version
                break
            self.dropped += 1
            self.t.say(
                f"step {step}: dropped a batch {behind} versions behind (rollout.max_staleness={self.k})"
            )
        self._forget_adapters()
        _set_version(rollouts, version)
        behind = staleness(self.version, version)
        self.counts[behind] += 1
        self.used += 1
        wait_s = time.perf_counter() - t0
        metrics = {
            "async/staleness": float(behind),
            "async/version": float(version),
            "async/dropped": float(self.dropped),
            "async/resampled": float(self.resampled),
            "async/dropped_frac": self.dropped / max(self.used + self.dropped, 1),
            "time/wait_rollouts_s": wait_s,
            "async/restarts": float(self.restarts),
        }
        partial = [r for r in rollouts if len(set(r.token_versions)) > 1]
        if self.cfg.partial:  # completions that went on under a newer adapter
            n_tok = sum(len(r.token_versions) for r in rollouts)
            metrics["async/partial_frac"] = len(partial) / max(len(rollouts), 1)
            metrics["async/token_staleness_mean"] = sum(
                self.version - v for r in rollouts for v in r.token_versions
            ) / max(n_tok, 1)
        for k in range(self.k + 1):  # histogram so far: batches trained k versions behind
            metrics[f"async/staleness_hist/{k}"] = float(self.counts.get(k, 0))
        return RolloutBatch(tk.number, tk.records, rollouts, version, gen_s, wait_s, metrics)

    def _forget_adapters(self) -> None:
        keep = {tk.version for tk in self.pending} | {self.version}
        for v in list(self.adapters):
            if v not in keep:
                del self.adapters[v]

    def after_update(self, step: int) -> None:
        self.version = step
        state = self._current_state()
        self._forget_adapters()
        if self.started and self.backend.alive():
            self.backend.publish(step, state)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return {
            "kind": "async",
            "version": self.version,
            "next_ticket": self.next_ticket,
            # the data cursor from before the oldest pending ticket: a resume re-draws them
            "cursor_before": self.pending[0].cursor if self.pending else None,
            "pending": [(tk.number, tk.version) for tk in self.pending],
            "adapters": {v: s for v, s in self.adapters.items() if v != self.version},
            "counts": dict(self.counts),
            "dropped": self.dropped,
            "resampled": self.resampled,
            "used": self.used,
        }

    def load_state_dict(self, state: Optional[dict]) -> None:
        if not state or state.get("kind") != "async":
            return
        t = self.t
        self.version = int(state["version"])
        self.counts = Counter({int(k): int(v) for k, v in state["counts"].items()})
        self.dropped, self.resampled, self.used = state["dropped"], state["resampled"], state["used"]
        self.adapters = dict(state["adapters"])
        self.next_ticket = int(state["next_ticket"])
        self.pending = []
        if state["pending"]:
            # re-draw the pending tickets' prompts from the cursor they were drawn with
            t.sampler.load_state_dict(state["cursor_before"])
            self.pending = [self._draw(number, version) for number, version in state["pending"]]

    def eval_engine(self):
        """The engine held-out evaluation runs through (the current adapter, never a stale one)."""
        return self.backend.eval_engine(self.t)

    def close(self) -> None:
        self.backend.close()


def make_producer(trainer):
    """The producer ``rollout.max_staleness`` asks for."""
    cfg = trainer.cfg
    if cfg.rollout.max_staleness == 0:
        return SyncProducer(trainer)
    if trainer.dist.world > 1:
        raise ConfigError(
            "rollout.max_staleness >= 1 runs in one training process for now; use "
            "rollout.max_staleness=0 with several processes"
        )
    if cfg.rollout.engine == "server":

        def make_eval_engine():
            from rl_reason.rollout.server import ServerEngine

            rc = dataclasses.replace(cfg.rollout, adapter_dir=str(Path(trainer.engine.adapter_dir) / "eval"))
            return ServerEngine(trainer.policy, rc, trainer.run_dir)

        backend = ThreadBackend(trainer.engine, trainer.engine.adapter_dir, make_eval_engine)
    else:
        backend = ProcessBackend(cfg, trainer.run_dir, float(cfg.rollout.producer_timeout_s))
    return AsyncProducer(trainer, backend)


# --------------------------------------------------------------------------- the sampler process
def sampler_main(cfg, run_dir: str, cmd, out, parent_pid: int) -> None:
    """The sampler process: its own frozen base + LoRA, an engine, and an ordered command loop.

    Commands: ("adapter", version, tensors) loads an adapter; ("generate", ticket, prompt_ids,
    n, sampling, seed) samples with the adapter loaded last; ("stop",) exits. Ctrl-C goes to
    the trainer, which checkpoints and then stops this process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from rl_reason.policy import load_policy
        from rl_reason.rollout.factory import make_engine

        if not cfg.logging.progress:
            from rl_reason.tracking import quiet_library_progress

            quiet_library_progress()
        policy = load_policy(cfg.model, cfg.lora, seed=cfg.train.seed)
        engine = make_engine(cfg.rollout, policy, Path(run_dir) / "sampler")
        out.put(("ready", os.getpid()))
    except Exception as exc:  # noqa: BLE001 - one line to the trainer
        out.put(("error", f"start-up failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"))
        return
    loop = _SamplerLoop(policy, engine, cmd)
    while True:
        try:
            command = loop.next_command()
        except queue.Empty:
            if os.getppid() != parent_pid:  # the trainer is gone: do not linger
                return
            continue
        try:
            if command[0] == "stop":
                break
            if command[0] == "adapter":
                loop.load(command)
                continue
            _, number, prompt_ids, n, sampling, seed = command
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            start = loop.version
            if cfg.rollout.partial:
                rollouts = loop.generate_partial(prompt_ids, n, sampling, cfg.rollout.partial_chunk)
            else:
                rollouts = engine.generate(prompt_ids, n, sampling)
            out.put(("batch", number, start, rollouts, time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001
            out.put(("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            return
    engine.close()


class _SamplerLoop:
    """The sampler process's command stream and current adapter; partial rollouts."""

    def __init__(self, policy, engine, cmd):
        self.policy, self.engine, self.cmd = policy, engine, cmd
        self.version = 0
        self.deferred: list = []  # commands read ahead while looking for a new adapter

    def next_command(self):
        return self.deferred.pop(0) if self.deferred else self.cmd.get(timeout=5.0)

    def load(self, command) -> None:
        _, self.version, state = command
        self.policy.load_adapter_state(state)
        self.engine.sync_weights()

    def newer_adapter(self) -> bool:
        """Load adapters waiting at the head of the stream. One behind a request is left for
        after it: the stream's order is what makes each request's version what it is."""
        loaded = False
        while not self.deferred:
            try:
                command = self.cmd.get_nowait()
            except queue.Empty:
                break
            if command[0] == "adapter":
                self.load(command)
                loaded = True
            else:
                self.deferred.append(command)
        return loaded

    def generate_partial(self, prompt_ids, n: int, sampling: SamplingParams, chunk: int) -> list[Rollout]:
        """Sample ``chunk`` tokens at a time; between chunks a newly arrived adapter is loaded
        and every unfinished completion continues under it (its prompt and tokens so far are
        the next chunk's prompt). Each token keeps its version and its sampler log-prob."""
        from rl_reason.rollout.hf import _cut_at_stop
        from rl_reason.rollout.vllm_engine import decode

        tok = self.policy.tokenizer
        jobs = [(i, list(p)) for i, p in enumerate(prompt_ids) for _ in range(n)]
        ids: list[list[int]] = [[] for _ in jobs]
        lps: list[list[float]] = [[] for _ in jobs]
        vers: list[list[int]] = [[] for _ in jobs]
        finish = ["length"] * len(jobs)
        live = list(range(len(jobs)))
        while live:
            room = sampling.max_new_tokens - len(ids[live[0]])
            step = dataclasses.replace(sampling, max_new_tokens=min(chunk, room))
            got = self.engine.generate([jobs[j][1] + ids[j] for j in live], 1, step)
            still = []
            for j, r in zip(live, got):
                ids[j] += r.completion_ids
                lps[j] += r.sample_logprobs
                vers[j] += [self.version] * len(r.completion_ids)
                if sampling.stop and r.finish_reason != "stop":
                    # a stop string can straddle two chunks ("\n" at the end of one, "\n" at the
                    # start of the next): the engine sees only its chunk's new tokens, so look
                    # at the whole completion and cut it where the string ends
                    text = tok.decode(ids[j], skip_special_tokens=True)
                    cut, _, stopped = _cut_at_stop(tok, ids[j], text, sampling.stop)
                    if stopped:
                        k = len(cut)
                        ids[j], lps[j], vers[j] = cut, lps[j][:k], vers[j][:k]
                        finish[j] = "stop"
                        continue
                if r.finish_reason == "stop" or not r.completion_ids:
                    finish[j] = "stop"
                elif len(ids[j]) < sampling.max_new_tokens:
                    still.append(j)
            live = still
            if live:
                self.newer_adapter()
        return [
            Rollout(
                prompt_index=i,
                prompt_ids=p,
                completion_ids=ids[j],
                completion_text=decode(tok, ids[j], sampling.stop),
                sample_logprobs=lps[j],
                finish_reason=finish[j],
                adapter_version=min(vers[j], default=self.version),
                token_versions=vers[j],
            )
            for j, (i, p) in enumerate(jobs)
        ]
