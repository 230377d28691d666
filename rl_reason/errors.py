"""Typed errors. The CLI turns any of these into one line on stderr and a non-zero exit."""

from __future__ import annotations


class RLReasonError(Exception):
    """Base class for user-facing errors: the message names the problem and the fix."""

    exit_code = 1


class ConfigError(RLReasonError):
    """A recipe or override is invalid (unknown key, wrong type, bad value)."""

    exit_code = 2


class DataError(RLReasonError):
    """A dataset cannot be loaded or a row lacks a required field (with data.strict)."""

    exit_code = 2  # like a recipe error: the input is wrong, not the program


class ModelError(RLReasonError):
    """A model or tokenizer cannot be loaded or prepared."""


class RunDirError(RLReasonError):
    """A run directory is missing, foreign, or would be clobbered."""

    exit_code = 2


class CheckpointError(RLReasonError):
    """A checkpoint cannot be written or read."""


class EngineError(RLReasonError):
    """A rollout engine cannot start or generate (bad options for the device, OOM, server down)."""


class RunStoppedError(RLReasonError):
    """The run stopped itself rather than waste compute (train.max_bad_steps bad steps in a
    row: non-finite numbers or a checker failing on most samples). Checkpoints are kept."""
