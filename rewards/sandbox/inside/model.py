"""The model process M: forked by the harness, isolated, and running the model's code.

Everything in this process is the model's to change (its code runs here), so nothing it sends
is trusted: the harness reads only data-only frames (``wire``) from it.
"""

from __future__ import annotations

import builtins
import io
import os
import select
import signal
import socket
import sys
import types
from typing import Optional

from . import system, wire

FRESH_PIDNS = False  # the harness's own unshare already made the next child's pid namespace


class Child:
    """A model process M as its harness sees it."""

    def __init__(self, pid: int, sock, out_r: int, err_r: int, in_w: Optional[int], life_w: int):
        self.pid, self.sock, self.out_r, self.err_r, self.in_w = pid, sock, out_r, err_r, in_w
        self.life_w = life_w


def spawn(
    lim: dict,
    info: dict,
    workroot: str,
    uid: int,
    pidns_fd: Optional[int],
    body,
    stdin_pipe: bool,
    case: int = 0,
) -> Child:
    """Fork M. ``body(sock)`` runs in M after isolation and never returns."""
    wd = os.path.join(workroot, f"w{case + 1}")  # a fresh directory per process
    os.mkdir(wd, 0o700)
    if info["uid_drop"]:
        os.chown(wd, uid, uid)
    # The harness link exists before the seccomp filter, which then refuses socket() itself.
    ws, ms = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin_pipe else (None, None)
    life_r, life_w = os.pipe()
    global FRESH_PIDNS
    if info["pid_ns"] and not FRESH_PIDNS:  # a fresh pid namespace per model process
        if pidns_fd is not None:
            system.setns(pidns_fd, system.CLONE_NEWPID)
        system.unshare(system.CLONE_NEWPID)
    FRESH_PIDNS = False
    pid = os.fork()
    if pid == 0:  # ---------------- M
        try:
            os.close(life_w)
            ws.close()
            try:
                os.setsid()
            except OSError:
                pass
            import resource

            mb = 1 << 20
            for res, val in (
                (resource.RLIMIT_CPU, lim["cpu_s"]),
                (resource.RLIMIT_AS, lim["memory_mb"] * mb),
                (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
                (resource.RLIMIT_NOFILE, lim["open_files"]),
                (resource.RLIMIT_NPROC, lim["processes"]),
                (resource.RLIMIT_CORE, 0),
            ):
                resource.setrlimit(res, (val, val) if res != resource.RLIMIT_CPU else (val, val + 1))
            os.chdir(wd)
            if info["uid_drop"]:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            system.prctl(system.PR_SET_NO_NEW_PRIVS, 1)
            if info.get("seccomp"):
                system.seccomp_no_sockets()  # kernel-level: holds across exec too
            system.prctl(system.PR_SET_PDEATHSIG, signal.SIGKILL)  # a convenience: the run's
            # cgroup (or uid sweep) is what guarantees that nothing outlives the run
            p = select.poll()
            p.register(life_r, select.POLLIN | select.POLLHUP)
            if p.poll(0):  # the harness already died before the death signal was armed
                os._exit(70)
            os.dup2(in_r if in_r is not None else os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            msfd = ms.detach()
            if msfd != 3:
                os.dup2(msfd, 3)
                os.set_inheritable(3, False)
            os.closerange(4, 1 << 16)
            sock = socket.socket(fileno=3)
            os.environ.clear()
            os.environ.update({"PATH": "/usr/bin:/bin", "HOME": wd, "LANG": "C.UTF-8", "TMPDIR": wd})
            if not info.get("seccomp"):
                block_sockets()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
            sys.stdin = io.TextIOWrapper(
                io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="replace"
            )
            sys.stdout = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", errors="replace"
            )
            sys.stderr = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                encoding="utf-8",
                errors="replace",
                line_buffering=True,
            )
            sys.argv = ["main.py"]
            body(sock)
        except BaseException:
            pass
        os._exit(71)
    # ---------------- W
    for fd in (out_w, err_w, life_r) + ((in_r,) if in_r is not None else ()):
        os.close(fd)
    ms.close()
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return Child(pid, ws, out_r, err_r, in_w, life_w)


