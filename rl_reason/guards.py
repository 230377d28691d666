"""Guards that keep bad numbers and broken checkers from spoiling a run.

A training step is *bad* when something it would learn from cannot be trusted:

- a reward, advantage, loss or gradient norm that is not finite, or a reward too large for
  float32 (a checker returning 1e200 passes the reward runner, then overflows to inf and turns
  every advantage of its group into NaN);
- a checker that raised on more than ``rewards.max_error_frac`` of the step's samples (a typo in
  a custom checker's params makes every call raise; training on the resulting zeros wastes the run).

A bad step is skipped (no optimizer step, the adapter stays as it was, the LR schedule still
advances) and logged. After ``train.max_bad_steps`` bad steps in a row the run stops with one
line (:class:`~rl_reason.errors.RunStoppedError`); the checkpoints already written are left as
they are. Everything here is a pure function or a small counter, so the trainer calls it in a
few lines and the tests call it without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from rl_reason.errors import RunStoppedError

__all__ = [
    "FLOAT32_MAX",
    "BadStepGuard",
    "NoUpdateWatch",
    "step_problems",
    "checker_failures",
    "json_safe",
    "unfit_values",
]

# largest magnitude a reward may have: the update works in float32
FLOAT32_MAX = 3.4028234663852886e38


def _floats(value: Any) -> list[float]:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().double().reshape(-1).tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (int, float)):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


def unfit_values(named: Mapping[str, Any], limit: float = FLOAT32_MAX) -> list[str]:
    """Names (with an example value) of the entries holding a non-finite value or one larger
    than ``limit`` in magnitude; [] when every value is fine. Values may be floats, sequences
    or tensors."""
    out = []
    for name, value in named.items():
        if value is None:
            continue
        for v in _floats(value):
            if not math.isfinite(v) or abs(v) > limit:
                out.append(f"{name} {v:g}")
                break
    return out


def checker_failures(errors: Mapping[str, int], n: int, max_error_frac: float) -> list[str]:
    """Checkers (with their error counts) that raised on more than ``max_error_frac`` of ``n``
    samples."""
    if n <= 0:
        return []
    return [
        f"checker {alias!r} raised on {count}/{n} samples"
        for alias, count in errors.items()
        if count / n > max_error_frac
    ]


def step_problems(
    rewards: Sequence[float],
    advantages: Any,
    errors: Mapping[str, int],
    n: int,
    max_error_frac: float,
) -> list[str]:
    """Why a step must not be trained on ([] = it may): rewards that are not finite or do not
    fit float32, non-finite advantages, checkers that raised on too many samples."""
    problems = unfit_values({"reward": rewards})
    if not problems:  # advantages of unfit rewards are unfit too: name the cause only
        problems = unfit_values({"advantage": advantages})
    problems += checker_failures(errors, n, max_error_frac)
    return problems


@dataclass
class BadStepGuard:
    """Counts bad steps in a row and stops the run after ``max_bad_steps`` of them.

    ``observe(step, reasons)`` with the reasons found for this step ([] = a good step) returns
    the warning to print for a bad step (None for a good one) and raises RunStoppedError when
    the streak reaches the limit.
    """

    max_bad_steps: int
    in_a_row: int = 0
    total: int = 0
    first_reasons: list[str] = field(default_factory=list)

    def observe(self, step: int, reasons: Sequence[str], hint: str = "") -> Optional[str]:
        if not reasons:
            self.in_a_row = 0
            self.first_reasons = []
            return None
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row == 1:
            self.first_reasons = list(reasons)
        why = "; ".join(reasons)
        if self.in_a_row >= self.max_bad_steps:
            raise RunStoppedError(
                f"stopped at step {step}: {self.in_a_row} steps in a row skipped "
                f"(train.max_bad_steps={self.max_bad_steps}); first: {'; '.join(self.first_reasons)}"
                f"{hint}"
            )
        return (
            f"step {step} skipped ({self.in_a_row}/{self.max_bad_steps} in a row): {why}; "
            "the adapter is unchanged"
        )


@dataclass
class NoUpdateWatch:
    """Warns once when ``after`` steps in a row kept no group for the update (every group's
    rewards were equal, so group advantages are all zero and the adapter never changes)."""

    after: int = 3
    in_a_row: int = 0
    warned: bool = False

    def observe(self, metrics: Mapping[str, float]) -> Optional[str]:
        if metrics.get("count/groups_kept", 1.0) > 0 or metrics.get("guard/bad_step"):
            self.in_a_row = 0
            return None
        self.in_a_row += 1
        if self.warned or self.in_a_row < self.after:
            return None
        self.warned = True
        reward = metrics.get("reward/total/mean")
        same = f" (mean reward {reward:.3f})" if isinstance(reward, float) and math.isfinite(reward) else ""
        return (
            f"no update in the last {self.in_a_row} steps: in every group all completions got the "
            f"same reward{same}, so there is nothing to learn from and the adapter is unchanged. "
            "Add a shaping reward that varies (e.g. boxed_format or think_format with a small "
            "weight), use an easier task, or sample more completions per prompt "
            "(rollout.num_generations)"
        )


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so the JSON written is valid
    (json.dumps would write the non-standard ``NaN`` / ``Infinity``). metrics.jsonl logs a
    non-finite metric as ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def after_step(trainer, step: int, metrics: Mapping[str, float]) -> None:
    """The trainer's check after each step: warn about a skipped step or a run that stopped
    learning; after ``train.max_bad_steps`` bad steps in a row, checkpoint (the adapter is as
    of the last good step) and stop with one line (RunStoppedError)."""
    import shlex

    from rl_reason import algorithms
    from rl_reason.errors import RLReasonError

    hint = (
        f"; checkpoint of step {step} written; fix the cause, then "
        f"rl-reason resume {shlex.quote(str(trainer.run_dir))}"
    )
    try:
        msg = trainer.guard.observe(step, trainer.bad, hint=hint)
    except RLReasonError:
        trainer.save_checkpoint(step)
        raise
    if msg is None and algorithms.get(trainer.cfg.algorithm.name).needs_groups:
        msg = trainer.no_update.observe(metrics)
    if msg:
        trainer.say(f"warning: {msg}")
