"""The server engine's HTTP side against small fake servers: retries, round robin, parsing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rl_reason.errors import EngineError
from rl_reason.rollout import SamplingParams

pytestmark = pytest.mark.vllm


class Fake:
    """A JSON server on 127.0.0.1 answering POSTs with ``reply(path, body) -> (status, obj)``."""

    def __init__(self, reply):
        self.calls: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body):
                fake.calls.append((self.path, body))
                status, obj = reply(self.path, body)
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def do_GET(self):
                self._answer(None)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    import rl_reason.rollout.server as server

    monkeypatch.setattr(server, "BACKOFF_S", 0.01)


def test_5xx_is_retried_then_succeeds():
    from rl_reason.rollout.server import Server

    answers = iter([(503, {"error": {"message": "busy"}})] * 2 + [(200, {"ok": 1})])
    fake = Fake(lambda path, body: next(answers))
    try:
        assert Server(fake.url, 5).call("/v1/x", {}) == {"ok": 1}
        assert len(fake.calls) == 3
    finally:
        fake.close()


def test_persistent_failure_gives_up_after_the_retry_limit():
    from rl_reason.rollout.server import RETRIES, Server, ServerError

    fake = Fake(lambda path, body: (500, {"error": {"message": "boom"}}))
    try:
        with pytest.raises(ServerError, match="HTTP 500: boom"):
            Server(fake.url, 5).call("/v1/x", {})
        assert len(fake.calls) == RETRIES
    finally:
        fake.close()


def test_4xx_is_not_retried():
    from rl_reason.rollout.server import Server, ServerError

    fake = Fake(lambda path, body: (400, {"error": {"message": "bad"}}))
    try:
        with pytest.raises(ServerError, match="HTTP 400: bad"):
            Server(fake.url, 5).call("/v1/x", {})
        assert len(fake.calls) == 1
    finally:
        fake.close()


def completions_reply(tag):
    def reply(path, body):
        n = body["n"]
        choices = [
            {
                "index": j,
                "text": "",
                "token_ids": None,  # exercise the tokens-as-ids fallback
                "logprobs": {"tokens": [f"token_id:{tag}", f"token_id:{j}"], "token_logprobs": [-0.5, -1.5]},
                "finish_reason": "length",
            }
            for j in reversed(range(n))  # out of order on purpose
        ]
        return 200, {"choices": choices}

    return reply


def test_round_robin_by_prompt_keeps_groups_on_one_server():
    from concurrent.futures import ThreadPoolExecutor

    from rl_reason.model_zoo import tiny_tokenizer
    from rl_reason.rollout.server import Server, ServerEngine

    fakes = [Fake(completions_reply(100)), Fake(completions_reply(200))]
    try:
        engine = object.__new__(ServerEngine)  # the HTTP side only; no policy, no start-up checks
        engine.servers = [Server(f.url, 5) for f in fakes]
        engine.pool = ThreadPoolExecutor(4)
        engine.current = "adapter-x"
        engine.policy = type("P", (), {"tokenizer": tiny_tokenizer()})()
        engine.watch = type("W", (), {"stale": lambda self: False})()
        prompts = [[1, 2], [3], [4, 5, 6], [7]]
        out = engine.generate(prompts, 3, SamplingParams(max_new_tokens=2, temperature=0.9))
        assert [r.prompt_index for r in out] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert [r.completion_ids for r in out[:3]] == [[100, 0], [100, 1], [100, 2]]
        assert [r.completion_ids[0] for r in out[3:6]] == [200] * 3
        # which prompts each server gets is fixed; the order they arrive in is not (the pool
        # sends a server's requests concurrently), so compare them sorted
        assert sorted(b["prompt"] for _, b in fakes[0].calls) == [[1, 2], [4, 5, 6]]
        assert sorted(b["prompt"] for _, b in fakes[1].calls) == [[3], [7]]
        body = fakes[0].calls[0][1]
        assert body["model"] == "adapter-x" and body["n"] == 3 and body["logprobs"] == 0
        assert body["return_tokens_as_token_ids"] and body["temperature"] == 0.9
        assert out[0].sample_logprobs == [-0.5, -1.5] and out[0].finish_reason == "length"
        engine.pool.shutdown()
    finally:
        for f in fakes:
            f.close()


def test_failed_completion_is_one_line_naming_the_server():
    from concurrent.futures import ThreadPoolExecutor

    from rl_reason.rollout.server import Server, ServerEngine

    fake = Fake(lambda path, body: (502, {"error": {"message": "gateway"}}))
    try:
        engine = object.__new__(ServerEngine)
        engine.servers = [Server(fake.url, 5)]
        engine.pool = ThreadPoolExecutor(2)
        engine.current = "a"
        engine.policy = None
        engine.watch = type("W", (), {"stale": lambda self: False})()
        with pytest.raises(EngineError, match=f"vLLM server {fake.url}: completion request failed") as info:
            engine.generate([[1]], 1, SamplingParams(max_new_tokens=2))
        assert "\n" not in str(info.value)
        engine.pool.shutdown()
    finally:
        fake.close()
