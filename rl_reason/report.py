"""``rl-reason report RUN_DIR``: one self-contained HTML page about a run.

The page is built from what the trainer leaves in the run directory (``metrics.jsonl``,
``rollouts.jsonl``, ``config.yaml``, ``run.json``): a header, charts per step, the best and
worst completions of a few sampled steps, reward-checker error and timeout counts, a timing
summary and the resolved config. Charts are PNGs drawn with matplotlib's Agg canvas, written
beside the page and also embedded in it as base64 data URIs, so the HTML file alone can be
copied or mailed anywhere.

Everything read from the run is HTML-escaped (completions are model output), and a
Content-Security-Policy lets only the page's own small inline script run.

Nothing heavy at import time: matplotlib and yaml are imported when a report is built.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from rl_reason.errors import ConfigError, RunDirError

__all__ = ["add_parser", "run", "build_report", "ReportResult"]

METRICS_FILE = "metrics.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"
CONFIG_FILE = "config.yaml"
RUN_META_FILE = "run.json"
DEFAULT_OUT = "report.html"
MAX_COMPLETION_CHARS = 20_000  # longer completions are cut in the page (the JSONL keeps all)


# --------------------------------------------------------------------------- CLI


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.html: charts, best/worst completions, errors, timings, config",
    )
    p.add_argument("run_dir", help="a run directory written by rl-reason train")
    p.add_argument("--out", default=None, help=f"HTML file to write (default: RUN_DIR/{DEFAULT_OUT})")
    p.add_argument(
        "--samples-per-step",
        type=int,
        default=2,
        metavar="N",
        help="completions shown from the top and from the bottom of each sampled step (default 2)",
    )
    p.add_argument(
        "--steps-sampled",
        type=int,
        default=3,
        metavar="K",
        help="steps whose completions are shown, spread from first to last (default 3)",
    )
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="DIR",
        help="an eval output dir run with --budgets: adds its accuracy-vs-budget curve (repeatable; "
        "RUN_DIR/evals/*/ are read too)",
    )
    return p


def run(args) -> int:
    for flag, value in (
        ("--samples-per-step", args.samples_per_step),
        ("--steps-sampled", args.steps_sampled),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1 (got {value})")
    result = build_report(
        args.run_dir,
        out=args.out,
        samples_per_step=args.samples_per_step,
        steps_sampled=args.steps_sampled,
        evals=args.eval,
    )
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    n = len(result.charts)
    print(f"report: {result.html_path} ({n} chart{'' if n == 1 else 's'}{skipped}; PNGs in {result.png_dir})")
    return 0


# --------------------------------------------------------------------------- reading the run


def _num(value: Any) -> Optional[float]:
    """A finite number as float, else None (bools, strings, NaN and inf are not metrics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iter_jsonl(path: Path) -> Iterator[dict]:
    """tracking.iter_jsonl, with an unreadable file as a one-line RunDirError."""
    from rl_reason.tracking import iter_jsonl

    try:
        yield from iter_jsonl(path)
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _load_metrics(run_dir: Path) -> list[dict]:
    if not run_dir.exists():
        raise RunDirError(
            f"{run_dir} does not exist; pass the run directory that rl-reason train wrote (its --run-dir)"
        )
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a directory; pass the run directory that rl-reason train wrote")
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {METRICS_FILE}; is it a run directory made by rl-reason train?")
    by_step: dict[int, dict] = {}
    for row in _iter_jsonl(path):
        step = row.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            by_step[step] = row  # a repeated step (should not happen) keeps its last row
    if not by_step:
        raise RunDirError(
            f"{path} has no metric rows yet; report a run after its first step (or evaluation) is logged"
        )
    return [by_step[s] for s in sorted(by_step)]


def _load_config(run_dir: Path) -> tuple[Optional[str], dict]:
    """(raw text or None, parsed mapping or {})."""
    path = run_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, {}
    try:
        import yaml

        parsed = yaml.safe_load(text)
    except Exception:
        parsed = None
    return text, parsed if isinstance(parsed, dict) else {}


def _load_run_meta(run_dir: Path) -> dict:
    try:
        meta = json.loads((run_dir / RUN_META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _cfg_get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class Metrics:
    """Per-step metric rows with helpers to pull series and key families out of them."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.keys: set[str] = set()
        for r in rows:
            self.keys.update(k for k in r if k != "step")
        # training rows: those with anything besides evaluation keys (step 0 holds only eval/*)
        self.train_rows = [r for r in rows if any(k != "step" and not k.startswith("eval/") for k in r)]

    def series(self, key: str, rows: Optional[list[dict]] = None) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for r in self.rows if rows is None else rows:
            v = _num(r.get(key))
            if v is not None:
                xs.append(r["step"])
                ys.append(v)
        return xs, ys

    def has(self, key: str) -> bool:
        return bool(self.series(key)[0])

    def checkers(self) -> list[str]:
        """Checker aliases seen in ``reward/<alias>/<stat>`` keys, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                parts = k.split("/")
                if len(parts) == 3 and parts[0] == "reward" and parts[1] != "total":
                    seen.setdefault(parts[1], None)
        return list(seen)

    def family(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                if k.startswith(prefix):
                    seen.setdefault(k, None)
        return list(seen)

    def total(self, key: str) -> float:
        return sum(self.series(key)[1])

    def mean(self, key: str, rows: Optional[list[dict]] = None) -> Optional[float]:
        ys = self.series(key, rows)[1]
        return sum(ys) / len(ys) if ys else None


# --------------------------------------------------------------------------- rollouts


@dataclass
class StepSample:
    """The best and worst completions of one step, with the step's count and mean total."""

    step: int
    count: int
    mean_total: Optional[float]
    best: list[dict]
    worst: list[dict]


def _total(row: dict) -> float:
    v = _num(row.get("total"))
    return v if v is not None else -math.inf


def _sample_rollouts(path: Path, samples_per_step: int, steps_sampled: int) -> list[StepSample]:
    """Stream rollouts.jsonl once, keeping only each step's top and bottom rows by total reward,
    then pick ``steps_sampled`` steps spread evenly from the first to the last."""
    if not path.is_file():
        return []
    n = samples_per_step
    kept: dict[int, list[tuple[float, int, dict]]] = {}
    counts: dict[int, int] = {}
    sums: dict[int, list[float]] = {}
    for i, row in enumerate(_iter_jsonl(path)):
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        counts[step] = counts.get(step, 0) + 1
        t = _num(row.get("total"))
        if t is not None:
            acc = sums.setdefault(step, [0.0, 0.0])
            acc[0] += t
            acc[1] += 1
        bucket = kept.setdefault(step, [])
        bucket.append((_total(row), i, row))
        if len(bucket) > 4 * n:  # trim to the n best and n worst (ties keep the earliest)
            bucket.sort(key=lambda e: (-e[0], e[1]))
            kept[step] = bucket[:n] + bucket[-n:]
    steps = sorted(kept)
    if not steps:
        return []
    if steps_sampled >= len(steps):
        chosen = steps
    elif steps_sampled == 1:
        chosen = [steps[-1]]
    else:
        idx = sorted({round(i * (len(steps) - 1) / (steps_sampled - 1)) for i in range(steps_sampled)})
        chosen = [steps[i] for i in idx]
    out = []
    for s in chosen:
        ranked = sorted(kept[s], key=lambda e: (-e[0], e[1]))
        best = ranked[:n]
        worst = list(reversed(ranked[n:]))[:n]  # lowest first; never repeats a best row
        acc = sums.get(s)
        out.append(
            StepSample(
                step=s,
                count=counts[s],
                mean_total=acc[0] / acc[1] if acc and acc[1] else None,
                best=[e[2] for e in best],
                worst=[e[2] for e in worst],
            )
        )
    return out


# --------------------------------------------------------------------------- charts


@dataclass
class Chart:
    slug: str  # file stem of the PNG
    title: str
    png: Optional[bytes] = None  # None: skipped
    note: str = ""  # why it was skipped


def _label(text: str) -> str:
    """A legend/title label matplotlib will not read as mathtext."""
    return text.replace("$", r"\$")


def _new_figure(size=(7.0, 3.4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas without touching pyplot's global backend
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _style(ax, title: str, ylabel: str = "") -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(_label(title))
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ylabel:
        ax.set_ylabel(_label(ylabel))
    ax.grid(True, alpha=0.3)


def _plot(ax, m: Metrics, key: str, label: Optional[str] = None, **kw) -> bool:
    xs, ys = m.series(key)
    if not xs:
        return False
    kw.setdefault("marker", "." if len(xs) < 50 else None)
    ax.plot(xs, ys, label=_label(label or key), **kw)
    return True


def _lines_chart(m: Metrics, slug: str, title: str, keys: list[tuple[str, dict]], ylabel: str = "") -> Chart:
    """One axis, one line per present key; skipped with a note when none is present."""
    present = [(k, kw) for k, kw in keys if m.has(k)]
    if not present:
        names = ", ".join(k for k, _ in keys) or f"{slug} metrics"
        return Chart(slug, title, note=f"skipped: no {names} in {METRICS_FILE}")
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for k, kw in present:
        _plot(ax, m, k, **kw)
    _style(ax, title, ylabel)
    if len(present) > 1:
        ax.legend(loc="best", fontsize="small")
    return Chart(slug, title, _png(fig))


def _chart_reward(m: Metrics) -> Chart:
    keys = [("reward/total/mean", {"label": "total", "linewidth": 2.2, "color": "black"})]
    keys += [(f"reward/{c}/mean", {"label": c}) for c in m.checkers()]
    return _lines_chart(m, "reward", "reward (mean per step)", keys)


def _chart_accuracy(m: Metrics) -> Chart:
    keys = [("accuracy", {"label": "train batch", "linewidth": 2.2, "color": "black"})]
    keys += [(f"reward/{c}/accuracy", {"label": c}) for c in m.checkers()]
    keys += [
        ("eval/accuracy", {"label": "held-out (eval)", "linestyle": "--", "marker": "o", "color": "tab:red"})
    ]
    return _lines_chart(m, "accuracy", "accuracy", keys)


def _chart_length(m: Metrics) -> Chart:
    title = "completion length (tokens)"
    if not (m.has("completion/len_mean") or m.has("completion/len_max")):
        note = f"skipped: no completion/len_mean or completion/len_max in {METRICS_FILE}"
        return Chart("length", title, note=note)
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    _plot(ax, m, "completion/len_mean", label="mean")
    _plot(ax, m, "completion/len_max", label="max")
    _style(ax, title, "tokens")
    handles, labels = ax.get_legend_handles_labels()
    if m.has("completion/truncated_frac"):
        ax2 = ax.twinx()
        _plot(
            ax2,
            m,
            "completion/truncated_frac",
            label="truncated fraction (right)",
            color="gray",
            linestyle=":",
        )
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_ylabel("truncated fraction")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize="small")
    return Chart("length", title, _png(fig))


# --------------------------------------------------------------------------- answer speed (docs/SPEED.md)


def _points(rows, x_keys: Sequence[str], y_key: str) -> list[tuple[float, float, int]]:
    out = []
    for r in rows:
        x = next((_num(r.get(k)) for k in x_keys if _num(r.get(k)) is not None), None)
        y = _num(r.get(y_key))
        if x is not None and y is not None:
            out.append((x, y, r["step"]))
    return out


def _chart_speed_path(m: Metrics) -> Chart:
    """Accuracy against mean completion length over training (training batches and evals)."""
    title = "accuracy against mean completion length (the run's path)"
    train = _points(m.train_rows, ["completion/len_mean"], "accuracy")
    # eval/tokens_mean; runs logged before it was named so: eval/len_mean
    evals = _points(m.rows, ["eval/tokens_mean", "eval/len_mean"], "eval/accuracy")
    if not train and not evals:
        note = f"skipped: no accuracy with completion/len_mean (or eval/*) in {METRICS_FILE}"
        return Chart("speed_path", title, note=note)
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    styles = (
        (train, "train batch", {"color": "tab:blue", "marker": "."}),
        (evals, "held-out (eval)", {"color": "tab:red", "marker": "o", "linestyle": "--"}),
    )
    for pts, label, style in styles:
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, label=label, alpha=0.8, **style)
        ax.annotate(f"step {pts[0][2]}", (xs[0], ys[0]), fontsize="x-small")
        ax.annotate(f"step {pts[-1][2]}", (xs[-1], ys[-1]), fontsize="x-small")
    _style(ax, title, "accuracy")
    ax.set_xlabel("mean completion length (tokens)")
    ax.legend(loc="best", fontsize="small")
    return Chart("speed_path", title, _png(fig))


def _budget_figure(rows: list[dict]):
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = sorted((r["budget"], r["accuracy"]) for r in rows if r["variant"] == variant)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_label(variant))
    _style(ax, "accuracy against token budget", "accuracy")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("token budget stated in the prompt")
    ax.legend(loc="best", fontsize="small")
    return fig


def budget_curve_png(rows: list[dict]) -> bytes:
    """PNG of accuracy against budget, one line per variant (rows of eval --budgets)."""
    return _png(_budget_figure(rows))


def _chart_budgets(eval_files: Sequence[Path]) -> Optional[Chart]:
    """The accuracy-vs-budget curve of evaluations run with --budgets (None when there is none)."""
    rows = []
    for path in eval_files:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for r in data.get("budgets") or []:
            if _num(r.get("budget")) is None or _num(r.get("accuracy")) is None:
                continue
            variant = r.get("variant", "model")
            if len(eval_files) > 1:
                variant = f"{Path(path).parent.name}: {variant}"
            rows.append(dict(r, variant=variant))
    if not rows:
        return None
    return Chart("budgets", "accuracy against token budget (eval --budgets)", _png(_budget_figure(rows)))


def _chart_eval(m: Metrics) -> Chart:
    title = "evaluation (held-out) over time"
    from rl_reason.evaluate import LEGACY_ALIASES

    # counts are not plotted, nor an old name beside the new one it repeats
    skip = {"eval/n_prompts", "eval/n_samples", "eval/n", "eval/accuracy_per_1k_tokens"}  # not 0..1
    skip |= {old for old, new in LEGACY_ALIASES.items() if m.has(f"eval/{new}")}
    keys = [k for k in m.family("eval/") if k not in skip and m.has(k)]
    if not keys:
        note = f"skipped: no eval/* metrics in {METRICS_FILE} (was evaluation turned off?)"
        return Chart("eval", title, note=note)
    lengths = ("eval/len", "eval/tokens")
    left = [k for k in keys if not k.startswith(lengths)]
    right = [k for k in keys if k.startswith(lengths)]
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for k in left:
        _plot(ax, m, k, marker="o")
    _style(ax, title)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        target = ax.twinx() if left else ax
        for k in right:
            _plot(
                target,
                m,
                k,
                label=f"{k} (right)" if left else k,
                marker="s",
                linestyle="--",
                color="tab:gray",
            )
        target.set_ylabel("tokens")
        if target is not ax:
            h2, l2 = target.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        else:
            handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="best", fontsize="small")
    return Chart("eval", title, _png(fig))


def _phase_keys(m: Metrics) -> list[str]:
    return [k for k in m.family("time/") if k != "time/step_s" and m.has(k)]


def _chart_timings(m: Metrics) -> Chart:
    title = "time per step by phase (s)"
    phases = _phase_keys(m)
    rows = [r for r in m.train_rows if any(_num(r.get(k)) is not None for k in phases + ["time/step_s"])]
    if not rows:
        return Chart("timings", title, note=f"skipped: no time/* metrics in {METRICS_FILE}")
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    xs = [r["step"] for r in rows]
    if phases:
        stacks = [[_num(r.get(k)) or 0.0 for r in rows] for k in phases]
        labels = [_label(k[len("time/") :].removesuffix("_s")) for k in phases]
        if len(xs) > 1:
            ax.stackplot(xs, stacks, labels=labels, alpha=0.8)
        else:  # one step: a stacked bar reads better than a zero-width area
            bottom = 0.0
            for ys, lab in zip(stacks, labels):
                ax.bar(xs, ys, bottom=bottom, label=lab, width=0.6)
                bottom += ys[0]
    _plot(ax, m, "time/step_s", label="whole step", color="black", linewidth=1.5)
    _style(ax, title, "seconds")
    ax.legend(loc="upper left", fontsize="small")
    return Chart("timings", title, _png(fig))


def _chart_critic(m: Metrics) -> Optional[Chart]:
    keys = m.family("critic/")
    if not keys:
        return None  # not a PPO run: nothing to say
    return _lines_chart(m, "critic", "critic (PPO)", [(k, {}) for k in keys])


def _build_charts(m: Metrics, algorithm: Optional[str], eval_files=()) -> list[Chart]:
    charts = [
        _chart_reward(m),
        _chart_accuracy(m),
        _chart_length(m),
        _chart_speed_path(m),
        _lines_chart(m, "kl", "KL to the reference policy", [("policy/kl", {})]),
        _lines_chart(m, "entropy", "policy entropy (nats/token)", [("policy/entropy", {})]),
        _lines_chart(m, "clip_frac", "clipped fraction of tokens", [("policy/clip_frac", {})]),
        _chart_eval(m),
        _chart_timings(m),
    ]
    kl = next(c for c in charts if c.slug == "kl")
    if kl.png is None:
        kl.note += " (the trainer logs it only when algorithm.kl_coef > 0)"
    critic = _chart_critic(m)
    if critic is not None:
        charts.append(critic)
    elif (algorithm or "").lower() == "ppo":
        charts.append(Chart("critic", "critic (PPO)", note=f"skipped: no critic/* metrics in {METRICS_FILE}"))
    budgets = _chart_budgets(list(eval_files))
    if budgets is not None:
        charts.append(budgets)
    return charts


# --------------------------------------------------------------------------- HTML pieces

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _esc(value: Any) -> str:
    """Text from the run, safe inside HTML text or a quoted attribute.

    Control characters (model output is full of them early in training) are shown as
    ``\\xNN`` and unpaired surrogates as U+FFFD, so the page is valid UTF-8 and visible.
    """
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    text = _CONTROL.sub(lambda mt: f"\\x{ord(mt.group()):02x}", text)
    return html.escape(text, quote=True)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _fmt(value: Any, digits: int = 4) -> str:
    """Numbers compactly (integral values without decimals); anything else escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = _num(value)
    if v is None:
        return _esc(value)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.{digits}g}"


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """``head`` and cells are already-escaped HTML."""
    c = f' class="{cls}"' if cls else ""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table{c}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right} .bad{color:#b00;font-weight:bold}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
figure{margin:0} figure img{max-width:100%;border:1px solid #ddd}
.skip{color:#777;font-style:italic;margin:.2em 0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;white-space:pre-wrap;word-break:break-word;max-height:30em;overflow:auto}
.sample{border:1px solid #ddd;border-radius:4px;padding:.4em .8em;margin:.6em 0}
.sample.best{border-left:4px solid #2a2} .sample.worst{border-left:4px solid #c33}
pre.tool{background:#eef4ff;border-color:#9ab} .turn{margin:.2em 0 0;font-size:.85em;color:#555}
.meta{font-size:.9em;color:#444} nav a{margin-right:1em}
"""

# Counts the charts the browser decoded (naturalWidth > 0) into <body data-charts-loaded>,
# so a headless browser's DOM dump shows whether the embedded images are valid.
_SCRIPT = (
    'window.addEventListener("load",function(){var n=0,im=document.querySelectorAll("img.chart");'
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}"
    'document.body.setAttribute("data-charts-loaded",String(n));});'
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


# --------------------------------------------------------------------------- sections


def _header(run_dir: Path, cfg: dict, meta: dict, m: Metrics) -> str:
    name = _cfg_get(cfg, "logging.run_name") or run_dir.name
    planned = _cfg_get(cfg, "train.steps")
    steps_done = max((r["step"] for r in m.train_rows), default=0)
    ex, ey = m.series("eval/accuracy")
    rows = [
        ("run dir", _esc(run_dir)),
        ("model", _esc(_cfg_get(cfg, "model.name") or "unknown")),
        ("algorithm", _esc(_cfg_get(cfg, "algorithm.name") or "unknown")),
        ("steps done", f"{steps_done}" + (f" of {_fmt(planned)}" if _num(planned) is not None else "")),
    ]
    if ey:
        best_i = max(range(len(ey)), key=lambda i: (ey[i], -ex[i]))
        rows.append(("held-out accuracy, first", f"{_fmt(ey[0])} (step {ex[0]})"))
        rows.append(("held-out accuracy, final", f"{_fmt(ey[-1])} (step {ex[-1]})"))
        rows.append(("held-out accuracy, best", f"{_fmt(ey[best_i])} (step {ex[best_i]})"))
    else:
        rows.append(("held-out accuracy", "not evaluated (no eval/accuracy in metrics.jsonl)"))
    xs, ys = m.series("reward/total/mean")
    if ys:
        rows.append(("train reward, final", f"{_fmt(ys[-1])} (step {xs[-1]})"))
    for label, key in (("recipe", "recipe"), ("config hash", "config_hash")):
        if meta.get(key):
            rows.append((label, _esc(meta[key])))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows.append(("report written", now))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (
        f'<header id="header"><h1>Run report: {_esc(name)}</h1>'
        f'<table class="summary"><tbody>{body}</tbody></table></header>'
    )


def _charts_section(charts: list[Chart]) -> str:
    figs, notes = [], []
    for c in charts:
        if c.png is None:
            notes.append(f'<p class="skip" data-chart="{c.slug}">{_esc(c.title)}: {_esc(c.note)}</p>')
            continue
        b64 = base64.b64encode(c.png).decode("ascii")
        figs.append(
            f'<figure><img src="data:image/png;base64,{b64}" class="chart" alt="{_esc(c.title)}" '
            f'data-chart="{c.slug}"></figure>'
        )
    return (
        '<section id="charts"><h2>Charts</h2>'
        f'<div class="charts">{"".join(figs)}</div>{"".join(notes)}</section>'
    )


def _sample_card(row: dict, kind: str, rank: int) -> str:
    rewards = row.get("rewards")
    rtable = ""
    if isinstance(rewards, dict) and rewards:  # one column per checker: compact, and reads across
        rtable = _table(
            ["checker"] + [_esc(k) for k in rewards],
            [["<b>reward</b>"] + [_fmt(v) for v in rewards.values()]],
            "rewards",
        )
    text = row.get("completion")
    text = "" if text is None else str(text)
    cut = ""
    if len(text) > MAX_COMPLETION_CHARS:
        cut = f'<p class="meta">… {len(text) - MAX_COMPLETION_CHARS} more characters in {ROLLOUTS_FILE}</p>'
        text = text[:MAX_COMPLETION_CHARS]
    meta = (
        f"prompt <b>{_esc(row.get('prompt_id', 'n/a'))}</b> · gold answer <b>{_fmt(row.get('answer'))}</b>"
        f" · total <b>{_fmt(row.get('total'))}</b> · correct {_fmt(row.get('correct'))}"
        f" · advantage {_fmt(row.get('advantage'))} · in update {_fmt(row.get('in_update'))}"
        f" · {_fmt(row.get('tokens'))} tokens · finish {_fmt(row.get('finish_reason'))}"
    )
    body = _turns_html(row["turns"]) if isinstance(row.get("turns"), list) and row["turns"] else ""
    if not body:
        body = f"<pre>{_esc(text)}</pre>{cut}"
    return f'<div class="sample {kind}"><p class="meta">{kind} {rank} · {meta}</p>{rtable}{body}</div>'


def _turns_html(turns: list) -> str:
    """A multi-turn rollout (rollout.tools) turn by turn: the model's text, and each tool's
    output with the time it took and whether it failed, timed out or was cut."""
    parts, left = [], MAX_COMPLETION_CHARS
    for k, t in enumerate(turns):
        if not isinstance(t, dict):
            continue
        text = str(t.get("text", ""))
        more = ""
        if len(text) > left:
            more = f" · {len(text) - left} more characters in {ROLLOUTS_FILE}"
            text = text[: max(left, 0)]
        left -= len(text)
        if t.get("role") == "tool":
            flags = [f for f in ("error", "timed_out", "cut") if t.get(f)]
            label = f"tool · {_fmt(t.get('seconds'))} s" + "".join(f" · {f.replace('_', ' ')}" for f in flags)
            cls = ' class="tool"'
        else:
            label, cls = "model", ""
        parts.append(
            f'<p class="turn">turn {k + 1} · {_esc(label)}{_esc(more)}</p><pre{cls}>{_esc(text)}</pre>'
        )
    return "".join(parts)


def _samples_section(samples: list[StepSample], has_file: bool, n: int) -> str:
    head = '<section id="samples"><h2>Best and worst completions</h2>'
    if not samples:
        why = "rollouts.jsonl has no rows" if has_file else "no rollouts.jsonl (logging.log_rollouts off?)"
        return head + f'<p class="skip">{why}</p></section>'
    parts = [
        head,
        f'<p class="meta">Up to {n} highest and {n} lowest completions by total reward, '
        f"from {len(samples)} step(s) spread over the run.</p>",
    ]
    for s in samples:
        parts.append(
            f'<h3 id="samples-step-{s.step}">step {s.step}</h3>'
            f'<p class="meta">{s.count} completions, mean total reward {_fmt(s.mean_total)}</p>'
        )
        parts.extend(_sample_card(r, "best", i + 1) for i, r in enumerate(s.best))
        parts.extend(_sample_card(r, "worst", i + 1) for i, r in enumerate(s.worst))
    parts.append("</section>")
    return "".join(parts)


def _errors_section(m: Metrics) -> str:
    head = '<section id="checker-errors"><h2>Reward checker errors and timeouts</h2>'
    checkers = m.checkers()
    if not checkers:
        return head + '<p class="skip">no reward/&lt;checker&gt;/* metrics in metrics.jsonl</p></section>'

    def cell(v: float) -> str:
        cls = "num bad" if v > 0 else "num"
        return f'<span class="{cls}">{_fmt(v)}</span>'

    rows = []
    for c in checkers:
        errors = m.total(f"reward/{c}/errors")
        timeouts = m.total(f"reward/{c}/timeouts")
        secs = m.total(f"reward/{c}/seconds")
        mean = m.mean(f"reward/{c}/mean")
        rows.append([_esc(c), cell(errors), cell(timeouts), _fmt(secs), _fmt(mean)])
    table = _table(["checker", "errors", "timeouts", "checking time (s)", "mean reward"], rows, "errors")
    return (
        head
        + f'<p class="meta">Summed over the {len(m.train_rows)} logged training steps.</p>'
        + table
        + "</section>"
    )


def _timings_section(m: Metrics) -> str:
    head = '<section id="timings"><h2>Timings</h2>'
    rows_src = m.train_rows
    keys = _phase_keys(m) + (["time/step_s"] if m.has("time/step_s") else [])
    if not keys:
        return head + '<p class="skip">no time/* metrics in metrics.jsonl</p></section>'
    step_mean = m.mean("time/step_s", rows_src)
    rows = []
    for k in keys:
        mean = m.mean(k, rows_src)
        total = sum(m.series(k, rows_src)[1])
        share = f"{100 * mean / step_mean:.1f}%" if mean is not None and step_mean else "n/a"
        name = "whole step" if k == "time/step_s" else k[len("time/") :].removesuffix("_s")
        rows.append([_esc(name), _fmt(mean), _fmt(total), share])
    parts = [head, _table(["phase", "mean s/step", "total s", "share of step"], rows, "timings")]
    tps = m.mean("throughput/tokens_per_s", rows_src)
    if tps is not None:
        line = f"throughput: {_fmt(tps)} generated tokens/s (mean over steps)"
        both = [
            r
            for r in rows_src
            if _num(r.get("throughput/tokens_per_s")) is not None and _num(r.get("time/step_s"))
        ]
        if both:
            tokens = sum(_num(r["throughput/tokens_per_s"]) * _num(r["time/step_s"]) for r in both)
            seconds = sum(_num(r["time/step_s"]) for r in both)
            line += f", {_fmt(tokens / seconds)} overall ({_fmt(tokens)} tokens in {_fmt(seconds)} s)"
        parts.append(f'<p class="meta">{line}</p>')
    parts.append("</section>")
    return "".join(parts)


def _config_section(text: Optional[str]) -> str:
    head = '<section id="config"><h2>Run config</h2>'
    if text is None:
        return head + f'<p class="skip">no {CONFIG_FILE} in the run dir</p></section>'
    return head + f'<p class="meta">{CONFIG_FILE}, the resolved recipe</p><pre>{_esc(text)}</pre></section>'


# --------------------------------------------------------------------------- build


@dataclass
class ReportResult:
    html_path: Path
    png_dir: Path
    charts: list[str]  # slugs drawn (embedded and written as PNG)
    skipped: list[str]  # slugs skipped for lack of metrics


def _png_dir_for(out: Path) -> Path:
    return out.with_suffix("") if out.suffix else out.with_name(out.name + "_charts")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise RunDirError(
            f"cannot write {path}: {exc.strerror or exc}; pass --out to a writable place"
        ) from exc


_CHART_SLUGS = (
    "reward",
    "accuracy",
    "length",
    "speed_path",
    "kl",
    "entropy",
    "clip_frac",
    "eval",
    "timings",
    "critic",
    "budgets",
)


def build_report(
    run_dir: Union[str, Path],
    out: Union[str, Path, None] = None,
    *,
    samples_per_step: int = 2,
    steps_sampled: int = 3,
    evals: Sequence[Union[str, Path]] = (),
) -> ReportResult:
    """Write the HTML report (default ``RUN_DIR/report.html``) and its PNGs (``RUN_DIR/report/``).

    ``evals``: eval output dirs (or eval.json files) whose ``--budgets`` tables are drawn as an
    accuracy-vs-budget curve; ``RUN_DIR/evals/*/eval.json`` are read too."""
    run_dir = Path(run_dir)
    metrics = Metrics(_load_metrics(run_dir))
    config_text, cfg = _load_config(run_dir)
    meta = _load_run_meta(run_dir)
    out_path = Path(out) if out is not None else run_dir / DEFAULT_OUT
    png_dir = _png_dir_for(out_path)

    eval_files = sorted(run_dir.glob("evals/*/eval.json"))
    eval_files += [Path(e) / "eval.json" if Path(e).is_dir() else Path(e) for e in evals]
    charts = _build_charts(metrics, _cfg_get(cfg, "algorithm.name"), eval_files)
    rollouts = run_dir / ROLLOUTS_FILE
    samples = _sample_rollouts(rollouts, samples_per_step, steps_sampled)
    drawn = [c for c in charts if c.png is not None]

    title = _cfg_get(cfg, "logging.run_name") or run_dir.name
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("charts", "charts"),
            ("samples", "completions"),
            ("checker-errors", "checker errors"),
            ("timings", "timings"),
            ("config", "config"),
        )
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>rl-reason report: {_esc(title)}</title><style>{_CSS}</style>"
        f"<script>{_SCRIPT}</script></head>\n"
        f'<body data-charts-expected="{len(drawn)}">'
        + _header(run_dir, cfg, meta, metrics)
        + f"<nav>{nav}</nav>\n"
        + _charts_section(charts)
        + "\n"
        + _samples_section(samples, rollouts.is_file(), samples_per_step)
        + "\n"
        + _errors_section(metrics)
        + "\n"
        + _timings_section(metrics)
        + "\n"
        + _config_section(config_text)
        + "\n</body></html>\n"
    )

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        png_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create {png_dir}: {exc.strerror or exc}; pass --out to a writable place"
        ) from exc
    for slug in _CHART_SLUGS:  # a chart drawn by an earlier report but absent now must not linger
        stale = png_dir / f"{slug}.png"
        if stale.exists() and not any(c.slug == slug for c in drawn):
            stale.unlink()
    for c in drawn:
        _write_atomic(png_dir / f"{c.slug}.png", c.png)
    _write_atomic(out_path, page.encode("utf-8"))
    return ReportResult(
        html_path=out_path,
        png_dir=png_dir,
        charts=[c.slug for c in drawn],
        skipped=[c.slug for c in charts if c.png is None],
    )
