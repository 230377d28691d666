"""Framing, and the data-only value codec of the harness <-> model link.

Frames are a 4-byte little-endian length and a body. The harness <-> model bodies are JSON
text. A value is JSON's own ``null``/``true``/``false``/number/string/array (a Python list),
or an object ``{"t": TAG, "v": ...}`` for the handful of value types tests compare:

    tuple set frozenset dict bytes bytearray int (big) float (nan/inf) complex Fraction Decimal
    Counter OrderedDict deque date time datetime timedelta timezone range slice
    ref (a handle to an object that stays in the model's process) g (a solution global)

Decoding builds only these values from those types (exact types, no subclasses, no class is
looked up by name, nothing is called but the value types' own constructors), so a reply can
neither execute nor change anything in the harness. Anything else is a ``ref``.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import json
import math
import socket
import struct

MAX_FRAME = 256 << 20
MAX_DEPTH = 400
MAX_NODES = 5_000_000
MAX_TEXT = 1 << 20  # digits of a tagged int / Decimal


class WireError(ValueError):
    """A frame or value that does not follow the format."""


class Ref:
    """A ``ref``/``g`` tag as the harness holds it (what its proxies send back)."""

    __slots__ = ("tag", "v")

    def __init__(self, tag: str, v):
        self.tag, self.v = tag, v


# ---------------------------------------------------------------- framing


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(struct.pack("<I", len(data)) + data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack("<I", recv_exact(sock, 4))
    if n > MAX_FRAME:
        raise EOFError("frame too large")
    return recv_exact(sock, n)


# ---------------------------------------------------------------- values

_DT = datetime
_SCALARS = (str, bool, type(None))


def _float(x: float):
    if math.isfinite(x):
        return x
    return {"t": "float", "v": repr(x)}  # 'nan', 'inf', '-inf'


def _int(x: int):
    if -(1 << 62) < x < (1 << 62):
        return x
    return {"t": "int", "v": format(x, "x")}  # hex: no int/str digit limit, linear time


class _Encoder:
    """Tree of JSON-able data for ``obj``. ``ref(obj) -> int`` names anything that is not a
    value (model side); without it such objects raise TypeError (harness side)."""

    def __init__(self, ref=None, remote_ref=None):
        self.ref = ref
        self.remote_ref = remote_ref  # harness side: its proxies go back as their own refs
        self.nodes = 0
        self.path: set = set()

    def __call__(self, obj, depth: int = 0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise WireError("value too large to send")
        t = type(obj)
        if t in _SCALARS:
            return obj
        if t is int:
            return _int(obj)
        if t is float:
            return _float(obj)
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply to send")
        if t is Ref:
            return {"t": obj.tag, "v": obj.v}
        if self.remote_ref is not None:
            r = self.remote_ref(obj)
            if r is not None:
                return {"t": r.tag, "v": r.v}
        if t in _CONTAINERS:
            key = id(obj)
            if key in self.path:  # a cycle: not a value
                return self._other(obj)
            self.path.add(key)
            try:
                return _CONTAINERS[t](self, obj, depth + 1)
            finally:
                self.path.discard(key)
        enc = _LEAVES.get(t)
        if enc is not None:
            if t is _DT.datetime or t is _DT.time:
                tz = obj.tzinfo
                if tz is not None and type(tz) is not _DT.timezone:
                    return self._other(obj)
            return {"t": enc[0], "v": enc[1](obj)}
        return self._other(obj)

    def _other(self, obj):
        if self.ref is None:
            raise TypeError(f"cannot send a {type(obj).__name__} to the solution")
        return {"t": "ref", "v": self.ref(obj)}

    def items(self, obj, depth):
        return [self(x, depth) for x in obj]

    def pairs(self, obj, depth):
        return [[self(k, depth), self(v, depth)] for k, v in obj.items()]


_CONTAINERS = {
    list: lambda e, o, d: e.items(o, d),
    tuple: lambda e, o, d: {"t": "tuple", "v": e.items(o, d)},
    set: lambda e, o, d: {"t": "set", "v": e.items(o, d)},
    frozenset: lambda e, o, d: {"t": "frozenset", "v": e.items(o, d)},
    dict: lambda e, o, d: {"t": "dict", "v": e.pairs(o, d)},
    collections.defaultdict: lambda e, o, d: {"t": "dict", "v": e.pairs(o, d)},
    collections.OrderedDict: lambda e, o, d: {"t": "OrderedDict", "v": e.pairs(o, d)},
    collections.Counter: lambda e, o, d: {"t": "Counter", "v": e.pairs(o, d)},
    collections.deque: lambda e, o, d: {"t": "deque", "v": [e.items(o, d), o.maxlen]},
    slice: lambda e, o, d: {"t": "slice", "v": e.items((o.start, o.stop, o.step), d)},
}


def _td(x: _DT.timedelta):
    return [x.days, x.seconds, x.microseconds]


_LEAVES = {
    bytes: ("bytes", bytes.hex),
    bytearray: ("bytearray", bytearray.hex),
    complex: ("complex", lambda c: [_float(c.real), _float(c.imag)]),
    fractions.Fraction: ("Fraction", lambda f: [_int(f.numerator), _int(f.denominator)]),
    decimal.Decimal: ("Decimal", str),
    range: ("range", lambda r: [_int(r.start), _int(r.stop), _int(r.step)]),
    _DT.date: ("date", _DT.date.isoformat),
    _DT.datetime: ("datetime", lambda x: [x.isoformat(), x.fold]),
    _DT.time: ("time", lambda x: [x.isoformat(), x.fold]),
    _DT.timedelta: ("timedelta", _td),
    _DT.timezone: ("timezone", lambda z: [_td(z.utcoffset(None)), z.tzname(None)]),
}


def encode(obj, ref=None, remote_ref=None) -> bytes:
    """JSON text for ``obj`` (see the module docstring)."""
    tree = _Encoder(ref, remote_ref)(obj)
    return json.dumps(tree, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()


# ---------------------------------------------------------------- decoding


def _reject_constant(name):
    raise WireError(f"non-standard JSON constant {name}")


class _Decoder:
    def __init__(self, ref=None):
        self.ref = ref  # ref(tag, v) -> object, or None: refs are refused

    def __call__(self, x, depth: int = 0):
        t = type(x)
        if t in _SCALARS or t is int or t is float:
            return x
        if depth > MAX_DEPTH + 2:
            raise WireError("value nested too deeply")
        if t is list:
            return [self(i, depth + 1) for i in x]
        if t is not dict or len(x) != 2 or "t" not in x or "v" not in x:
            raise WireError("malformed value")
        tag, v = x["t"], x["v"]
        fn = _TAGS.get(tag) if type(tag) is str else None
        if fn is None:
            if tag in ("ref", "g") and self.ref is not None:
                return self.ref(tag, v)
            raise WireError(f"unknown tag {tag!r}")
        return fn(self, v, depth + 1)

    def seq(self, v, depth, n=None):
        if type(v) is not list or (n is not None and len(v) != n):
            raise WireError("malformed sequence")
        return [self(i, depth) for i in v]

    def pairs(self, v, depth):
        out = []
        for p in self.seq(v, depth):
            if type(p) is not list or len(p) != 2:
                raise WireError("malformed pair")
            out.append((p[0], p[1]))
        return out


def _text(v, limit=MAX_TEXT) -> str:
    if type(v) is not str or len(v) > limit:
        raise WireError("malformed text")
    return v


def _hexint(v) -> int:
    return int(_text(v), 16)


def _num(d, x, depth):
    x = d(x, depth)
    if type(x) not in (int, float):
        raise WireError("malformed number")
    return x


def _intv(d, x, depth):
    x = d(x, depth)
    if type(x) is not int:
        raise WireError("malformed integer")
    return x


def _timedelta(d, v, depth):
    days, secs, us = (_intv(d, x, depth) for x in d.seq(v, depth, 3))
    return _DT.timedelta(days=days, seconds=secs, microseconds=us)


def _fraction(d, v, depth):
    n, m = (_intv(d, x, depth) for x in d.seq(v, depth, 2))
    if m == 0:
        raise WireError("zero denominator")
    return fractions.Fraction(n, m)


def _deque(d, v, depth):
    if type(v) is not list or len(v) != 2 or not (v[1] is None or type(v[1]) is int):
        raise WireError("malformed deque")
    return collections.deque(d.seq(v[0], depth), v[1])


def _iso(cls):
    def make(d, v, depth):
        if type(v) is not list or len(v) != 2 or v[1] not in (0, 1):
            raise WireError("malformed time")
        return cls.fromisoformat(_text(v[0], 64)).replace(fold=v[1])

    return make


def _float_tag(d, v, depth):
    if v not in ("nan", "inf", "-inf"):
        raise WireError("malformed float")
    return float(v)


def _timezone(d, v, depth):
    if type(v) is not list or len(v) != 2:
        raise WireError("malformed timezone")
    off = _timedelta(d, v[0], depth)
    name = _text(v[1], 64)
    return _DT.timezone(off) if name == _DT.timezone(off).tzname(None) else _DT.timezone(off, name)


def _slice(d, v, depth):
    a, b, c = d.seq(v, depth, 3)
    return slice(a, b, c)


_TAGS = {
    "tuple": lambda d, v, k: tuple(d.seq(v, k)),
    "set": lambda d, v, k: set(d.seq(v, k)),
    "frozenset": lambda d, v, k: frozenset(d.seq(v, k)),
    "dict": lambda d, v, k: dict(d.pairs(v, k)),
    "OrderedDict": lambda d, v, k: collections.OrderedDict(d.pairs(v, k)),
    "Counter": lambda d, v, k: collections.Counter(dict(d.pairs(v, k))),
    "deque": _deque,
    "slice": _slice,
    "bytes": lambda d, v, k: bytes.fromhex(_text(v, MAX_FRAME)),
    "bytearray": lambda d, v, k: bytearray.fromhex(_text(v, MAX_FRAME)),
    "int": lambda d, v, k: _hexint(v),
    "float": _float_tag,
    "complex": lambda d, v, k: complex(*(_num(d, x, k) for x in d.seq(v, k, 2))),
    "Fraction": _fraction,
    "Decimal": lambda d, v, k: decimal.Decimal(_text(v)),
    "range": lambda d, v, k: range(*(_intv(d, x, k) for x in d.seq(v, k, 3))),
    "date": lambda d, v, k: _DT.date.fromisoformat(_text(v, 64)),
    "datetime": _iso(_DT.datetime),
    "time": _iso(_DT.time),
    "timedelta": _timedelta,
    "timezone": _timezone,
}


def decode(data: bytes, ref=None):
    """The value in ``data``; ``ref(tag, v)`` turns ``ref``/``g`` tags into objects (refused
    without it). Raises WireError (or ValueError/TypeError/RecursionError from the value
    types' constructors) on anything malformed."""
    try:
        tree = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise WireError("value nested too deeply") from None
    return _Decoder(ref)(tree)
