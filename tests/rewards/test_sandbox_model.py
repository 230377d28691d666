"""rewards.sandbox.inside.model: the model process's side (its replies; the socket fallback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rewards.sandbox.inside import model, wire

ROOT = Path(__file__).resolve().parents[2]


def test_an_exception_reply_is_data_naming_its_classes():
    class Odd(KeyError):
        def __str__(self):
            raise RuntimeError("no")

    tag, names, text = wire.decode(model._exc_reply(StopIteration("done")))
    assert (tag, names[:2], text) == ("exc", ["StopIteration", "Exception"], "done")
    assert wire.decode(model._exc_reply(Odd()))[1:] == [
        ["Odd", "KeyError", "LookupError", "Exception", "BaseException", "object"],
        "unprintable exception",
    ]


def test_block_sockets_refuses_every_way_to_a_socket():
    code = (
        "import socket\n"
        "from rewards.sandbox.inside import model\n"
        "model.block_sockets()\n"
        "refused = 0\n"
        "for make in (lambda: socket.socket(), lambda: socket.create_connection(('127.0.0.1', 9)),\n"
        "             lambda: socket.socketpair(), lambda: socket.fromfd(0, 2, 1)):\n"
        "    try:\n"
        "        make()\n"
        "    except PermissionError:\n"
        "        refused += 1\n"
        "print(refused)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"
