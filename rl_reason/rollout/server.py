"""Rollouts from remote vLLM servers (``rollout.engine: server``).

Each server is a ``vllm serve BASE --enable-lora`` started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (``rl-reason serve RECIPE`` prints the command). The
servers load the frozen base once; after every optimizer step ``sync_weights`` writes the
adapter to ``rollout.adapter_dir/step-N`` (default ``RUN_DIR/live_adapters``), loads it on
every server under a new name and unloads the previous one. Only the adapter moves.

The adapter directory must be readable by the servers at the same path (same machine, or a
shared filesystem). With several training processes (``accelerate launch``) each rank writes
under ``adapter_dir/rank-R`` and, when there are at least as many servers as ranks, uses only
its own share of them (``servers[rank::world]``); otherwise all ranks share all servers, each
under its own adapter name (start the servers with ``--max-loras`` >= the number of ranks).

``generate`` sends one request per prompt (all n completions of a prompt on one server, so a
group shares its prefix cache), prompts spread round robin over the servers, requests in
parallel so each server batches them. Prompts go as token ids and the completions come back
as token ids with the sampled tokens' log-probs (``return_token_ids``, with
``return_tokens_as_token_ids`` as a fallback), so nothing is re-tokenised.

Failures: at start-up each server must answer, serve the recipe's base model, and accept a
LoRA adapter, else one clear error. During a run a request that fails with a connection
error, a timeout or a 5xx is retried with exponential backoff (``RETRIES`` tries), then one
clear error names the server.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from rl_reason.errors import EngineError
from rl_reason.rollout import Rollout, SamplingParams
from rl_reason.rollout.vllm_engine import AdapterWatch, decode, finish_reason, policy_facts

log = logging.getLogger("rl_reason")

RETRIES = 5  # tries per request before giving up
BACKOFF_S = 0.5  # first wait; doubles every retry
STARTUP_TIMEOUT_S = 10.0
MAX_PARALLEL = 64  # requests in flight at once, over all servers
SERVE_HINT = "start one with `rl-reason serve RECIPE --start`"


MAX_STOPS = 4  # stop strings per OpenAI completion request


class ServerError(Exception):
    """One failed HTTP exchange; ``retry`` says whether trying again can help."""

    def __init__(self, message: str, retry: bool, status: Optional[int] = None):
        super().__init__(message)
        self.retry = retry
        self.status = status


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data)
        msg = err.get("message") if isinstance(err, dict) else err
        return str(msg or data).splitlines()[0]
    except Exception:
        return body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""


def http_json(url: str, payload: Optional[dict] = None, timeout: float = 30.0) -> Any:
    """GET (payload None) or POST JSON; the parsed reply (or text where it is not JSON)."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        msg = _error_message(exc.read() or b"") or exc.reason
        raise ServerError(f"HTTP {exc.code}: {msg}", retry=exc.code >= 500, status=exc.code) from exc
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(f"{type(reason).__name__}: {reason}".rstrip(": "), retry=True) from exc
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class Server:
    def __init__(self, url: str, timeout: float):
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.timeout = timeout

    def call(
        self,
        path: str,
        payload: Optional[dict] = None,
        timeout: Optional[float] = None,
        retries: int = RETRIES,
    ):
        wait = BACKOFF_S
        for attempt in range(1, retries + 1):
            try:
                return http_json(self.url + path, payload, timeout or self.timeout)
            except ServerError as exc:
                if not exc.retry or attempt == retries:
                    raise
                log.warning("server %s: %s; retry %d/%d in %.1fs", self.url, exc, attempt, retries - 1, wait)
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def fail(self, what: str, exc: Exception) -> EngineError:
        return EngineError(f"vLLM server {self.url}: {what}: {exc}")


def _same_model(served: str, wanted: str) -> bool:
    if served == wanted:
        return True
    try:
        return os.path.realpath(served) == os.path.realpath(wanted)
    except (OSError, ValueError):  # pragma: no cover
        return False


