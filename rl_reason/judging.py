"""``math_judge``'s model: loaded once from the recipe's ``rewards.judge``, served to the scorers.

``rewards`` may not import ``rl_reason`` or torch, and the checkers run in worker processes
that must not each load a model. So the trainer loads the judge once (:func:`start_judge`) on
one of the rollout engines (hf, vllm or a vLLM server) and serves it from a thread of its own
process (:class:`JudgeService`) on a local socket in a private directory, with a random
authentication key. ``rewards.math.judge.set_judge`` gets a ``RemoteJudge`` client for it
before the scoring workers fork, so every worker asks the same model; the address is also put
in the environment for workers that were spawned. Questions that arrive together (several
workers at once) are answered in one batched ``generate``. Replies are cached by question
(a question is a function of (gold, answer)) in memory and, with ``cache_file``, in a JSONL
file; ``rewards.math.judge`` only ever reads a reply as a yes/no verdict.

Without the recipe, a backend can still be injected by hand::

    from rewards.math.judge import set_judge
    set_judge(engine_judge(engine, tokenizer))
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from rl_reason.errors import ConfigError, ModelError
from rl_reason.rollout import SamplingParams

__all__ = ["engine_judge", "JudgeService", "start_judge"]

log = logging.getLogger("rl_reason.judging")

Backend = Callable[[Sequence[str]], list]


def engine_judge(engine, tokenizer, max_new_tokens: int = 8) -> Backend:
    """A ``prompts -> replies`` callable that asks ``engine`` (any RolloutEngine) greedily."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, greedy=True)

    def backend(prompts: Sequence[str]) -> list[str]:
        ids = []
        for p in prompts:
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                )
                ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
            else:
                ids.append(list(tokenizer(p)["input_ids"]))
        rollouts = sorted(engine.generate(ids, 1, sampling), key=lambda r: r.prompt_index)
        return [r.completion_text for r in rollouts]

    return backend


