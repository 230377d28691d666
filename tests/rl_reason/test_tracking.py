"""tracking.py: metrics/rollout JSONL, resume truncation, console output, curves, wandb offline."""

import json
import time

import pytest

from rl_reason.config import LoggingConfig
from rl_reason.tracking import Tracker, plot_curves, read_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


def _cfg(**kw) -> LoggingConfig:
    base = dict(progress=False, plot=False, wandb=False)
    base.update(kw)
    return LoggingConfig(**base)


def _lines(path):
    return path.read_text().splitlines()


def _metrics(step, r=0.5):
    return {
        "reward/total/mean": r,
        "accuracy": r / 2,
        "completion/len_mean": 10.0 + step,
        "time/step_s": 1.25,
    }


def test_metrics_jsonl_exact_lines_and_rollouts(tmp_path):
    t = Tracker(tmp_path, _cfg(), total_steps=3, config_dict={})
    t.log(0, {"eval/accuracy": 0.25})
    t.log(1, {"reward/total/mean": 0.5, "accuracy": 0.0})
    assert _lines(tmp_path / "metrics.jsonl") == [  # flushed before close
        '{"step": 0, "eval/accuracy": 0.25}',
        '{"step": 1, "reward/total/mean": 0.5, "accuracy": 0.0}',
    ]
    t.log_rollouts(
        1, [{"step": 1, "prompt_id": "a", "completion": "7"}, {"prompt_id": "b", "completion": "é"}]
    )
    t.close()
    t.close()  # idempotent
    assert read_jsonl(tmp_path / "rollouts.jsonl") == [
        {"step": 1, "prompt_id": "a", "completion": "7"},
        {"step": 1, "prompt_id": "b", "completion": "é"},
    ]
    assert not (tmp_path / "curves.png").exists()  # plot=false


def test_numpy_and_torch_scalars_serialise(tmp_path):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    with Tracker(tmp_path, _cfg(), total_steps=1, config_dict={}) as t:
        t.log(1, {"a": np.float32(0.5), "b": torch.tensor(2.0), "c": np.int64(3)})
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 1, "a": 0.5, "b": 2.0, "c": 3}]


def test_rollouts_off(tmp_path):
    with Tracker(tmp_path, _cfg(log_rollouts=False), total_steps=1, config_dict={}) as t:
        t.log_rollouts(1, [{"step": 1}])
    assert not (tmp_path / "rollouts.jsonl").exists()


def test_resume_drops_rows_after_checkpoint_step(tmp_path):
    with Tracker(tmp_path, _cfg(), total_steps=5, config_dict={}) as t:
        for s in range(0, 5):
            t.log(s, {"x": s})
            t.log_rollouts(s, [{"step": s, "i": 0}, {"step": s, "i": 1}])
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "x"')  # torn line from a killed process
    # checkpoint at step 2: steps 3.. are re-logged by the resumed trainer
    with Tracker(tmp_path, _cfg(), total_steps=5, config_dict={}, start_step=2, state={}) as t:
        for s in range(3, 6):
            t.log(s, {"x": s})
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3, 4, 5]
    assert [r["step"] for r in read_jsonl(tmp_path / "rollouts.jsonl")] == [0, 0, 1, 1, 2, 2]
    # a fresh run (start_step 0) starts with empty files
    Tracker(tmp_path, _cfg(), total_steps=5, config_dict={}).close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    assert (tmp_path / "rollouts.jsonl").read_text() == ""


def test_plain_progress_lines_when_not_a_tty(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "1")
    monkeypatch.delenv("RL_REASON_PROGRESS", raising=False)  # the suite turns progress off
    with Tracker(tmp_path, _cfg(progress=True), total_steps=4, config_dict={}) as t:
        t.log(0, {"eval/accuracy": 0.125})
        t.log(1, _metrics(1))
        t.print("hello [not markup]")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "step 0/4  eval_acc 0.125",
        "step 1/4  reward 0.500  acc 0.250  len 11.0  1.25 s/step",
        "hello [not markup]",
    ]


def test_rich_bar_when_interactive(tmp_path, monkeypatch):
    import rl_reason.tracking as tracking

    monkeypatch.setattr(tracking, "_interactive", lambda: True)
    monkeypatch.delenv("RL_REASON_PROGRESS", raising=False)
    t = Tracker(tmp_path, _cfg(progress=True), total_steps=3, config_dict={}, start_step=1)
    assert t._bar is not None
    t.log(2, _metrics(2))
    task = t._bar.progress.tasks[0]
    assert task.completed == 2 and task.total == 3 and task.fields["reward"] == "0.500"
    assert task.fields["acc"] == "0.250" and task.fields["length"] == "12.0" and task.fields["sps"] == "1.25"
    t.print("a message")
    t.close()
    assert not t._bar.progress.live.is_started


def test_curves_png(tmp_path):
    with Tracker(tmp_path, _cfg(plot=True), total_steps=3, config_dict={}) as t:
        t.log(0, {"eval/accuracy": 0.1})
        for s in (1, 2, 3):
            t.log(s, _metrics(s, r=0.1 * s))
        t.log(3, {"eval/accuracy": 0.4})
    png = tmp_path / "curves.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG


def test_plot_curves_handles_missing_keys(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"step": 1, "other": 1}\n{"step": 2, "accuracy": null}\n')
    out = plot_curves(m, tmp_path / "sub" / "c.png")
    assert out.read_bytes()[:8] == PNG
    out = plot_curves(tmp_path / "missing.jsonl", tmp_path / "empty.png")
    assert out.read_bytes()[:8] == PNG


def test_wandb_offline_run_and_id_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    cfg = _cfg(wandb=True, wandb_mode="offline")
    run_dir = tmp_path / "run"
    t0 = time.time()
    t = Tracker(
        run_dir, cfg, total_steps=2, config_dict={"logging": {"run_name": "t"}, "train": {"steps": 2}}
    )
    t.log(1, _metrics(1))
    state = json.loads(json.dumps(t.state_dict()))
    t.close()
    assert state["wandb_id"]
    offline = sorted((run_dir / "wandb").glob(f"offline-run-*-{state['wandb_id']}"))
    assert offline and any(p.suffix == ".wandb" for p in offline[0].iterdir())
    # a resumed tracker continues the same wandb run
    t2 = Tracker(run_dir, cfg, total_steps=2, config_dict={}, start_step=1, state=state)
    assert t2.state_dict() == state and t2._wandb_run.id == state["wandb_id"]
    t2.log(2, _metrics(2))
    t2.close()
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    assert time.time() - t0 < 60
