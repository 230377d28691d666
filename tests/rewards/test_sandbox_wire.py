"""rewards.sandbox.inside.wire: the reply format is data only: tagged JSON values that decode to
the value types tests compare, and nothing that can call or mutate."""

from __future__ import annotations

import collections
import datetime
import math
import socket
from decimal import Decimal
from fractions import Fraction

import pytest

from rewards.sandbox.inside import wire

VALUES = [
    (1, "two", None, True),
    {1, 2},
    frozenset({3}),
    b"\x00ab",
    Fraction(1, 3),
    Decimal("0.1"),
    1 + 2j,
    collections.Counter("aab"),
    collections.OrderedDict([("b", 1), ("a", 2)]),
    collections.deque([1, 2], maxlen=2),
    datetime.date(2024, 2, 29),
    datetime.datetime(2024, 1, 1, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    datetime.timedelta(days=1, seconds=5),
    10**30,
    -(10**40),
    [1, [2, (3,)], {"k": frozenset({1})}],
    {(1, 2): "tuple key"},
    float("inf"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_as_their_own_types(value):
    back = wire.decode(wire.encode(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, collections.deque):
        assert back.maxlen == value.maxlen
    if isinstance(value, collections.OrderedDict):
        assert list(back) == list(value)


def test_nan_stays_a_float_nan():
    back = wire.decode(wire.encode(float("nan")))
    assert isinstance(back, float) and math.isnan(back)


@pytest.mark.parametrize(
    "data,message",
    [
        (b'{"$x": 1}', "malformed value"),
        (b'{"t": "os.system", "v": "echo"}', "unknown tag"),
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b"\x80\x02cos\nsystem\n.", "utf-8"),  # a pickle is not a reply (not even UTF-8)
    ],
)
def test_anything_else_is_refused(data, message):
    # the harness fails a run on any of these (WireError is a ValueError)
    with pytest.raises(ValueError, match=message):
        wire.decode(data)


def test_objects_are_not_sent_by_value():
    with pytest.raises(TypeError, match="cannot send a object"):
        wire.encode(object())


def test_frames_carry_their_length():
    a, b = socket.socketpair()
    try:
        wire.send_frame(a, b"hello")
        wire.send_frame(a, b"")
        assert wire.recv_frame(b) == b"hello" and wire.recv_frame(b) == b""
        a.close()
        with pytest.raises(EOFError):
            wire.recv_frame(b)
    finally:
        b.close()
