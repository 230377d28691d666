"""rl_reason/producer.py: synchronous and ahead-of-the-trainer rollouts, staleness, faults, resume."""

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from rl_reason import producer as producer_mod
from rl_reason.config import load_config
from rl_reason.errors import EngineError
from rl_reason.producer import AsyncProducer, RolloutBatch, SamplerDied, is_stale, staleness
from rl_reason.rollout import Rollout, SamplingParams

from .conftest import TINY

VOLATILE = ("time/", "throughput/")


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if not k.startswith(VOLATILE) and not k.endswith("/seconds")}
        for r in rows
    ]


def _adapter(run_dir: Path) -> dict:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def _same_adapter(a: Path, b: Path) -> None:
    want, got = _adapter(a), _adapter(b)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def _train(run_dir: Path, *overrides: str, patch=None):
    from rl_reason.trainer import Trainer

    cfg = load_config(TINY, ["logging.plot=false", "logging.progress=false", *overrides])
    trainer = Trainer(cfg, run_dir)
    if patch is not None:
        patch(trainer)
    trainer.run()
    return trainer


class _InlineSync:
    """The loop's rollout lines as they were before the producer existed (main @ 1b8215b)."""

    def __init__(self, t):
        self.t = t

    def eval_engine(self):
        return self.t.engine

    def next_batch(self, step):
        t = self.t
        local = t.sampler.next_batch()[t.dist.rank :: t.dist.world]
        t0 = time.perf_counter()
        rollouts = t.engine.generate(t._prompt_ids(local), t.cfg.rollout.num_generations, t.sampling)
        return RolloutBatch(step, local, rollouts, 0, time.perf_counter() - t0)

    def after_update(self, step):
        self.t.engine.sync_weights()

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def close(self):
        pass


def test_k0_equals_the_synchronous_loop_bitwise(tmp_path):
    a = _train(tmp_path / "k0", "train.steps=3", "rollout.max_staleness=0")
    assert isinstance(a.producer, producer_mod.SyncProducer)
    _train(tmp_path / "inline", "train.steps=3", patch=lambda t: setattr(t, "producer", _InlineSync(t)))
    _same_adapter(tmp_path / "inline", tmp_path / "k0")
    assert _metrics(tmp_path / "k0") == _metrics(tmp_path / "inline")
    assert not any(k.startswith("async/") for r in _metrics(tmp_path / "k0") for k in r)
    versions = [json.loads(x)["adapter_version"] for x in (tmp_path / "k0" / "rollouts.jsonl").open()]
    assert versions == [0] * 16 + [1] * 16 + [2] * 16  # step s samples with version s - 1


# --------------------------------------------------------------------------- pure parts
def test_staleness_counts_versions_behind():
    assert staleness(3, 1) == 2 and staleness(0, 0) == 0 and staleness(1, 2) == 0
    assert not is_stale(3, 2, 1) and is_stale(3, 1, 1) and not is_stale(5, 0, 5)


class _FakeBackend:
    """Answers each request with the version the test scripts for it."""

    kind = "fake"
    pid = None

    def __init__(self, versions, die_at=None):
        self.versions = dict(versions)  # ticket -> version it comes back with
        self.requests, self.published, self.out = [], [], []
        self.die_at = die_at
        self.starts = 0

    def start(self):
        self.starts += 1

    def alive(self):
        return True

    def publish(self, version, state):
        self.published.append(version)

    def request(self, tk, n, sampling):
        self.requests.append(tk.number)
        ids = tk.prompt_ids
        self.out.append((tk.number, [Rollout(i, p, [1], "x") for i, p in enumerate(ids)]))

    def receive(self, what, timeout_s):
        if self.die_at is not None and self.out and self.out[0][0] == self.die_at:
            self.die_at = None
            self.out.clear()
            raise SamplerDied(f"sampler process (pid 1) died with exit code -9 during {what}")
        if not self.out:
            raise EngineError(f"timed out after {timeout_s:.0f}s waiting for the sampler process: {what}")
        number, rollouts = self.out.pop(0)
        return "batch", (number, self.versions.get(number, 0), rollouts, 0.0)

    def close(self):
        pass


