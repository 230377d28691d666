"""The caller's side: limits and outcome records, the zygote client, ``run_tests`` / ``run_io``.

Runs in the trainer's (or scorer's) process. It starts the zygote once per process, hands it
one socket per run, and reads back a marshal-encoded verdict written by the harness (root's
code, never the model's).
"""

from __future__ import annotations

import atexit
import marshal
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .inside import wire

_INSIDE = os.path.dirname(os.path.abspath(__file__))  # holds the `inside` package
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from inside import zygote; zygote.main(sys.argv[2:])"


class SandboxError(RuntimeError):
    """The sandbox itself could not start or answer (not a verdict on the model's code)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed program (per process where the kernel counts so)."""

    timeout_s: float = 5.0  # wall clock, whole run (tests mode) or per case (io mode)
    cpu_s: Optional[int] = None  # RLIMIT_CPU; default int(timeout_s) + 2, so the wall clock fires first
    memory_mb: int = 1024  # RLIMIT_AS of the model's process
    file_size_mb: int = 16  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 32  # RLIMIT_NPROC for the run's own uid (threads count too)
    output_bytes: int = 1 << 20  # stdout + stderr; more is a failure
    tmp_mb: int = 64  # the run's own /tmp (working directories included), a tmpfs
    shm_mb: int = 16  # the run's own /dev/shm
    tmp_inodes: int = 4096  # files and directories in each of them

    def cpu_seconds(self) -> int:
        if self.cpu_s is not None:
            return int(self.cpu_s)
        return int(self.timeout_s) + 2


@dataclass
class TestOutcome:
    """What the harness decided. ``passed`` is True only if the tests ran to the end, called
    the solution at least once, ran every assert on their straight path, and nothing failed."""

    passed: bool
    status: str  # passed | failed | error | timeout | no_tests | output_limit | sandbox_error
    calls: int = 0
    detail: str = ""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0


@dataclass
class ProgramOutcome:
    """One stdin/stdout run of a whole program."""

    exit_code: Optional[int]
    signal: Optional[int]
    stdout: str
    stderr: str
    timed_out: bool = False
    output_exceeded: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_exceeded


_MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _knobs():
    from rewards import sandbox as pkg  # the settings live on the package (tests patch them)

    return list(pkg.HIDE), bool(pkg.NAMESPACES), bool(pkg.CGROUPS)


class _Zygote:
    def __init__(self) -> None:
        import subprocess

        hide, namespaces, cgroups = _knobs()
        self.owner = os.getpid()
        self.lock = threading.Lock()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _BOOT,
                    _INSIDE,
                    str(child.fileno()),
                    os.getcwd(),
                    os.pathsep.join(hide),
                    "1" if namespaces else "0",
                    "1" if cgroups else "0",
                ],
                pass_fds=[child.fileno()],
                env=dict(_MIN_ENV),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            child.close()
        self.ctrl = parent
        parent.settimeout(30)
        try:
            msg = parent.recv(65536)
        except OSError as exc:
            raise SandboxError(f"sandbox zygote did not start: {exc}") from None
        if not msg:
            raise SandboxError("sandbox zygote exited during start-up")
        self.info = marshal.loads(msg)
        parent.settimeout(None)

    def spawn(self, run_fd: int) -> int:
        with self.lock:
            socket.send_fds(self.ctrl, [b"R"], [run_fd])
            msg = self.ctrl.recv(64)
        if len(msg) != 8:
            raise SandboxError("sandbox zygote is gone")
        return struct.unpack("<q", msg)[0]

    def close(self) -> None:
        try:
            self.ctrl.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except Exception:
            self.proc.kill()


_zygote: Optional[_Zygote] = None
_zygote_lock = threading.Lock()


def _get_zygote() -> _Zygote:
    global _zygote
    z = _zygote
    if z is not None and z.owner == os.getpid() and z.proc.poll() is None:
        return z
    with _zygote_lock:
        z = _zygote
        if z is None or z.owner != os.getpid() or z.proc.poll() is not None:
            _zygote = z = _Zygote()
        return z


def _after_fork_in_child() -> None:
    global _zygote, _zygote_lock
    _zygote = None  # the parent's zygote belongs to the parent; start our own when needed
    _zygote_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def shutdown() -> None:
    """Stop this process's zygote (it also stops by itself when this process exits)."""
    global _zygote
    with _zygote_lock:
        z, _zygote = _zygote, None
    if z is not None and z.owner == os.getpid():
        z.close()


atexit.register(shutdown)


def capabilities() -> dict:
    """What isolation applies on this machine (starts the zygote if needed).

    Keys: ``root`` (the zygote runs as root), ``uid_drop`` (each run's processes get fresh
    unprivileged uids, so RLIMIT_NPROC binds and other users' files are protected),
    ``mount_ns`` (read-only root, HIDE directories and the caller's cwd hidden), ``run_ns``
    (each run's own mount and IPC namespace with an empty /tmp and /dev/shm of its own),
    ``pid_ns`` (the model is pid 1 of its own pid namespace), ``run_cgroup`` (each run in a
    cgroup v2 of its own, killed with ``cgroup.kill`` when it ends; without it the run's
    processes are killed by a SIGKILL sweep of its uid), ``cgroup`` (v1 controllers capping
    all sandboxes together), ``network`` ("netns": empty network namespace, or
    "socket-blocked"), ``namespaces`` (whether namespaces were tried at all, see
    ``NAMESPACES``), ``seccomp`` (a seccomp filter refuses every ``socket()`` in the model's
    processes, across exec too; without it sockets are refused by patching the model
    interpreter's ``socket`` module only, which a subprocess or ctypes can get around),
    ``workdir_root`` (without a mount namespace: the tmpfs, normally ``/dev/shm``, that holds
    the runs' working directories; None: the system's temporary directory).
    """
    return dict(_get_zygote().info)