def block_sockets() -> None:
    """Fallback without seccomp: refuse new sockets by patching this interpreter's modules
    (ctypes or a fresh interpreter get around it; the docs say so)."""
    import _socket

    def refused(*_a, **_k):
        raise PermissionError(1, "network access is disabled in the sandbox")

    class NoSocket(_socket.socket):
        def __init__(self, *a, **k):
            refused()

    for mod in (_socket, socket):
        for name in ("socket", "socketpair", "create_connection", "create_server", "fromfd"):
            if hasattr(mod, name):
                setattr(mod, name, NoSocket if name == "socket" else refused)


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ---------------------------------------------------------------- tests mode


def _exc_reply(exc: BaseException) -> bytes:
    names = [c.__name__ for c in type(exc).__mro__][:16]
    try:
        text = str(exc)[:1000]
    except BaseException:
        text = "unprintable exception"
    return wire.encode(["exc", names, text])


def serve(sock, code: str) -> None:
    """Run the solution, send the table of its names, then answer the harness's requests."""
    handles: list = []
    ns: dict = {"__name__": "solution", "__builtins__": builtins}

    def ref(obj) -> int:
        handles.append(obj)
        return len(handles) - 1

    def resolve(tag, v):
        if tag == "g" and type(v) is str:
            return ns[v]
        if tag == "ref" and type(v) is int and 0 <= v < len(handles):
            return handles[v]
        raise ValueError("bad reference")

    try:
        exec(compile(code, "<solution>", "exec"), ns)
        table = []
        for name, value in list(ns.items()):
            if name.startswith("__"):
                continue
            if isinstance(value, types.ModuleType):
                table.append([name, "module", value.__name__])
                continue
            try:
                table.append([name, "data", wire.decode(wire.encode(value))])
            except (TypeError, ValueError, RecursionError):
                table.append([name, "ref", None])
        reply = wire.encode(["ready", table])
    except BaseException as exc:
        reply = wire.encode(["load_error", f"{type(exc).__name__}: {str(exc)[:500]}"])
    flush_std()
    wire.send_frame(sock, reply)
    while True:
        try:
            data = wire.recv_frame(sock)
        except BaseException:
            os._exit(0)
        try:
            req = wire.decode(data, resolve)
            op, obj = req[0], req[1]
            if op == "call":
                value = obj(*req[2], **req[3])
            elif op == "getattr":
                value = getattr(obj, req[2])
            elif op == "list":
                value = list(obj)
            elif op == "len":
                value = len(obj)
            elif op == "getitem":
                value = obj[req[2]]
            elif op == "str":
                value = str(obj)
            else:
                raise ValueError(op)
            try:
                reply = wire.encode(["ok", value], ref)
            except BaseException as exc:
                reply = _exc_reply(exc)
        except BaseException as exc:
            try:
                reply = _exc_reply(exc)
            except BaseException:
                reply = wire.encode(["exc", ["Exception"], "unprintable exception"])
        flush_std()
        wire.send_frame(sock, reply)


# ---------------------------------------------------------------- io mode


def program(code: str) -> None:
    ns = {"__name__": "__main__", "__builtins__": builtins, "__file__": "main.py"}
    status = 0
    try:
        exec(compile(code, "main.py", "exec"), ns)
    except SystemExit as exc:
        c = exc.code
        status = c if isinstance(c, int) else (0 if c is None else 1)
        if c is not None and not isinstance(c, int):
            try:
                print(c, file=sys.stderr)
            except BaseException:
                pass
    except BaseException:
        import traceback

        try:
            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    try:
        sys.stdout.flush()
    except BaseException:
        status = status or 1
    flush_std()
    os._exit(status & 0xFF)