def _fake_trainer(k=1, stale_policy="drop", steps=6, restarts=1):
    from rl_reason.data import PromptRecord, PromptSampler

    records = [PromptRecord(id=str(i), text=f"q{i}", fields={}) for i in range(8)]
    cfg = SimpleNamespace(
        rollout=SimpleNamespace(
            max_staleness=k,
            stale_policy=stale_policy,
            producer_timeout_s=1.0,
            sampler_restarts=restarts,
            num_generations=1,
            partial=False,
        ),
        train=SimpleNamespace(seed=0, steps=steps),
    )
    said = []
    resampled = []

    def generate(ids, n, sampling):
        resampled.append(len(ids))
        return [Rollout(i, p, [2], "y") for i, p in enumerate(ids)]

    return SimpleNamespace(
        cfg=cfg,
        sampler=PromptSampler(records, 2, seed=0),
        dist=SimpleNamespace(rank=0, world=1),
        sampling=SamplingParams(),
        _prompt_ids=lambda recs: [[int(r.id)] for r in recs],
        policy=SimpleNamespace(adapter_state=lambda: {"w": torch.zeros(1)}),
        say=said.append,
        engine=SimpleNamespace(generate=generate),
        said=said,
        resampled=resampled,
    )


def _run_steps(p, steps):
    got = []
    for step in range(1, steps + 1):
        b = p.next_batch(step)
        got.append(b)
        p.after_update(step)
    return got


def test_k1_requests_one_ahead_and_each_batch_is_at_most_one_version_behind():
    t = _fake_trainer(k=1, steps=4)
    backend = _FakeBackend({n: max(0, n - 2) for n in range(1, 10)})
    p = AsyncProducer(t, backend)
    got = _run_steps(p, 4)
    assert [b.version for b in got] == [0, 0, 1, 2]
    assert [b.metrics["async/staleness"] for b in got] == [0.0, 1.0, 1.0, 1.0]
    assert got[-1].metrics["async/staleness_hist/1"] == 3.0
    assert backend.requests == [1, 2, 3, 4]  # never past the last step
    assert backend.published[0] == 0 and backend.published[1:] == [1, 2, 3, 4]
    assert all(r.adapter_version == b.version for b in got for r in b.rollouts)


def test_a_batch_too_stale_is_dropped_and_counted():
    t = _fake_trainer(k=1, stale_policy="drop")
    backend = _FakeBackend({1: 0, 2: 0, 3: 0, 4: 2, 5: 3, 6: 4, 7: 5})  # ticket 3 is 2 behind at step 3
    p = AsyncProducer(t, backend)
    got = _run_steps(p, 4)
    assert [b.ticket for b in got] == [1, 2, 4, 5]  # ticket 3 never trained on
    assert max(b.metrics["async/staleness"] for b in got) <= 1
    assert got[-1].metrics["async/dropped"] == 1.0
    assert got[-1].metrics["async/dropped_frac"] == pytest.approx(1 / 5)
    assert any("dropped a batch 2 versions behind" in m for m in t.said)


def test_a_batch_too_stale_is_resampled_with_the_current_adapter():
    t = _fake_trainer(k=1, stale_policy="resample")
    backend = _FakeBackend({1: 0, 2: 0, 3: 0, 4: 2})
    p = AsyncProducer(t, backend)
    got = _run_steps(p, 3)
    assert [b.ticket for b in got] == [1, 2, 3]
    assert got[2].version == 2 and got[2].metrics["async/staleness"] == 0.0
    assert [r.completion_ids for r in got[2].rollouts] == [[2], [2]]  # from the trainer's engine
    assert got[2].metrics["async/resampled"] == 1.0 and t.resampled == [2]