class JudgeService:
    """Serves ``backend`` to other processes; :meth:`install` points ``math_judge`` at it.

    ``asked`` holds the last questions the backend itself was given (cache hits excluded) and
    ``n_asked`` counts them, so a caller (and the tests) can see what reached the model.
    """

    def __init__(self, backend: Backend, cache_file: Optional[str] = None, on_close=None):
        from multiprocessing.connection import Listener

        self.backend = backend
        self.asked: "collections.deque[str]" = collections.deque(maxlen=1000)
        self.n_asked = 0
        self._on_close = on_close
        self._cache: dict[str, str] = {}
        self._cache_path = Path(cache_file).expanduser() if cache_file else None
        if self._cache_path is not None:
            self._load_cache()
        self._dir = tempfile.mkdtemp(prefix="rl-judge-")  # mode 0700: only this user connects
        self.address = os.path.join(self._dir, "judge.sock")
        self.authkey = os.urandom(32)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self.authkey)
        self._requests: "queue.Queue" = queue.Queue()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, name="judge-accept", daemon=True),
            threading.Thread(target=self._answer, name="judge-model", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ---------------------------------------------------------------- cache
    def _load_cache(self) -> None:
        path = self._cache_path
        if not path.is_file():
            return
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    self._cache[str(row["prompt"])] = str(row["reply"])
                except (ValueError, KeyError, TypeError):
                    log.warning("%s line %d: not a verdict row; skipped", path, n)

    def _store(self, prompt: str, reply: str) -> None:
        self._cache[prompt] = reply
        if self._cache_path is not None:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            with self._cache_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"prompt": prompt, "reply": reply}) + "\n")

    # ---------------------------------------------------------------- serving
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception:  # closed, or a client that failed the key
                if self._closed.is_set():
                    return
                continue
            if self._closed.is_set():
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn,), name="judge-conn", daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            while not self._closed.is_set():
                try:
                    prompts = conn.recv()
                except (EOFError, OSError):
                    return
                done: "queue.Queue" = queue.Queue(maxsize=1)
                self._requests.put((list(prompts), done))
                conn.send(done.get())
        finally:
            conn.close()

    def _answer(self) -> None:
        """One thread runs the model: every request waiting is answered in one batch."""
        while True:
            first = self._requests.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    nxt = self._requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._requests.put(None)
                    break
                batch.append(nxt)
            new = list(dict.fromkeys(p for prompts, _ in batch for p in prompts if p not in self._cache))
            error = None
            if new:
                try:
                    replies = self.backend(new)
                    self.asked.extend(new)
                    self.n_asked += len(new)
                    for p, r in zip(new, replies):
                        self._store(p, "" if r is None else str(r))
                except Exception as exc:  # the callers count it as the checker's error
                    error = f"the judge model failed: {type(exc).__name__}: {exc}"
                    log.warning("%s", error)
            for prompts, done in batch:
                # an unanswered question reads as "undecided", which never pays
                done.put([self._cache.get(p, "") for p in prompts] if error is None else [""] * len(prompts))

    # ---------------------------------------------------------------- use
    def client(self):
        from rewards.math.judge import RemoteJudge

        return RemoteJudge(self.address, self.authkey)

    def install(self) -> "JudgeService":
        """Point ``math_judge`` in this process, and in workers forked or spawned from now on,
        at this service."""
        from rewards.math import judge

        judge.set_judge(self.client())
        os.environ[judge.ADDRESS_ENV] = self.address
        os.environ[judge.AUTHKEY_ENV] = self.authkey.hex()
        return self

    def close(self) -> None:
        from rewards.math import judge

        if self._closed.is_set():
            return
        self._closed.set()
        if os.environ.get(judge.ADDRESS_ENV) == self.address:
            os.environ.pop(judge.ADDRESS_ENV, None)
            os.environ.pop(judge.AUTHKEY_ENV, None)
            judge.set_judge(None)
        self._requests.put(None)
        try:  # wake the accept thread, which then sees the flag and ends
            from multiprocessing.connection import Client

            Client(self.address, family="AF_UNIX", authkey=self.authkey).close()
        except Exception:
            pass
        try:
            self._listener.close()
        except Exception:
            pass
        for t in self._threads:  # closed means ended: the woken threads see the flag and return
            if t is not threading.current_thread():
                t.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> "JudgeService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_judge(cfg, run_dir: Optional[Path] = None) -> Optional[JudgeService]:
    """Load ``cfg.rewards.judge.model`` once and serve it (installed); None when none is named."""
    jc = cfg.rewards.judge
    if jc.model is None:
        return None
    from rl_reason import hub
    from rl_reason.config import LoraConfig, ModelConfig, RolloutConfig
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_policy

    key = "rewards.judge.model"
    try:
        path = resolve_model(jc.model)
        hub.require(path, repo_type="model", key=key, error=ConfigError)
        model_cfg = ModelConfig(
            name=jc.model,
            dtype=cfg.model.dtype,
            device=cfg.model.device,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        # the engines sample from a Policy; a fresh LoRA adapter starts at zero (B = 0), so
        # this one is the base model exactly, and nothing ever trains it
        policy = load_policy(model_cfg, LoraConfig(r=1, alpha=1), seed=0)
    except (ModelError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{key}={jc.model!r}: cannot load it as a chat model: {first}") from None
    if jc.engine == "hf":
        from rl_reason.rollout.hf import HFEngine

        engine = HFEngine(policy, merge_for_generation=False)
    else:
        from rl_reason.rollout.factory import make_engine

        work = Path(run_dir or tempfile.mkdtemp(prefix="rl-judge-")) / "judge"
        work.mkdir(parents=True, exist_ok=True)
        rollout = RolloutConfig(engine=jc.engine, max_new_tokens=jc.max_new_tokens, servers=list(jc.servers))
        engine = make_engine(rollout, policy, work)
    backend = engine_judge(engine, policy.tokenizer, max_new_tokens=jc.max_new_tokens)
    service = JudgeService(backend, cache_file=jc.cache_file, on_close=engine.close)
    log.info("math_judge asks %s (%s engine)", jc.model, jc.engine)
    return service.install()