class ServerEngine:
    # rl_reason/producer.py turns this off: adapters then arrive through load_adapter_dir. A class
    # default, so an engine built without __init__ (the HTTP-only tests) follows the policy too.
    follow_policy = True

    def __init__(self, policy, rollout_cfg, run_dir: Optional[Path] = None, dist=None):
        # dist: the trainer's rl_reason.distributed.Dist (rank and world), None for one process
        if not rollout_cfg.servers:
            raise EngineError(
                "rollout.engine=server needs rollout.servers (base URLs of vllm servers, e.g. "
                f"[http://127.0.0.1:8000]); {SERVE_HINT}"
            )
        self.policy = policy
        self.cfg = rollout_cfg
        facts = policy_facts(policy)
        self.model_path = facts["path"]
        self.adapter = facts["adapter"]
        self.watch = AdapterWatch(policy, self.adapter)
        urls = list(rollout_cfg.servers)
        rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
        if world > 1 and len(urls) >= world:
            urls = urls[rank::world]  # each training process gets its own servers
        self.servers = [Server(u, float(rollout_cfg.server_timeout_s)) for u in urls]
        if rollout_cfg.adapter_dir:
            self.adapter_dir = Path(rollout_cfg.adapter_dir)
        elif run_dir is not None:
            self.adapter_dir = Path(run_dir) / "live_adapters"
        else:
            raise EngineError("rollout.engine=server needs rollout.adapter_dir or a run dir")
        self.adapter_dir = self.adapter_dir.resolve()
        if world > 1:  # ranks hold equal adapters, but must not write one directory at once
            self.adapter_dir = self.adapter_dir / f"rank-{rank}"
        self.tag = uuid.uuid4().hex[:8]  # adapter names never clash with another run's
        self.syncs = 0
        self.current: Optional[str] = None  # adapter name loaded on every server
        self.current_dir: Optional[Path] = None
        self.pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="rollout-http")
        for server in self.servers:
            self._check_server(server)
        # proves each server takes runtime LoRA adapters, and loads the starting adapter
        self.sync_weights(startup=True)

    # ------------------------------------------------------------------ start-up
    def _check_server(self, server: Server) -> None:
        try:
            reply = server.call("/v1/models", timeout=STARTUP_TIMEOUT_S, retries=2)
        except ServerError as exc:
            raise EngineError(
                f"vLLM server {server.url} is not reachable ({exc}); {SERVE_HINT}, or fix rollout.servers"
            ) from exc
        models = reply.get("data", []) if isinstance(reply, dict) else []
        served = [m.get("root") or m.get("id") for m in models if not m.get("parent")]
        if not any(_same_model(s, self.model_path) for s in served if s):
            raise EngineError(
                f"vLLM server {server.url} serves {served or 'no model'}, not the recipe's base "
                f"model {self.model_path}; restart it with `rl-reason serve RECIPE`"
            )

    # ------------------------------------------------------------------ sync
    def sync_weights(self, startup: bool = False) -> None:
        path = self.adapter_dir / f"step-{self.syncs}"
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.policy.save_adapter(path)
        self.load_adapter_dir(path, startup=startup)

    def load_adapter_dir(self, path: Path, startup: bool = False) -> None:
        """Load a saved adapter on every server under a new name; unload the previous one."""
        name = f"rl-reason-{self.tag}-step-{self.syncs}"
        for server in self.servers:
            try:
                server.call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
            except ServerError as exc:
                if startup and exc.status in (400, 404, 405):
                    raise EngineError(
                        f"vLLM server {server.url} does not load LoRA adapters at runtime ({exc}); "
                        "start it with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                        "(`rl-reason serve RECIPE` prints the command)"
                    ) from exc
                raise server.fail("loading the adapter failed", exc) from exc
        old, old_dir = self.current, self.current_dir
        self.current, self.current_dir = name, path
        self.watch.mark()
        self.syncs += 1
        if old is not None:
            for server in self.servers:
                try:
                    server.call("/v1/unload_lora_adapter", {"lora_name": old})
                except ServerError as exc:  # the new adapter is live; an old one lingering is harmless
                    log.warning("server %s: could not unload %s: %s", server.url, old, exc)
        if old_dir is not None and old_dir != path:
            shutil.rmtree(old_dir, ignore_errors=True)

    # ------------------------------------------------------------------ generate
    def generate(
        self, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingParams, seed: Optional[int] = None
    ) -> list[Rollout]:
        """``seed``: draw the request seeds from it rather than the global torch RNG (the
        producer thread must not touch the trainer's RNG)."""
        if not prompts:
            return []
        if self.follow_policy and self.watch.stale():
            self.sync_weights()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=gen).tolist()
        futures = [
            self.pool.submit(self._complete, self.servers[i % len(self.servers)], list(p), n, sampling, seed)
            for i, (p, seed) in enumerate(zip(prompts, seeds))
        ]
        rollouts: list[Rollout] = []
        for i, fut in enumerate(futures):
            for ids, logprobs, reason in fut.result():
                rollouts.append(
                    Rollout(
                        prompt_index=i,
                        prompt_ids=[int(t) for t in prompts[i]],
                        completion_ids=ids,
                        completion_text=decode(self.policy.tokenizer, ids, sampling.stop),
                        sample_logprobs=logprobs,
                        finish_reason=finish_reason(reason),
                    )
                )
        return rollouts

    def continue_rows(self, seqs: Sequence[Sequence[int]], sampling: SamplingParams):
        """One round of the multi-turn driver (rl_reason.rollout.multiturn): each sequence is
        sent as its exact token ids (prompt, model and tool tokens; never re-tokenized) with the
        round's stop strings; returns (ids, logprobs, how) per sequence."""
        from rl_reason.rollout.multiturn import eos_ids, round_results

        return round_results(self.generate(seqs, 1, sampling), eos_ids(self.policy))

    def _request(self, prompt: list[int], n: int, sampling: SamplingParams, seed: int) -> dict:
        body = {
            "model": self.current,
            "prompt": [int(t) for t in prompt],
            "n": n,
            "max_tokens": sampling.max_new_tokens,
            "temperature": 0.0 if sampling.greedy else sampling.temperature,
            "top_p": 1.0 if sampling.greedy else sampling.top_p,
            "top_k": 0 if sampling.greedy else (sampling.top_k or 0),
            "seed": int(seed),
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
            "include_stop_str_in_output": True,
            "skip_special_tokens": True,
        }
        if sampling.stop:
            if len(sampling.stop) > MAX_STOPS:  # the OpenAI API's limit, which vLLM enforces
                raise EngineError(
                    f"the server engine sends at most {MAX_STOPS} stop strings (the OpenAI API's "
                    f"limit), and rollout.stop plus the environment's stop give {len(sampling.stop)}; "
                    "use fewer, or rollout.engine=hf or vllm"
                )
            body["stop"] = list(sampling.stop)
        return body

    def _complete(self, server: Server, prompt: list[int], n: int, sampling: SamplingParams, seed: int):
        try:
            reply = server.call("/v1/completions", self._request(prompt, n, sampling, seed))
        except ServerError as exc:
            raise server.fail(f"completion request failed after {RETRIES} tries", exc) from exc
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise EngineError(f"vLLM server {server.url}: asked for {n} completions, got {len(choices)}")
        return [parse_choice(c) for c in choices]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.current is not None:
            for server in self.servers:
                try:
                    server.call("/v1/unload_lora_adapter", {"lora_name": self.current}, retries=1, timeout=5)
                except ServerError:
                    pass


def parse_choice(choice: dict) -> tuple[list[int], list[float], Optional[str]]:
    """(token ids, sampled log-probs, finish reason) of one completion choice."""
    lp = choice.get("logprobs") or {}
    tokens = lp.get("tokens") or []
    ids = choice.get("token_ids")
    if ids is None:
        try:
            ids = [int(t.split(":", 1)[1]) for t in tokens]
        except (IndexError, ValueError) as exc:
            raise EngineError(
                "vLLM server returned tokens without ids; it must support return_tokens_as_token_ids"
            ) from exc
    logprobs = [float(x) if x is not None else 0.0 for x in (lp.get("token_logprobs") or [])]
    if len(logprobs) != len(ids):
        raise EngineError(
            f"vLLM server returned {len(ids)} tokens but {len(logprobs)} log-probs for a completion"
        )
    return [int(t) for t in ids], logprobs, choice.get("finish_reason")