def test_a_dead_sampler_is_restarted_and_its_requests_replayed():
    t = _fake_trainer(k=1, restarts=1)
    backend = _FakeBackend({n: max(0, n - 2) for n in range(1, 10)}, die_at=3)
    p = AsyncProducer(t, backend)
    got = _run_steps(p, 4)
    assert [b.ticket for b in got] == [1, 2, 3, 4]
    assert backend.starts == 2 and got[-1].metrics["async/restarts"] == 1.0
    # the replay: the pending tickets 3 and 4 again, each after the adapter it was first
    # requested under (versions 1 and 2)
    assert backend.requests == [1, 2, 3, 4, 3, 4, 5]
    assert backend.published == [0, 1, 2, 1, 2, 3, 4]
    assert any("died with exit code -9" in m and "restarting" in m for m in t.said)


def test_a_dead_sampler_without_restarts_left_stops_with_one_line():
    t = _fake_trainer(k=1, restarts=0)
    p = AsyncProducer(t, _FakeBackend({}, die_at=2))
    p.next_batch(1)
    p.after_update(1)
    with pytest.raises(SamplerDied, match=r"died with exit code -9 during the rollouts of step 2.*gave up"):
        p.next_batch(2)


def test_a_silent_sampler_times_out_naming_what_was_awaited():
    t = _fake_trainer(k=1)
    backend = _FakeBackend({})
    p = AsyncProducer(t, backend)
    backend.request = lambda tk, n, s: None  # requests vanish
    with pytest.raises(EngineError, match=r"timed out after 1s .*the rollouts of step 1 \(request 1\)"):
        p.next_batch(1)


def test_state_dict_replays_the_pending_requests_on_resume():
    t = _fake_trainer(k=2)
    p = AsyncProducer(t, _FakeBackend({n: max(0, n - 3) for n in range(1, 10)}))
    _run_steps(p, 2)
    state = p.state_dict()
    assert state["pending"] == [(3, 0), (4, 1)] and state["version"] == 2
    assert set(state["adapters"]) == {0, 1}  # the adapters the pending tickets were requested under
    want = [tk.records for tk in p.pending]
    t2 = _fake_trainer(k=2)
    t2.sampler.load_state_dict(t.sampler.state_dict())  # as train_state.load does first
    backend2 = _FakeBackend({n: max(0, n - 3) for n in range(1, 10)})
    p2 = AsyncProducer(t2, backend2)
    p2.load_state_dict(state)
    assert [tk.records for tk in p2.pending] == want
    assert t2.sampler.state_dict() == t.sampler.state_dict()
    b = p2.next_batch(3)
    assert b.ticket == 3 and b.version == 0
    assert backend2.published[:2] == [0, 1] and backend2.requests[:3] == [3, 4, 5]


# --------------------------------------------------------------------------- real runs (a sampler process)
K1 = ("train.steps=4", "rollout.max_staleness=1", "algorithm.is_cap=1.2")


@pytest.fixture(scope="module")
def k1_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("k1") / "run"
    _train(run_dir, *K1)
    return run_dir


def test_k1_never_trains_on_a_batch_more_than_one_version_old(k1_run):
    rows = [json.loads(x) for x in (k1_run / "metrics.jsonl").read_text().splitlines()][1:]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert r["async/version"] == max(0, r["step"] - 2)  # sampled while step - 1 trained
        assert r["async/staleness"] == (r["step"] - 1) - r["async/version"] <= 1
    assert rows[-1]["async/staleness_hist/0"] + rows[-1]["async/staleness_hist/1"] == 4
    logged = [json.loads(x) for x in (k1_run / "rollouts.jsonl").open()]
    for row in logged:
        assert row["step"] - 1 - row["adapter_version"] <= 1
    assert not any(p.name == "rl-reason-sampler" for p in __import__("multiprocessing").active_children())