def network_isolation() -> str:
    """``"netns"`` (empty network namespace) or ``"socket-blocked"`` (sockets refused in-process)."""
    return _get_zygote().info["network"]


def _kill(pid: int, pidfd: Optional[int]) -> None:
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _execute(header: dict, payload: dict, hard_timeout: float) -> dict:
    """Run one job in a fresh harness process; return its result dict."""
    zyg = _get_zygote()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pidfd = None
    pid = -1
    try:
        try:
            pid = zyg.spawn(theirs.fileno())
        finally:
            theirs.close()
        if pid <= 0:
            return {"status": "sandbox_error", "detail": "the sandbox could not start this run"}
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pidfd = None
        wire.send_frame(mine, marshal.dumps(header))
        wire.send_frame(mine, marshal.dumps(payload))
        deadline = time.monotonic() + hard_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(pid, pidfd)
                return {"status": "timeout", "detail": "hard wall-clock timeout (harness killed)"}
            r, _, _ = select.select([mine], [], [], left)
            if r:
                break
        try:
            return marshal.loads(wire.recv_frame(mine))
        except (EOFError, ValueError, OSError) as exc:
            return {"status": "sandbox_error", "detail": f"harness died without a verdict: {exc}"}
    except OSError as exc:
        return {"status": "sandbox_error", "detail": f"sandbox link failed: {exc}"}
    finally:
        mine.close()
        if pidfd is not None:
            os.close(pidfd)


def _limits_dict(limits: Limits) -> dict:
    d = asdict(limits)
    d["cpu_s"] = limits.cpu_seconds()
    return d


def _text(b: Any, limit: int = 4000) -> str:
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    b = str(b or "")
    return b if len(b) <= limit else b[:limit] + f"... [{len(b) - limit} more chars]"


def run_tests(
    code: str,
    tests: str,
    entry_point: Optional[str] = None,
    limits: Limits = Limits(),
    prompt: Optional[str] = None,
) -> TestOutcome:
    """Run ``tests`` against ``code``.

    If ``entry_point`` is given, the tests' globals hold the solution's ``entry_point`` (also
    as ``candidate``) and what ``prompt`` declares (the task's own Python source, e.g. a
    HumanEval prompt with its imports and helpers; run in the harness, not taken from the
    solution), and if the tests define ``check`` the harness calls ``check(<entry_point>)``
    (HumanEval style). Otherwise the tests' top-level asserts are the tests (MBPP style) and
    see the solution's top-level names except any that shadow a builtin or a module. The
    solution must be called at least once.
    """
    header = {"mode": "tests", "code": code, "limits": _limits_dict(limits)}
    payload = {"tests": tests, "entry_point": entry_point, "prompt": prompt}
    t0 = time.monotonic()
    res = _execute(header, payload, limits.timeout_s + 5.0)
    status = res.get("status", "sandbox_error")
    return TestOutcome(
        passed=status == "passed",
        status=status,
        calls=int(res.get("calls", 0)),
        detail=_text(res.get("detail", ""), 2000),
        stdout=_text(res.get("stdout", b"")),
        stderr=_text(res.get("stderr", b"")),
        duration_s=time.monotonic() - t0,
    )


def run_io(code: str, inputs: list, limits: Limits = Limits(), stop_on_error: bool = True) -> list:
    """Run ``code`` as a program once per stdin string; a fresh process per case.

    Returns one ``ProgramOutcome`` per case that ran (with ``stop_on_error`` the runs stop
    after the first crash, timeout or output overflow). Expected outputs never enter the
    sandbox: the caller compares.
    """
    header = {
        "mode": "io",
        "code": code,
        "limits": _limits_dict(limits),
        "stop_on_error": bool(stop_on_error),
    }
    payload = {"inputs": [str(x) for x in inputs]}
    res = _execute(header, payload, limits.timeout_s * max(1, len(inputs)) + 5.0)
    if res.get("status") != "ok":
        return [
            ProgramOutcome(
                None, None, "", _text(res.get("detail", "")), timed_out=res.get("status") == "timeout"
            )
        ]
    out = []
    for case in res["cases"]:
        out.append(
            ProgramOutcome(
                exit_code=case["exit_code"],
                signal=case["signal"],
                stdout=case["stdout"].decode("utf-8", "replace"),
                stderr=_text(case["stderr"]),
                timed_out=case["timed_out"],
                output_exceeded=case["output_exceeded"],
                duration_s=case["duration_s"],
            )
        )
    return out


def run_program(code: str, stdin: str = "", limits: Limits = Limits()) -> ProgramOutcome:
    """Run ``code`` as one program with ``stdin``."""
    return run_io(code, [stdin], limits)[0]
