"""rl_reason.errors: recipe and data mistakes exit 2, the rest 1; the CLI prints one line."""

from __future__ import annotations

import pytest

from rl_reason import errors


@pytest.mark.parametrize(
    "cls,code",
    [
        (errors.ConfigError, 2),
        (errors.DataError, 2),
        (errors.RunDirError, 2),
        (errors.ModelError, 1),
        (errors.CheckpointError, 1),
        (errors.EngineError, 1),
        (errors.RunStoppedError, 1),
    ],
)
def test_exit_codes(cls, code):
    assert issubclass(cls, errors.RLReasonError) and cls.exit_code == code


def test_the_cli_turns_a_typed_error_into_one_line(monkeypatch, capsys):
    from rl_reason import cli

    def boom(*args):
        raise errors.DataError("data.source: rows.jsonl: row 3: not valid JSON")

    monkeypatch.setattr(cli, "_load", boom)
    assert cli.main(["validate", "whatever.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("data.source: rows.jsonl: row 3: not valid JSON") and "\n" not in err