def test_k1_importance_weights_use_the_samplers_log_probs(k1_run):
    rows = [json.loads(x) for x in (k1_run / "metrics.jsonl").read_text().splitlines()][1:]
    fresh = [r for r in rows if r["async/staleness"] == 0]
    stale = [r for r in rows if r["async/staleness"] == 1]
    assert fresh and stale
    for r in fresh:  # sampled with the adapter being trained: ratio 1 up to float rounding
        assert r["policy/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
        assert r["rollout/logprob_diff_max"] < 1e-3
    for r in stale:  # one version behind: the trainer and sampler log-probs differ
        assert r["rollout/logprob_diff_mean"] > 1e-3
        assert r["policy/is_weight_mean"] != pytest.approx(1.0, abs=1e-4)
        assert r["policy/is_weight_max"] <= 1.2 + 1e-6
        # the raw ratio is logged beside the capped weight; where it passes the cap, tokens are clipped
        assert r["policy/is_weight_max"] == pytest.approx(min(r["policy/is_ratio_max"], 1.2), abs=1e-6)
        assert (r["policy/is_clip_frac"] > 0) == (r["policy/is_ratio_max"] > 1.2)


def test_k1_with_the_default_correction_caps_the_weights_at_2(tmp_path):
    # a user's recipe that leaves algorithm.is_cap unset: with max_staleness 1 the update weights
    # tokens by min(ratio, 2) (offpolicy.ASYNC_IS_CAP); the raw ratio is logged beside the weight
    _train(tmp_path / "run", "train.steps=3", "rollout.max_staleness=1")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][1:]
    assert [r["async/staleness"] for r in rows] == [0, 1, 1]
    assert rows[0]["policy/is_ratio_mean"] == pytest.approx(1.0, abs=1e-4)
    for r in rows[1:]:
        assert r["policy/is_ratio_mean"] != pytest.approx(1.0, abs=1e-4)
        assert r["policy/is_ratio_max"] > 1.0
        assert r["policy/is_weight_max"] == pytest.approx(min(r["policy/is_ratio_max"], 2.0), abs=1e-6)
        assert r["async/dropped_frac"] == 0.0 and r["async/staleness_hist/1"] >= 1


@pytest.mark.slow
def test_killed_sampler_is_restarted_and_the_run_equals_the_unfaulted_one(k1_run, tmp_path):
    def kill_after_step_2(trainer):
        prod = trainer.producer
        orig = prod.after_update

        def after_update(step):
            orig(step)
            if step == 2:
                os.kill(prod.backend.pid, signal.SIGKILL)

        prod.after_update = after_update

    t = _train(tmp_path / "run", *K1, patch=kill_after_step_2)
    assert t.producer.restarts == 1
    # the replayed requests are sampled under the same adapters with the same seeds
    _same_adapter(k1_run, tmp_path / "run")
    assert [r for r in _metrics(tmp_path / "run") if "async/restarts" in r][-1]["async/restarts"] == 1.0


# --------------------------------------------------------------------------- kill, Ctrl-C, resume
K1_CLI = ["train.steps=6", "checkpoint.every=2", "logging.plot=false", "rollout.max_staleness=1"]


