"""Metric sinks: ``metrics.jsonl`` (always), a console progress display, wandb (optional),
the rollout log, and the reward / accuracy / length curves.

One ``Tracker`` per run, on the main process only. Every ``log`` call appends one JSON line
and flushes it, so a killed run loses at most the step in flight. On resume the files are cut
back to the checkpoint's step before anything new is written, so no step appears twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from rl_reason.config import LoggingConfig
from rl_reason.errors import RLReasonError

__all__ = ["Tracker", "iter_jsonl", "plot_curves", "read_jsonl"]

METRICS_FILE = "metrics.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"
CURVES_FILE = "curves.png"


# --------------------------------------------------------------------------- JSONL helpers


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    if hasattr(obj, "__float__"):
        return float(obj)
    return str(obj)


def _dumps(row: dict) -> str:
    # a non-finite number is written as null: NaN / Infinity are not JSON (docs/ARCHITECTURE.md)
    from rl_reason.guards import json_safe

    return json.dumps(json_safe(_plain(row)), ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    """Containers of JSON types only (numpy / torch values turned into numbers or lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return _plain(_json_default(value))


def iter_jsonl(path: Union[str, Path]) -> Iterator[dict]:
    """Rows of a JSONL file, streamed; torn or foreign lines (a run killed mid-write) are skipped."""
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row


def read_jsonl(path: Union[str, Path]) -> list[dict]:
    """All rows of a JSONL file ([] when it does not exist)."""
    return list(iter_jsonl(path)) if Path(path).exists() else []


def _truncate_after(path: Path, last_step: Optional[int]) -> None:
    """Keep only whole rows with ``step <= last_step`` (none when last_step is None)."""
    if not path.exists():
        return
    keep = []
    if last_step is not None:
        keep = [r for r in read_jsonl(path) if isinstance(r.get("step"), int) and r["step"] <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in keep:
            f.write(_dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- console


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return format(value, spec)
    return "-"


def _attention(m: dict) -> list[str]:
    """What the progress line must say beyond the numbers: a skipped step, timeouts."""
    out = []
    if m.get("guard/bad_step"):
        out.append("SKIPPED (see warning)")
    n = m.get("count/samples")
    if n:
        for key, value in m.items():
            if key.startswith("reward/") and key.endswith("/timeouts") and value > n / 2:
                alias = key[len("reward/") : -len("/timeouts")]
                out.append(f"TIMEOUTS {alias} {int(value)}/{int(n)} checks")
    return out


def _summary_line(step: int, total: int, m: dict) -> str:
    parts = [f"step {step}/{total}"]
    if "reward/total/mean" in m:
        parts.append(f"reward {_fmt(m['reward/total/mean'], '.3f')}")
    if "accuracy" in m:
        parts.append(f"acc {_fmt(m['accuracy'], '.3f')}")
    if "completion/len_mean" in m:
        parts.append(f"len {_fmt(m['completion/len_mean'], '.1f')}")
    if "count/groups" in m:
        parts.append(f"groups {int(m.get('count/groups_kept', 0))}/{int(m['count/groups'])} kept")
    if "eval/accuracy" in m:
        parts.append(f"eval_acc {_fmt(m['eval/accuracy'], '.3f')}")
    if "time/step_s" in m:
        parts.append(f"{_fmt(m['time/step_s'], '.2f')} s/step")
    return "  ".join(parts + _attention(m))


# RL_REASON_PROGRESS=0 turns the progress display off whatever the recipe says (the test
# suite sets it, so recipes under recipes/test/ can keep progress on for users who copy them)
PROGRESS_ENV = "RL_REASON_PROGRESS"


def _interactive() -> bool:
    if os.environ.get("CI"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _RichBar:
    """A rich progress bar: step/total, reward, accuracy, completion length, s/step."""

    def __init__(self, total: int, start: int):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.progress = Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("reward {task.fields[reward]}"),
            TextColumn("acc {task.fields[acc]}"),
            TextColumn("len {task.fields[length]}"),
            TextColumn("groups {task.fields[groups]}"),
            TextColumn("{task.fields[sps]} s/step"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(
            "train",
            total=total,
            completed=start,
            reward="-",
            acc="-",
            length="-",
            sps="-",
            groups="-",
        )
        self.progress.start()

    def update(self, step: int, m: dict) -> None:
        fields = {}
        if "reward/total/mean" in m:
            fields["reward"] = _fmt(m["reward/total/mean"], ".3f")
        if "accuracy" in m:
            fields["acc"] = _fmt(m["accuracy"], ".3f")
        if "completion/len_mean" in m:
            fields["length"] = _fmt(m["completion/len_mean"], ".1f")
        if "time/step_s" in m:
            fields["sps"] = _fmt(m["time/step_s"], ".2f")
        if "count/groups" in m:
            fields["groups"] = f"{int(m.get('count/groups_kept', 0))}/{int(m['count/groups'])}"
        self.progress.update(self.task, completed=step, **fields)
        for note in _attention(m):
            self.print(f"step {step}: {note}")

    def print(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


def quiet_library_progress() -> None:
    """Turn off transformers', datasets' and huggingface_hub's own progress bars ("Loading
    weights", "Generating train split"), for runs with logging.progress=false."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except Exception:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:
        pass


# --------------------------------------------------------------------------- the tracker


class Tracker:
    """Writes ``metrics.jsonl`` / ``rollouts.jsonl``, drives the console display and wandb.

    ``start_step`` is the last step already done (the checkpoint's step, 0 for a fresh run):
    rows with a later step are dropped from both files first, because the resumed trainer
    logs them again; a fresh run starts with empty files. ``state`` is what ``state_dict()``
    returned before (it carries the wandb run id, so a resumed run continues the same
    wandb run).
    """

    def __init__(
        self,
        run_dir: Union[str, Path],
        cfg: LoggingConfig,
        *,
        total_steps: int,
        config_dict: dict,
        start_step: int = 0,
        state: Optional[dict] = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.total_steps = total_steps
        self.metrics_path = self.run_dir / METRICS_FILE
        self.rollouts_path = self.run_dir / ROLLOUTS_FILE
        self.curves_path = self.run_dir / CURVES_FILE
        self._closed = False
        state = dict(state or {})

        keep = start_step if start_step > 0 else None
        _truncate_after(self.metrics_path, keep)
        _truncate_after(self.rollouts_path, keep)
        self._metrics_f = self.metrics_path.open("a", encoding="utf-8")
        self._rollouts_f = None

        self._bar: Optional[_RichBar] = None
        self._plain = False
        if cfg.progress and os.environ.get(PROGRESS_ENV, "1") != "0":
            if _interactive():
                self._bar = _RichBar(total_steps, start_step)
            else:
                self._plain = True

        self._wandb_run = None
        self.wandb_id: Optional[str] = state.get("wandb_id")
        if cfg.wandb and cfg.wandb_mode != "disabled":
            self._init_wandb(config_dict)

    # ------------------------------------------------------------------ wandb
    def _init_wandb(self, config_dict: dict) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise RLReasonError(
                "logging.wandb=true but wandb is not installed: pip install wandb, or set logging.wandb=false"
            ) from exc
        name = (config_dict.get("logging") or {}).get("run_name") or self.run_dir.name
        if not self.wandb_id:
            self.wandb_id = uuid.uuid4().hex[:12]  # chosen here so it is in state_dict() at once
        try:
            self._wandb_run = wandb.init(
                project=self.cfg.wandb_project,
                name=name,
                id=self.wandb_id,
                resume="allow",
                dir=str(self.run_dir),
                mode=self.cfg.wandb_mode,
                config=config_dict,
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RLReasonError(
                f"wandb could not start ({first}); use logging.wandb_mode=offline, "
                "log in with `wandb login`, or set logging.wandb=false"
            ) from exc

    # ------------------------------------------------------------------ sinks
    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step": step, **metrics}`` to metrics.jsonl and update the displays."""
        row = {"step": int(step), **metrics}
        self._metrics_f.write(_dumps(row) + "\n")
        self._metrics_f.flush()
        if self._bar is not None:
            self._bar.update(step, metrics)
        elif self._plain:
            print(_summary_line(step, self.total_steps, metrics), flush=True)
        if self._wandb_run is not None:
            self._wandb_run.log(dict(metrics), step=int(step))

    def log_rollouts(self, step: int, rows: list[dict]) -> None:
        """Append rollout rows (each gets ``step`` when it lacks one) to rollouts.jsonl."""
        if not self.cfg.log_rollouts or not rows:
            return
        if self._rollouts_f is None:
            self._rollouts_f = self.rollouts_path.open("a", encoding="utf-8")
        for row in rows:
            if "step" not in row:
                row = {"step": int(step), **row}
            self._rollouts_f.write(_dumps(row) + "\n")
        self._rollouts_f.flush()

    def print(self, msg: str) -> None:
        """Print a message without breaking the progress bar."""
        if self._bar is not None:
            self._bar.print(msg)
        else:
            print(msg, flush=True)

    def state_dict(self) -> dict:
        return {"wandb_id": self.wandb_id} if self.wandb_id else {}

    def close(self) -> None:
        """Stop the bar, finish wandb, close the files and draw curves.png (logging.plot)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.stop()
        for f in (self._metrics_f, self._rollouts_f):
            if f is not None:
                f.close()
        if self._wandb_run is not None:
            try:
                self._wandb_run.finish()
            finally:
                self._wandb_run = None
        if self.cfg.plot:
            try:
                plot_curves(self.metrics_path, self.curves_path)
            except Exception as exc:  # a plot must never fail a finished run
                self.print(f"warning: could not draw {self.curves_path}: {exc}")

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- curves


PANELS = (
    ("reward/total/mean", "reward (mean)"),
    ("accuracy", "accuracy"),
    ("completion/len_mean", "completion length (tokens)"),
)


def plot_curves(metrics_path: Union[str, Path], out_png: Union[str, Path]) -> Path:
    """Reward, accuracy (with held-out ``eval/accuracy`` points) and completion length per step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(read_jsonl(metrics_path), key=lambda r: r.get("step", 0))

    def series(key: str) -> tuple[list, list]:
        xs, ys = [], []
        for r in rows:
            v = r.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                xs.append(r.get("step", 0))
                ys.append(v)
        return xs, ys

    fig = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas without touching pyplot's global backend
    axes = fig.subplots(1, len(PANELS))
    for ax, (key, title) in zip(axes, PANELS):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label="train")
        if key == "accuracy":
            ex, ey = series("eval/accuracy")
            if ex:
                ax.plot(ex, ey, "o--", color="tab:red", label="held-out (eval)")
        if not ax.lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif key == "accuracy" and len(ax.lines) > 1:
            ax.legend(loc="best", fontsize="small")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
