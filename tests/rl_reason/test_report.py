"""`rl-reason report`: the HTML page built from a synthetic run directory (no model is trained)."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rl_reason.cli import main
from rl_reason.report import build_report

CONFIG = """\
model:
  name: tiny-random
algorithm:
  name: grpo
train:
  steps: 4
logging:
  run_name: synthetic_run
"""

SCRIPT = "<script>alert(1)</script>"
MATH_ERRORS = [1, 0, 2, 0]  # summed: 3
MATH_TIMEOUTS = [0, 1, 0, 1]  # summed: 2
FMT_ERRORS = [0, 0, 0, 5]  # summed: 5
ALL_CHARTS = ["reward", "accuracy", "length", "speed_path", "kl", "entropy", "clip_frac", "eval", "timings"]


def _metrics(with_kl: bool = True, extra: dict | None = None) -> list[dict]:
    rows = [{"step": 0, "eval/accuracy": 0.25, "eval/reward_mean": 0.3, "eval/len_mean": 10.0, "eval/n": 8.0}]
    for i, step in enumerate(range(1, 5)):
        row = {
            "step": step,
            "reward/math_answer/mean": 0.1 * step,
            "reward/math_answer/accuracy": 0.1 * step,
            "reward/math_answer/errors": float(MATH_ERRORS[i]),
            "reward/math_answer/timeouts": float(MATH_TIMEOUTS[i]),
            "reward/math_answer/seconds": 0.5,
            "reward/fmt/mean": 0.5,
            "reward/fmt/errors": float(FMT_ERRORS[i]),
            "reward/fmt/timeouts": 0.0,
            "reward/fmt/seconds": 0.25,
            "reward/total/mean": 0.1 * step + 0.05,
            "accuracy": 0.1 * step,
            "completion/len_mean": 20.0 + step,
            "completion/len_max": 30.0,
            "completion/truncated_frac": 0.25,
            "policy/entropy": 2.0 - 0.1 * step,
            "policy/clip_frac": 0.01,
            "policy/grad_norm": 1.0,
            "time/generate_s": 1.0,
            "time/score_s": 0.5,
            "time/update_s": 2.0,
            "time/step_s": 3.5,
            "throughput/tokens_per_s": 100.0,
            "policy/lr": 1e-5,
            **(extra or {}),
        }
        if with_kl:
            row["policy/kl"] = 0.01 * step
        if step == 4:
            row.update({"eval/accuracy": 0.75, "eval/reward_mean": 0.8, "eval/len_mean": 12.0, "eval/n": 8.0})
        rows.append(row)
    return rows


def _rollouts() -> list[dict]:
    rows = []
    for step in range(1, 5):
        for j in range(4):
            total = 0.1 * j + step
            text = f"step {step} sample {j}: the answer is \\boxed{{{j}}}"
            if step == 4 and j == 3:
                text = f"I will now inject {SCRIPT} and a control char \x1b here"
            rows.append(
                {
                    "step": step,
                    "prompt_id": f"train-{step}-{j // 2}",
                    "answer": "7",
                    "completion": text,
                    "tokens": 10 + j,
                    "finish_reason": "stop",
                    "rewards": {"math_answer": float(j == 3), "fmt": 0.1 * j},
                    "total": total,
                    "correct": j == 3,
                    "advantage": j - 1.5,
                    "in_update": True,
                }
            )
    return rows


def _make_run(root: Path, **kw) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG)
    (root / "run.json").write_text(json.dumps({"config_hash": "abc123", "recipe": "recipes/x.yaml"}))
    (root / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _metrics(**kw)) + '{"step": 5, "torn'
    )
    (root / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rollouts()))
    return root


def _imgs(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def _table_rows(fragment: str) -> list[list[str]]:
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", fragment, re.S):
        cells = re.findall(r"<t[dh]>(.*?)</t[dh]>", tr, re.S)
        rows.append([re.sub(r"<[^>]+>", "", c) for c in cells])
    return rows


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = _make_run(tmp_path_factory.mktemp("rep") / "run")
    result = build_report(run, samples_per_step=1, steps_sampled=3)
    return run, result, (run / "report.html").read_text(encoding="utf-8")


def test_report_sections_header_and_charts(full_report):
    run, result, page = full_report
    assert result.html_path == run / "report.html"
    assert "<h1>Run report: synthetic_run</h1>" in page
    for heading in (
        "<h2>Charts</h2>",
        "<h2>Best and worst completions</h2>",
        "<h2>Reward checker errors and timeouts</h2>",
        "<h2>Timings</h2>",
        "<h2>Run config</h2>",
    ):
        assert heading in page
    header = dict((r[0], r[1]) for r in _table_rows(page.split("<nav>")[0]))
    assert header["model"] == "tiny-random" and header["algorithm"] == "grpo"
    assert header["steps done"] == "4 of 4"
    assert header["held-out accuracy, first"] == "0.25 (step 0)"
    assert header["held-out accuracy, final"] == "0.75 (step 4)"
    assert header["held-out accuracy, best"] == "0.75 (step 4)"
    assert header["config hash"] == "abc123"

    # every chart embedded once as a PNG data URI, and written beside the page byte for byte
    imgs = _imgs(page)
    assert len(imgs) == len(ALL_CHARTS) and result.charts == ALL_CHARTS and result.skipped == []
    assert 'data-charts-expected="9"' in page
    assert sorted(p.name for p in (run / "report").iterdir()) == sorted(f"{c}.png" for c in ALL_CHARTS)
    for slug, b64 in zip(ALL_CHARTS, imgs):
        data = base64.b64decode(b64)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data == (run / "report" / f"{slug}.png").read_bytes()
    # config shown verbatim (escaped) in <pre>
    assert "<pre>model:\n  name: tiny-random\n" in _section(page, "config")


def test_model_output_is_escaped(full_report):
    _, _, page = full_report
    assert "I will now inject &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page
    assert page.count("<script") == 1  # the page's own chart counter, allowed by the CSP hash
    assert "Content-Security-Policy" in page and "script-src 'sha256-" in page
    assert "control char \\x1b here" in page and "\x1b" not in page


def test_best_and_worst_completions_of_sampled_steps(full_report):
    _, _, page = full_report
    samples = _section(page, "samples")
    # 3 of steps 1..4: first, middle, last
    assert re.findall(r'<h3 id="samples-step-(\d+)">', samples) == ["1", "3", "4"]
    step4 = samples.split('id="samples-step-4"')[1]
    best, worst = step4.split('class="sample worst"')
    assert "best 1" in best and "total <b>4.3</b>" in best and "prompt <b>train-4-1</b>" in best
    assert "gold answer <b>7</b>" in best and "&lt;script&gt;" in best
    assert ["reward", "1", "0.3"] in _table_rows(best)  # math_answer, fmt
    assert "worst 1" in worst and "total <b>4</b>" in worst and "step 4 sample 0" in worst
    assert "4 completions, mean total reward 4.15" in step4


def test_checker_error_and_timeout_counts_are_summed(full_report):
    _, _, page = full_report
    rows = _table_rows(_section(page, "checker-errors"))
    assert rows[0] == ["checker", "errors", "timeouts", "checking time (s)", "mean reward"]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert by_name["math_answer"][:3] == ["3", "2", "2"]
    assert by_name["fmt"][:3] == ["5", "0", "1"]
    assert 'class="num bad">3<' in page


def test_timings_summary(full_report):
    _, _, page = full_report
    rows = {r[0]: r[1:] for r in _table_rows(_section(page, "timings"))[1:]}
    assert rows["generate"] == ["1", "4", "28.6%"]
    assert rows["update"] == ["2", "8", "57.1%"]
    assert rows["whole step"] == ["3.5", "14", "100.0%"]
    assert "100 generated tokens/s" in page and "1400 tokens in 14 s" in page


def test_run_without_kl_renders_with_a_note(tmp_path):
    run = _make_run(tmp_path / "nokl", with_kl=False)
    result = build_report(run)
    page = (run / "report.html").read_text()
    assert result.skipped == ["kl"]
    assert len(_imgs(page)) == len(ALL_CHARTS) - 1
    assert "KL to the reference policy: skipped: no policy/kl in metrics.jsonl" in page
    assert not (run / "report" / "kl.png").exists()


def test_ppo_critic_chart_and_custom_out(tmp_path):
    run = _make_run(tmp_path / "ppo", extra={"critic/value_loss": 0.5, "critic/value_mean": 0.1})
    out = tmp_path / "elsewhere" / "ppo.html"
    result = build_report(run, out)
    assert result.html_path == out and result.png_dir == tmp_path / "elsewhere" / "ppo"
    assert result.charts[-1] == "critic"
    assert len(_imgs(out.read_text())) == len(ALL_CHARTS) + 1
    assert (result.png_dir / "critic.png").exists() and not (run / "report.html").exists()


def test_cli_writes_report(tmp_path, capsys):
    run = _make_run(tmp_path / "cli")
    assert main(["report", str(run), "--samples-per-step", "1", "--steps-sampled", "2"]) == 0
    assert f"report: {run / 'report.html'} (9 charts" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert re.findall(r'<h3 id="samples-step-(\d+)">', page) == ["1", "4"]


@pytest.mark.parametrize(
    "setup, args, needle",
    [
        ("missing", [], "does not exist; pass the run directory"),
        ("empty", [], "has no metrics.jsonl; is it a run directory made by rl-reason train?"),
        ("blank", [], "has no metric rows yet"),
        ("run", ["--steps-sampled", "0"], "--steps-sampled must be at least 1"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, setup, args, needle):
    target = tmp_path / "target"
    if setup == "empty":
        target.mkdir()
    elif setup == "blank":
        target.mkdir()
        (target / "metrics.jsonl").write_text("\n")
    elif setup == "run":
        _make_run(target)
    code = main(["report", str(target), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and (setup == "run" or str(target) in err)
    assert len(err.splitlines()) == 1, err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(full_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y chromium)")
    run, _, _ = full_report
    out = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            (run / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    # the page's own script counted the images the browser decoded (naturalWidth > 0)
    assert 'data-charts-expected="9"' in body
    assert 'data-charts-loaded="9"' in body, body
    assert dom.count("<script") == 1  # the completion's <script> stayed text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_speed_path_and_budget_curve(tmp_path):
    """Accuracy against mean length over training, and an eval's accuracy-vs-budget curve."""
    run = _make_run(tmp_path / "speed")
    ev = run / "evals" / "sweep"
    ev.mkdir(parents=True)
    rows = [{"budget": b, "variant": "adapter", "accuracy": a} for b, a in ((16, 0.2), (32, 0.5), (64, 0.7))]
    (ev / "eval.json").write_text(json.dumps({"accuracy": 0.7, "budgets": rows}))
    result = build_report(run)
    assert result.charts[-1] == "budgets" and "speed_path" in result.charts
    png = (run / "report" / "budgets.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "accuracy against token budget" in (run / "report.html").read_text()
    # an eval without budgets adds no curve, and the earlier PNG is removed
    (ev / "eval.json").write_text(json.dumps({"accuracy": 0.7}))
    assert "budgets" not in build_report(run).charts
    assert not (run / "report" / "budgets.png").exists()


def test_speed_path_reads_new_and_old_eval_length_names():
    from rl_reason.report import Metrics, _chart_speed_path

    chart = _chart_speed_path(Metrics([{"step": 1, "accuracy": 0.5}]))
    assert chart.png is None and "skipped" in chart.note
    chart = _chart_speed_path(Metrics([{"step": 1, "accuracy": 0.5, "completion/len_mean": 20.0}]))
    assert chart.png is not None
    for key in ("eval/tokens_mean", "eval/len_mean"):
        chart = _chart_speed_path(Metrics([{"step": 0, "eval/accuracy": 0.25, key: 9.0}]))
        assert chart.png is not None, key


def test_multi_turn_rollouts_show_each_turn_tool_output_and_time(tmp_path):
    run = _make_run(tmp_path / "run")
    rows = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    rows[-1]["turns"] = [
        {"role": "model", "text": "```python\nprint(6*7)\n```", "start": 0, "end": 9, "seconds": 0.0},
        {"role": "tool", "text": "\n```output\n42\n```\n", "start": 9, "end": 14, "seconds": 0.25},
        {
            "role": "tool",
            "text": f"{SCRIPT}",
            "start": 14,
            "end": 20,
            "seconds": 2.0,
            "error": True,
            "timed_out": True,
        },
        {"role": "model", "text": "so \\boxed{42}", "start": 20, "end": 24, "seconds": 0.0},
    ]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(run, samples_per_step=1, steps_sampled=3)
    page = (run / "report.html").read_text(encoding="utf-8")
    card = page.split('id="samples-step-4"')[1].split('class="sample worst"')[0]
    assert "turn 1 · model</p><pre>```python\nprint(6*7)\n```</pre>" in card
    assert 'turn 2 · tool · 0.25 s</p><pre class="tool">\n```output\n42\n```\n</pre>' in card
    assert "turn 3 · tool · 2 s · error · timed out" in card and SCRIPT not in page
    assert "turn 4 · model</p><pre>so \\boxed{42}</pre>" in card