def _start(run_dir: Path, *extra: str):
    import subprocess
    import sys

    from .conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "rl_reason.cli",
        "train",
        str(TINY),
        "--run-dir",
        str(run_dir),
        *K1_CLI,
        *extra,
    ]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(pred, timeout=600.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_k1_sigkill_then_resume_has_no_lost_or_repeated_step_and_matches(tmp_path):
    from rl_reason.cli import main

    ref = tmp_path / "ref"
    assert main(["train", str(TINY), "--run-dir", str(ref), *K1_CLI]) == 0
    run_dir = tmp_path / "killed"
    proc = _start(run_dir)
    _wait_for(lambda: _logged(run_dir) >= 4 or proc.poll() is not None)  # step 3 logged, ckpt at 2
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its sampler process
    proc.wait()
    assert main(["resume", str(run_dir)]) == 0
    rows = _metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(0, 7))  # no duplicate, no missing step
    # the pending requests of the checkpoint are replayed under the adapters they were made
    # under, with their seeds: on the CPU the resumed run is the uninterrupted one, bitwise
    assert rows == _metrics(ref)
    _same_adapter(ref, run_dir)
    steps = [json.loads(x)["step"] for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == 6 * 16


@pytest.mark.slow
def test_k1_ctrl_c_stops_both_sides_and_checkpoints(tmp_path):
    run_dir = tmp_path / "int"
    proc = _start(run_dir, "checkpoint.every=0", "train.steps=50")
    _wait_for(lambda: _logged(run_dir) >= 3 or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:]
    assert f"rl-reason resume {run_dir}" in out
    from rl_reason import checkpoint

    done = int(checkpoint.find_latest(run_dir).name.split("-")[1])
    assert [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-1] == done
    _wait_for(lambda: _group_gone(proc.pid), timeout=30)  # the sampler process is gone too


# --------------------------------------------------------------------------- partial rollouts
class _ChunkEngine:
    """Emits tokens 100, 101, ... (log-prob -0.1 * version); records each chunk's prompts."""

    def __init__(self, loop_ref, stop_after=None):
        self.calls = []
        self.loop_ref = loop_ref
        self.stop_after = stop_after

    def sync_weights(self):
        pass

    def generate(self, prompts, n, sampling):
        self.calls.append([list(p) for p in prompts])
        v = self.loop_ref[0].version
        out = []
        for i, p in enumerate(prompts):
            done = len(p) - 2  # tokens so far (prompts here are 2 tokens long)
            k = sampling.max_new_tokens
            reason = "length"
            stop_at = (self.stop_after or {}).get(p[0])  # keyed by the prompt's first token
            if stop_at is not None and done + k >= stop_at:
                k, reason = stop_at - done, "stop"
            toks = list(range(100 + done, 100 + done + k))
            out.append(Rollout(i, list(p), toks, "", [-0.1 * v] * k, reason))
        return out


def test_partial_rollout_continues_under_the_adapter_that_arrives_mid_generation():
    import queue as q

    cmd = q.Queue()
    loaded = []
    policy = SimpleNamespace(
        load_adapter_state=loaded.append, tokenizer=SimpleNamespace(decode=lambda ids, **kw: "t")
    )
    ref = [None]
    engine = _ChunkEngine(ref, stop_after={1: 5})
    loop = producer_mod._SamplerLoop(policy, engine, cmd)
    ref[0] = loop
    cmd.put(("adapter", 1, {"w": 1}))  # arrives while the first chunk is sampled
    out = loop.generate_partial([[1, 2], [3, 4]], 1, SamplingParams(max_new_tokens=12), chunk=4)
    a, b = out
    assert a.completion_ids == [100, 101, 102, 103, 104] and a.finish_reason == "stop"
    assert a.token_versions == [0, 0, 0, 0, 1] and a.adapter_version == 0
    assert a.sample_logprobs == pytest.approx([0.0] * 4 + [-0.1])  # the sampler's, per token
    assert b.completion_ids == list(range(100, 112)) and b.token_versions == [0] * 4 + [1] * 8
    # the second chunk's prompt is the prompt plus the tokens so far
    assert engine.calls[1] == [[1, 2, 100, 101, 102, 103], [3, 4, 100, 101, 102, 103]]
    assert loaded == [{"w": 1}] and loop.version == 1


def test_partial_rollout_leaves_an_adapter_queued_behind_a_request_for_after_it():
    import queue as q

    cmd = q.Queue()
    policy = SimpleNamespace(
        load_adapter_state=lambda s: None, tokenizer=SimpleNamespace(decode=lambda i, **k: "")
    )
    ref = [None]
    loop = producer_mod._SamplerLoop(policy, _ChunkEngine(ref), cmd)
    ref[0] = loop
    cmd.put(("generate", 9, [[1, 2]], 1, SamplingParams(), 0))
    cmd.put(("adapter", 1, {}))
    (r,) = loop.generate_partial([[1, 2]], 1, SamplingParams(max_new_tokens=8), chunk=4)
    assert r.token_versions == [0] * 8  # the adapter belongs after request 9
    assert loop.next_command()[0] == "generate" and loop.next_command()[0] == "adapter"


def test_recipe_errors_name_the_key():
    from rl_reason.errors import ConfigError

    with pytest.raises(
        ConfigError, match="rollout.partial: partial rollouts need rollout.max_staleness >= 1"
    ):
        load_config(TINY, ["rollout.partial=true"])
    with pytest.raises(ConfigError, match="algorithm.is_band_low: must be below is_band_high"):
        load_config(TINY, ["algorithm.is_band_low=3"])
    with pytest.raises(ConfigError, match="stale_policy"):
        load_config(TINY, ["rollout.stale_policy=keep"])
    assert load_config(TINY, ["rollout.partial=true", "rollout.max_staleness=2"]).rollout.partial


def test_partial_rollout_stops_at_a_stop_string_that_straddles_two_chunks():
    """Chunk 1 ends in "A", chunk 2 starts with "B": the stop string "AB" is in neither chunk
    alone. The completion ends right after it (tokens, log-probs and versions cut together)."""
    import queue as q

    letters = {100: "x", 101: "x", 102: "x", 103: "A", 104: "B", 105: "y"}

    def decode(ids, **kw):
        return "".join(letters.get(i, "z") for i in ids)

    policy = SimpleNamespace(load_adapter_state=lambda s: None, tokenizer=SimpleNamespace(decode=decode))
    ref = [None]
    loop = producer_mod._SamplerLoop(policy, _ChunkEngine(ref), q.Queue())
    ref[0] = loop
    (r,) = loop.generate_partial([[1, 2]], 1, SamplingParams(max_new_tokens=12, stop=("AB",)), chunk=4)
    assert r.completion_ids == [100, 101, 102, 103, 104] and r.finish_reason == "stop"
    assert len(r.sample_logprobs) == 5 and len(r.token_versions) == 5
    assert r.completion_text == "xxxAB"


def test_server_thread_backend_evaluates_through_its_own_policy_following_engine(tmp_path):
    """K >= 1 with the server engine: the producer thread's engine serves an adapter up to K
    versions old and unloads it when the next arrives. Held-out evaluation goes through a
    second engine, made once, closed with the backend."""
    made, closed = [], []

    class _Eval:
        def close(self):
            closed.append(self)

    def make():
        made.append(_Eval())
        return made[-1]

    backend = producer_mod.ThreadBackend(SimpleNamespace(), tmp_path, make)
    first = backend.eval_engine(None)
    assert backend.eval_engine(None) is first and made == [first]
    backend.close()
    assert closed == [first]
    # the sampler-process backend and the synchronous producer evaluate on the trainer's engine
    trainer = SimpleNamespace(engine=object())
    assert producer_mod.ProcessBackend.eval_engine(None, trainer) is trainer.engine
    assert producer_mod.SyncProducer(trainer).eval_engine() is trainer.engine


def test_evaluation_in_training_asks_the_producer_for_its_engine(monkeypatch):
    from rl_reason import evaluate

    seen = []

    def fake_grade(engine, *a, **k):
        seen.append(engine)
        return SimpleNamespace(results=[])

    monkeypatch.setattr(evaluate, "generate_and_grade", fake_grade)
    monkeypatch.setattr(evaluate, "training_metrics", lambda s: {})
    monkeypatch.setattr(evaluate, "summarize", lambda *a: None)
    eval_engine = object()
    dist = SimpleNamespace(rank=0, world=1, sharded=False, gather_objects=lambda x: [x])
    cfg = SimpleNamespace(
        eval=SimpleNamespace(max_new_tokens=4), rollout=SimpleNamespace(max_new_tokens=4, stop=[])
    )
    trainer = SimpleNamespace(
        cfg=cfg,
        dist=dist,
        eval_records=[SimpleNamespace(fields={"answer": "1"})],
        engine=object(),
        producer=SimpleNamespace(eval_engine=lambda: eval_engine),
        _prompt_ids=lambda recs: [[1]],
        eval_scorer=None,
        scorer=None,
        tokenizer=None,
    )
    evaluate.evaluate_in_training(trainer)
    assert seen == [eval_engine]


def test_k1_with_several_training_processes_is_refused_in_one_line():
    from rl_reason.errors import ConfigError

    t = _fake_trainer(k=1)
    t.dist = SimpleNamespace(rank=0, world=2)
    with pytest.raises(ConfigError, match=r"^rollout.max_staleness >= 1 runs in one training process") as exc:
        producer_mod.make_producer(t)
    assert "\n" not in str(exc.value) and "max_staleness=0 with several processes" in str(exc.value)
    t.cfg.rollout.max_staleness = 0  # K = 0 is the synchronous producer, any number of processes
    assert isinstance(producer_mod.make_producer(t), producer_mod.SyncProducer)
