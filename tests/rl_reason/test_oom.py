"""Out of memory in the update (rl_reason/oom.py): the step runs again once with half the
micro-batch, says so in one line, and ends where a run without the error would."""

import logging

import pytest
import torch

from rl_reason import update

from .test_update import ADV, LENGTHS, fake_rollouts, make_trainer

pytestmark = pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")


def _raise_once(monkeypatch, name, exc):
    """Make ``update.<name>`` raise ``exc`` on its first call, then behave."""
    real = getattr(update, name)
    calls = []

    def hook(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(*a, **k)

    monkeypatch.setattr(update, name, hook)
    return calls


def _state(t):
    out = [p.detach().clone() for p in t.params]
    if t.critic is not None:
        out += [p.detach().clone() for p in t.critic.parameters()]
    return out


def _one_update(t):
    keep = torch.ones(len(LENGTHS), dtype=torch.bool)
    return t.update(fake_rollouts(t, LENGTHS), ADV, keep, step=1)[0]


@pytest.mark.parametrize(
    "exc",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), MemoryError()],
    ids=["cuda", "cpu"],
)
def test_oom_in_the_actor_step_halves_the_micro_batch_and_keeps_the_step(tmp_path, monkeypatch, caplog, exc):
    common = ["train.micro_batch_tokens=200", "train.lr=0.05"]
    clean = make_trainer(tmp_path, "clean", *common)
    want_stats = _one_update(clean)
    want = _state(clean)
    t = make_trainer(tmp_path, "oom", *common)
    calls = _raise_once(monkeypatch, "actor_step", exc)
    with caplog.at_level(logging.WARNING, logger="rl_reason"):
        stats = _one_update(t)
    assert len(calls) == 2  # raised once, then ran
    lines = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(lines) == 1 and "200 tokens" in lines[0] and "with 100" in lines[0]
    assert stats["update/oom_retries"] == 1.0
    assert t.learner.micro_batch_tokens == 100  # kept for the following steps
    assert stats["policy/micro_batches"] > want_stats["policy/micro_batches"]
    for x, y in zip(_state(t), want):  # the step was taken, once, as without the error
        assert torch.allclose(x, y, atol=1e-5)
    assert any(
        float((x - y).abs().max()) > 1e-3
        for x, y in zip(want, _state(make_trainer(tmp_path, "fresh", *common)))
    )


def test_oom_after_the_critic_stepped_puts_the_critic_back_before_the_retry(tmp_path, monkeypatch):
    """PPO steps the critic before the actor: the retry must not step it twice."""
    common = ["algorithm.name=ppo", "critic.lr=0.01", "train.micro_batch_tokens=200", "train.lr=0.05"]
    clean = make_trainer(tmp_path, "clean", *common)
    _one_update(clean)
    want = _state(clean)
    t = make_trainer(tmp_path, "oom", *common)
    critic_calls = []
    real_critic = update.critic_step
    monkeypatch.setattr(update, "critic_step", lambda *a, **k: critic_calls.append(1) or real_critic(*a, **k))
    _raise_once(monkeypatch, "actor_step", MemoryError())
    stats = _one_update(t)
    assert len(critic_calls) == 2 and stats["update/oom_retries"] == 1.0
    for x, y in zip(_state(t), want):
        assert torch.allclose(x, y, atol=1e-5)
    assert t.critic_scheduler.last_epoch == clean.critic_scheduler.last_epoch


def test_a_second_oom_is_raised_and_other_errors_are_not_retried(tmp_path, monkeypatch):
    t = make_trainer(tmp_path, "twice")

    def always(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(update, "actor_step", always)
    with pytest.raises(MemoryError):
        _one_update(t)
    calls = _raise_once(monkeypatch, "actor_step", RuntimeError("not memory"))
    with pytest.raises(RuntimeError, match="not memory"):
        _one_update(t)
    assert len(calls) == 1
