"""Isolated execution of model-written Python.

Layout of one run (Linux, as root; see ``capabilities()`` for what applied elsewhere)::

    caller process ──(SEQPACKET + fd passing)──> zygote  (one per caller process, started once:
         │                                                 no network namespace, pids/memory
         │ run socket                                      cgroup, common modules pre-imported)
         v                                                    │ fork per run
      harness  W  (own mount/IPC/UTS namespace: read-only /, private tmpfs /tmp, hidden
         │         /root /home /work ...; drops to a fresh unprivileged uid A)
         │ socketpair: calls in, plain data out
         v
      model    M  (pid 1 of a fresh pid namespace; fresh uid B != A; rlimits; scrubbed env;
                   stdin /dev/null; stdout/stderr through capped pipes; dies with W)

The model's code runs only in M. The tests run only in W and reach the solution through
proxies: every call is a message to M, and what comes back is decoded by a restricted
unpickler that builds only plain values (numbers, strings, containers, a few stdlib value
types). So the pass/fail verdict is computed and written by W, a process the model's code
can neither signal, trace, read nor write to, and never by M's exit status or output.
When W exits, M (and anything it forked, by the pid-namespace rule) is killed.

Per-run setup is a couple of forks plus a few namespace syscalls; interpreter start-up and
imports are paid once by the zygote.
"""

from __future__ import annotations

import atexit
import builtins
import io
import marshal
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
import types
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

__all__ = [
    "Limits",
    "TestOutcome",
    "ProgramOutcome",
    "run_tests",
    "run_program",
    "run_io",
    "network_isolation",
    "capabilities",
    "shutdown",
    "SandboxError",
]


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

    def cpu_seconds(self) -> int:
        if self.cpu_s is not None:
            return int(self.cpu_s)
        return int(self.timeout_s) + 2


@dataclass
class TestOutcome:
    """What the harness decided. ``passed`` is True only if the tests ran to the end, called
    the solution at least once, and nothing failed."""

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


# --------------------------------------------------------------------------------------------
# Linux plumbing (ctypes; Python 3.11 has no os.unshare and no mount at all)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38

_libc = None


def _c():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _check(_c().unshare(flags), f"unshare({flags:#x})")


def _setns(fd: int, nstype: int) -> None:
    _check(_c().setns(fd, nstype), "setns")


def _mount(src: Optional[str], target: str, fstype: Optional[str], flags: int,
           data: Optional[str] = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_c().mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _umount(target: str) -> None:
    _check(_c().umount2(target.encode(), MNT_DETACH), f"umount {target}")


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_c().prctl(option, arg, arg3, 0, 0), f"prctl({option})")


# --------------------------------------------------------------------------------------------
# Framing: 4-byte little-endian length + body, over stream sockets or pipes.

_MAX_FRAME = 256 << 20


def _send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(struct.pack("<I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack("<I", _recv_exact(sock, 4))
    if n > _MAX_FRAME:
        raise EOFError("frame too large")
    return _recv_exact(sock, n)


# --------------------------------------------------------------------------------------------
# Caller side

_MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
# Directories covered by an empty tmpfs inside the sandbox (plus the caller's working
# directory); the Python installation is bound back read-only if it lives under one of them.
# Change before the first run: it is applied once per zygote.
HIDE = ["/root", "/home", "/work", "/srv", "/opt"]
# False (or RL_REASON_SANDBOX_NAMESPACES=0) runs without any namespace, as on platforms that
# refuse them: sockets are then blocked in-process and files are protected by the uid drop
# alone. Applied when the zygote starts (call ``shutdown()`` first to change it later).
NAMESPACES = os.environ.get("RL_REASON_SANDBOX_NAMESPACES", "1").strip().lower() not in (
    "0", "false", "no", "off")


class _Zygote:
    def __init__(self) -> None:
        import subprocess

        self.owner = os.getpid()
        self.lock = threading.Lock()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--zygote",
                 str(child.fileno()), os.getcwd(), os.pathsep.join(HIDE),
                 "1" if NAMESPACES else "0"],
                pass_fds=[child.fileno()], env=dict(_MIN_ENV), cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
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
            self.proc.wait(timeout=2)
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
    ``mount_ns`` (read-only root, private /tmp, HIDE directories and the caller's cwd hidden),
    ``pid_ns`` (the model is pid 1 of its own pid namespace: its death kills all it forked),
    ``cgroup`` (v1 controllers capping all sandboxes together), ``network`` ("netns": empty
    network namespace, or "socket-blocked": socket creation refused in the child process),
    ``namespaces`` (whether namespaces were tried at all, see ``NAMESPACES``), ``seccomp``
    (a seccomp filter refuses every non-AF_UNIX socket() in the model's processes, across
    exec too; without it and without a netns, sockets are refused by patching the model
    interpreter's ``socket`` module only, which a subprocess or ctypes can get around).
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
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pidfd = None
        _send_frame(mine, marshal.dumps(header))
        _send_frame(mine, marshal.dumps(payload))
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
            return marshal.loads(_recv_frame(mine))
        except (EOFError, ValueError, OSError) as exc:
            return {"status": "sandbox_error", "detail": f"harness died without a verdict: {exc}"}
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


def run_tests(code: str, tests: str, entry_point: Optional[str] = None,
              limits: Limits = Limits()) -> TestOutcome:
    """Run ``tests`` against ``code``.

    If ``entry_point`` is given and the tests define ``check``, the harness calls
    ``check(<the solution's entry_point>)`` (HumanEval style); otherwise the tests' top-level
    asserts are the tests (MBPP style). The solution must be called at least once.
    """
    header = {"mode": "tests", "code": code, "limits": _limits_dict(limits)}
    payload = {"tests": tests, "entry_point": entry_point}
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


def run_io(code: str, inputs: list, limits: Limits = Limits(),
           stop_on_error: bool = True) -> list:
    """Run ``code`` as a program once per stdin string; a fresh process (and uid) per case.

    Returns one ``ProgramOutcome`` per case that ran (with ``stop_on_error`` the runs stop
    after the first crash, timeout or output overflow). Expected outputs never enter the
    sandbox: the caller compares.
    """
    header = {"mode": "io", "code": code, "limits": _limits_dict(limits),
              "stop_on_error": bool(stop_on_error)}
    payload = {"inputs": [str(x) for x in inputs]}
    res = _execute(header, payload, limits.timeout_s * max(1, len(inputs)) + 5.0)
    if res.get("status") != "ok":
        return [ProgramOutcome(None, None, "", _text(res.get("detail", "")),
                               timed_out=res.get("status") == "timeout")]
    out = []
    for case in res["cases"]:
        out.append(ProgramOutcome(
            exit_code=case["exit_code"], signal=case["signal"],
            stdout=case["stdout"].decode("utf-8", "replace"),
            stderr=_text(case["stderr"]), timed_out=case["timed_out"],
            output_exceeded=case["output_exceeded"], duration_s=case["duration_s"]))
    return out


def run_program(code: str, stdin: str = "", limits: Limits = Limits()) -> ProgramOutcome:
    """Run ``code`` as one program with ``stdin``."""
    return run_io(code, [stdin], limits)[0]


# --------------------------------------------------------------------------------------------
# Zygote (runs as `python -I -S sandbox.py --zygote FD`)

_CGROUP = "rl_reason_sandbox"
TMP_MB = 512  # the zygote's private /tmp (all its runs' working directories together)
_PRELOAD = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
            "typing", "random", "copy", "operator", "fractions", "decimal", "statistics",
            "hashlib", "json", "datetime", "io", "array", "dataclasses", "textwrap", "ctypes",
            "resource", "traceback", "tempfile", "shutil")
_SAFE_MODULES = frozenset(_PRELOAD) | {"cmath", "numbers", "enum", "abc", "sys", "time",
                                       "unicodedata", "struct", "queue", "calendar"}


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


_SECCOMP_ARCH = {  # machine -> (AUDIT_ARCH, socket syscall nr, x32 socket nr or an unused value)
    "x86_64": (0xC000003E, 41, 0x40000000 | 41),
    "aarch64": (0xC00000B7, 198, 0xFFFFFFFF),
}


def _seccomp_no_inet() -> None:
    """Install a seccomp filter: socket() with any family but AF_UNIX fails with EACCES.
    Inherited by children and kept across exec. Needs no_new_privs (set by the caller)."""
    import ctypes

    arch, nr, nr_x32 = _SECCOMP_ARCH[os.uname().machine]

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 13  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO|EACCES
    code = [
        (ld, 0, 0, 4),          # 0: A = arch
        (jeq, 0, 6, arch),      # 1: other arch -> allow (8)
        (ld, 0, 0, 0),          # 2: A = syscall nr
        (jeq, 1, 0, nr),        # 3: socket -> 5
        (jeq, 0, 3, nr_x32),    # 4: x32 socket -> 5, else allow (8)
        (ld, 0, 0, 16),         # 5: A = args[0] (low word): the address family
        (jeq, 1, 0, 1),         # 6: AF_UNIX -> allow (8)
        (ret, 0, 0, deny),      # 7
        (ret, 0, 0, allow),     # 8
    ]
    insns = (Insn * len(code))(*[Insn(*c) for c in code])
    prog = Prog(len(code), ctypes.cast(insns, ctypes.POINTER(Insn)))
    _prctl(22, 2, ctypes.addressof(prog))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _probe_seccomp() -> bool:
    """Can a child install the socket filter, and does it then refuse an AF_INET socket?"""
    if os.uname().machine not in _SECCOMP_ARCH:
        return False
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        code = 1
        try:
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
            _seccomp_no_inet()
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            except PermissionError:
                for end in socket.socketpair():  # AF_UNIX still works (the harness link)
                    end.close()
                code = 0
        except BaseException:
            pass
        os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


def _own_cgroup(ctl: str) -> str:
    """This process's cgroup (v1) for controller ``ctl``, e.g. "/a/b" or ""."""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, ctls, path = line.rstrip("\n").split(":", 2)
                if ctl in ctls.split(","):
                    return "" if path == "/" else path
    except (OSError, ValueError):
        pass
    return ""


def _zygote_setup(parent_cwd: str, hide: list, namespaces: bool = True) -> dict:
    info: dict = {"root": os.geteuid() == 0, "uid_drop": False, "mount_ns": False,
                  "pid_ns": False, "cgroup": [], "network": "socket-blocked",
                  "namespaces": bool(namespaces)}
    os.chdir("/")
    os.umask(0o022)
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the sandboxes come back here, get reaped
    except OSError:
        pass
    if info["root"]:
        info["uid_drop"] = True
        # A shared cgroup caps all sandboxes together (the per-process rlimits cannot bound
        # a fork + memory bomb in aggregate).
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = 8 << 30
        for ctl, knob, value in (("pids", "pids.max", "4096"),
                                 ("memory", "memory.limit_in_bytes",
                                  str(max(2 << 30, min(total // 2, 16 << 30))))):
            d = f"/sys/fs/cgroup/{ctl}{_own_cgroup(ctl)}/{_CGROUP}"
            try:
                os.makedirs(d, exist_ok=True)
                _write(f"{d}/{knob}", value)
                _write(f"{d}/cgroup.procs", str(os.getpid()))
                info["cgroup"].append(ctl)
            except OSError:
                pass
    if not namespaces:
        pass
    elif info["root"]:
        try:
            _unshare(CLONE_NEWNET)
            info["network"] = "netns"
        except OSError:
            pass
        try:
            _unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
            _setup_fs(parent_cwd, hide)
            info["mount_ns"] = True
        except OSError as exc:
            info["mount_ns_error"] = str(exc)
        try:  # probe: can a child get its own pid namespace?
            pid = os.fork()
            if pid == 0:
                try:
                    _unshare(CLONE_NEWPID)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, st = os.waitpid(pid, 0)
            info["pid_ns"] = os.waitstatus_to_exitcode(st) == 0
        except OSError:
            pass
    else:
        try:  # unprivileged user namespace: still gives an empty network namespace
            _unshare(CLONE_NEWUSER | CLONE_NEWNET)
            info["network"] = "netns"
        except OSError:
            pass
    info["seccomp"] = _probe_seccomp()
    for name in _PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    return info


def _setup_fs(parent_cwd: str, hide: list) -> None:
    """In the zygote's own mount namespace (once): read-only root; a private tmpfs on /tmp
    holding the per-run working directories (root-owned, so programs write only in their
    own); small tmpfs over the other world-writable places and over private directories;
    /proc remounted with hidepid=2 (a sandboxed uid sees only its own processes)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={TMP_MB}m,mode=711,nr_inodes=65536")
    for d, opts in (("/dev/shm", "size=16m,mode=1777"), ("/var/tmp", "size=64k,mode=755"),
                    ("/run/lock", "size=64k,mode=755"), ("/dev/mqueue", "size=64k,mode=755")):
        if os.path.isdir(d):
            try:
                _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, opts)
            except OSError:
                pass
    keep = os.path.realpath(sys.base_prefix)
    hide = [os.path.realpath(h) for h in hide if h]
    if parent_cwd and os.path.realpath(parent_cwd) not in ("/", "/tmp"):
        hide.append(os.path.realpath(parent_cwd))
    done: list = []
    for h in sorted(set(hide), key=len):
        if h == "/" or not os.path.isdir(h) or any(h.startswith(p + "/") for p in done):
            continue
        if keep == h or keep.startswith(h + "/"):
            stage = "/tmp/.stage"
            os.mkdir(stage)
            _mount(keep, stage, None, MS_BIND | MS_REC)
            _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
            os.makedirs(keep, exist_ok=True)
            _mount(stage, keep, None, MS_BIND | MS_REC)
            _mount(None, keep, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            _umount(stage)
            os.rmdir(stage)
        else:
            _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        done.append(h)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    except OSError:
        pass
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _sweep_uid(uid: int) -> None:
    """Kill every process running as ``uid`` (a helper that becomes ``uid`` and signals -1:
    an unprivileged kill(-1) reaches exactly the processes of its own uid). Used where no pid
    namespace takes a run's stray grandchildren down with it."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _zygote_main(fd: int, parent_cwd: str, hide: list, namespaces: bool = True) -> None:
    import shutil

    ctrl = socket.socket(fileno=fd)
    info = _zygote_setup(parent_cwd, hide, namespaces)
    ctrl.send(marshal.dumps(info))
    workdirs: dict = {}  # harness pid -> its working directory, removed once it is gone
    doomed: list = []
    serial = 0
    while True:
        try:
            ready = select.select([ctrl], [], [], 0.05 if (workdirs or doomed) else None)[0]
        except InterruptedError:
            ready = []
        while True:  # reap harnesses and adopted orphans
            try:
                pid, _st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            if pid in workdirs:
                wd, block = workdirs.pop(pid)
                if info["uid_drop"]:
                    # The model's uid (both modes): whatever outlived the harness dies now.
                    # (Measured: the parent-death signal does not reliably take down a model
                    # that is pid 1 of its namespace, so this sweep is what guarantees it.)
                    _sweep_uid(block + 1)
                doomed.append(wd)
        for d in list(doomed):
            shutil.rmtree(d, ignore_errors=True)
            if not os.path.exists(d):
                doomed.remove(d)
        if not ready:
            continue
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 16, 4)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        if not fds:
            continue
        for extra in fds[1:]:
            os.close(extra)
        serial += 1
        if info["mount_ns"]:
            workdir = f"/tmp/r{serial}-{os.urandom(6).hex()}"
            os.mkdir(workdir, 0o711)
        else:
            import tempfile

            workdir = tempfile.mkdtemp(prefix="rl-sbx-")
            os.chmod(workdir, 0o711)  # the run's uid must reach its own subdirectory
        block = _random_uid_block()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ctrl.close()
                _worker_main(fds[0], info, workdir, block)
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        workdirs[pid] = (workdir, block)
        os.close(fds[0])
        try:
            ctrl.send(struct.pack("<q", pid))
        except OSError:
            os._exit(0)


# --------------------------------------------------------------------------------------------
# Harness process W

class _Fatal(BaseException):
    """The run is lost (model process died, output overflow, protocol abuse, timeout)."""


class _Timeout(_Fatal):
    pass


def _random_uid_block() -> int:
    # 4096 fresh uids per run, none of them a real account; RLIMIT_NPROC counts per uid, so a
    # run only ever competes with itself.
    r = int.from_bytes(os.urandom(4), "little") % 0x40000
    return 0x10000000 + r * 4096


class _Child:
    """A model process M: forked, namespaced, limited, de-privileged."""

    def __init__(self, pid: int, sock, out_r: int, err_r: int, in_w: Optional[int]):
        self.pid, self.sock, self.out_r, self.err_r, self.in_w = pid, sock, out_r, err_r, in_w


def _spawn_model(hdr: dict, info: dict, workroot: str, uid: int, pidns_fd: Optional[int],
                 body, stdin_pipe: bool, case: int = 0) -> _Child:
    """Fork M. ``body(sock)`` runs in M after isolation and never returns."""
    lim = hdr["limits"]
    wd = os.path.join(workroot, f"w{case + 1}")  # a fresh directory per process
    os.mkdir(wd, 0o700)
    if info["uid_drop"]:
        os.chown(wd, uid, uid)
    ws, ms = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin_pipe else (None, None)
    life_r, life_w = os.pipe()
    if info["pid_ns"]:
        if pidns_fd is not None:
            _setns(pidns_fd, CLONE_NEWPID)
        _unshare(CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # ---------------- M
        try:
            os.close(life_w)
            ws.close()
            try:
                os.setsid()
            except OSError:
                pass
            # No /proc remount here: the mount namespace is the zygote's, shared by all runs
            # (its /proc has hidepid=2, so a sandboxed uid sees only its own processes).
            import resource

            mb = 1 << 20
            for res, val in ((resource.RLIMIT_CPU, lim["cpu_s"]),
                             (resource.RLIMIT_AS, lim["memory_mb"] * mb),
                             (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
                             (resource.RLIMIT_NOFILE, lim["open_files"]),
                             (resource.RLIMIT_NPROC, lim["processes"]),
                             (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(res, (val, val) if res != resource.RLIMIT_CPU else (val, val + 1))
            os.chdir(wd)
            if info["uid_drop"]:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
            if info.get("seccomp"):
                _seccomp_no_inet()  # kernel-level: holds across exec of a fresh interpreter
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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
            os.environ.update({"PATH": "/usr/bin:/bin", "HOME": wd, "LANG": "C.UTF-8",
                               "TMPDIR": wd})
            if info["network"] != "netns":
                _block_sockets(keep=sock)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT
                              else signal.default_int_handler)
            sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                         encoding="utf-8", errors="replace")
            sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                          encoding="utf-8", errors="replace")
            sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                          encoding="utf-8", errors="replace",
                                          line_buffering=True)
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
    child = _Child(pid, ws, out_r, err_r, in_w)
    child.life_w = life_w
    return child


def _block_sockets(keep) -> None:
    """Fallback when no network namespace: refuse new sockets in the model process."""
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


class _Output:
    """Capped collection of a model process's stdout and stderr."""

    def __init__(self, child: _Child, limit: int):
        self.fds = {child.out_r: bytearray(), child.err_r: bytearray()}
        self.child = child
        self.limit = limit
        self.total = 0
        self.exceeded = False

    def drain(self, fd: int) -> bool:
        """Read what is there; False at EOF."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        self.total += len(data)
        buf = self.fds[fd]
        if len(buf) < self.limit:
            buf += data[: self.limit - len(buf)]
        if self.total > self.limit:
            self.exceeded = True
        return True

    def drain_all(self) -> None:
        for fd in list(self.fds):
            while self.drain(fd):
                try:
                    if not select.select([fd], [], [], 0)[0]:
                        break
                except OSError:
                    break

    @property
    def stdout(self) -> bytes:
        return bytes(self.fds[self.child.out_r])

    @property
    def stderr(self) -> bytes:
        return bytes(self.fds[self.child.err_r])


def _worker_main(fd: int, info: dict, workroot: str, block: int) -> None:
    run = socket.socket(fileno=fd)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    started = time.monotonic()
    try:
        hdr = marshal.loads(_recv_frame(run))
    except (EOFError, ValueError, OSError):
        return
    try:
        os.chdir(workroot)
        try:
            pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY) if info["pid_ns"] else None
        except OSError:
            pidns_fd = None
        if hdr["mode"] == "tests":
            result = _tests_worker(run, hdr, info, workroot, pidns_fd, block)
        else:
            result = _io_worker(run, hdr, info, workroot, pidns_fd, block)
    except BaseException as exc:  # the harness failed; say so rather than hang
        result = {"status": "sandbox_error", "detail": f"{type(exc).__name__}: {exc}"}
    result["duration_s"] = time.monotonic() - started
    try:
        _send_frame(run, marshal.dumps(result))
    except OSError:
        pass


# ---- tests mode ----------------------------------------------------------------------------

_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set,
                    frozenset, bytearray, range, slice})
_SAFE_CLASSES = {
    ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytearray"), ("builtins", "range"), ("builtins", "slice"),
    ("fractions", "Fraction"), ("decimal", "Decimal"), ("collections", "OrderedDict"),
    ("collections", "Counter"), ("collections", "deque"), ("datetime", "date"),
    ("datetime", "time"), ("datetime", "datetime"), ("datetime", "timedelta"),
    ("datetime", "timezone"),
}
_VALUE_TYPES_NAMES = {f"{m}.{n}" for m, n in _SAFE_CLASSES}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only plain values; solution objects come back as remote handles."""

    def __init__(self, data: bytes, conn: "_Conn"):
        super().__init__(io.BytesIO(data))
        self.conn = conn

    def find_class(self, module, name):
        if (module, name) in _SAFE_CLASSES:
            return getattr(__import__(module), name)
        raise pickle.UnpicklingError(f"the solution sent a disallowed type {module}.{name}")

    def persistent_load(self, pid):
        if (type(pid) is tuple and len(pid) == 2 and pid[0] == "h" and type(pid[1]) is int):
            return _Remote(self.conn, pid, "<object>")
        raise pickle.UnpicklingError("bad reference")


class _ArgPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if type(obj) is _Remote:
            return object.__getattribute__(obj, "_ref")
        return None


_FATAL_EXC = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
              and issubclass(getattr(builtins, n), BaseException)
              and not issubclass(getattr(builtins, n), Exception)}


class RemoteError(Exception):
    """An exception raised by the solution whose type is not a builtin exception."""


class _Conn:
    def __init__(self, child: _Child, out: _Output, deadline: float):
        self.child, self.out, self.deadline = child, out, deadline
        self.calls = 0
        self.fatal: Optional[str] = None
        self.open_out = [child.out_r, child.err_r]

    def die(self, why: str, exc=_Fatal):
        if self.fatal is None:
            self.fatal = why
        raise exc(why)

    def recv(self):
        sock = self.child.sock
        buf = bytearray()
        need = 4
        have_len = False
        while True:
            if self.fatal:
                raise _Fatal(self.fatal)
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.die("timeout", _Timeout)
            try:
                r, _, _ = select.select([sock] + self.open_out, [], [], left)
            except InterruptedError:
                continue
            for fd in r:
                if fd is sock:
                    chunk = sock.recv(min(need - len(buf), 1 << 20))
                    if not chunk:
                        self.die("the solution's process exited or crashed")
                    buf += chunk
                    if len(buf) == need:
                        if not have_len:
                            need = struct.unpack("<I", buf)[0]
                            if need > _MAX_FRAME:
                                self.die("oversized reply")
                            have_len, buf = True, bytearray()
                            if need == 0:
                                return b""
                        else:
                            return bytes(buf)
                elif not self.out.drain(fd):
                    self.open_out.remove(fd)
            if self.out.exceeded:
                self.die("output limit exceeded")

    def decode(self, data: bytes):
        try:
            return _SafeUnpickler(data, self).load()
        except _Fatal:
            raise
        except Exception as exc:
            self.die(f"undecodable reply: {type(exc).__name__}: {str(exc)[:200]}")

    def request(self, op: str, ref, *args):
        if self.fatal:
            raise _Fatal(self.fatal)
        bio = io.BytesIO()
        try:
            _ArgPickler(bio, protocol=pickle.HIGHEST_PROTOCOL).dump((op, ref) + args)
        except Exception as exc:
            raise TypeError(f"cannot send this argument to the solution: {exc}") from None
        try:
            _send_frame(self.child.sock, bio.getvalue())
        except OSError:
            self.die("the solution's process exited or crashed")
        msg = self.decode(self.recv())
        if op == "call":
            self.calls += 1
        if type(msg) is not tuple or len(msg) != 2:
            self.die("malformed reply")
        tag, val = msg
        if tag == "ok":
            return val
        if tag == "exc" and type(val) is tuple and len(val) == 2:
            name, text = str(val[0])[:100], str(val[1])[:1000]
            if name in _FATAL_EXC:
                self.die(f"the solution raised {name}")
            cls = getattr(builtins, name, None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    raise cls(text)
                except TypeError:
                    pass
            raise RemoteError(f"{name}: {text}")
        self.die("malformed reply")


class _Remote:
    """A solution object living in the model's process."""

    __slots__ = ("_conn", "_ref", "_label")

    def __init__(self, conn, ref, label):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)

    def _req(self, op, *args):
        return object.__getattribute__(self, "_conn").request(
            op, object.__getattribute__(self, "_ref"), *args)

    def __call__(self, *args, **kwargs):
        return self._req("call", args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name not in ("__name__", "__qualname__", "__doc__"):
            raise AttributeError(name)
        return self._req("getattr", name)

    def __iter__(self):
        return iter(self._req("list"))

    def __len__(self):
        return self._req("len")

    def __getitem__(self, key):
        return self._req("getitem", key)

    def __contains__(self, item):
        return item in self._req("list")

    def __str__(self):
        return self._req("str")

    def __repr__(self):
        return f"<solution {object.__getattribute__(self, '_label')}>"

    # Equality is identity: an object that claims to equal everything stays in the model's
    # process and cannot vote in the harness.
    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _tests_worker(run, hdr: dict, info: dict, workroot: str, pidns_fd, block: int) -> dict:
    lim = hdr["limits"]
    code = hdr["code"]
    child = _spawn_model(hdr, info, workroot, block + 1, pidns_fd,
                         lambda sock: _model_serve(sock, code), stdin_pipe=False)
    # child.life_w stays open for as long as this process lives (M checks it once at start).
    # From here on nothing in this process is root: the verdict is computed as uid A.
    if info["uid_drop"]:
        os.setgroups([])
        os.setresgid(block, block, block)
        os.setresuid(block, block, block)
    _prctl(PR_SET_DUMPABLE, 0)
    import resource

    big = (lim["memory_mb"] * 2 + 512) << 20
    resource.setrlimit(resource.RLIMIT_AS, (big, big))
    payload = marshal.loads(_recv_frame(run))  # the tests enter memory only after M forked
    run.setblocking(True)
    deadline = time.monotonic() + float(lim["timeout_s"])
    out = _Output(child, int(lim["output_bytes"]))
    conn = _Conn(child, out, deadline)
    status, detail = "failed", ""

    def on_alarm(*_):
        conn.die("timeout", _Timeout)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))
    try:
        table = conn.decode(conn.recv())
        ns = _tests_namespace(conn, table)
        entry = payload.get("entry_point")
        candidate = None
        if entry:
            candidate = ns.get(entry)
            if type(candidate) is not _Remote:
                raise _Fatal(f"the solution does not define {entry!r}")
            ns.setdefault("candidate", candidate)
        tests = payload["tests"]
        exec(compile(tests, "<tests>", "exec"), ns)
        check = ns.get("check")
        if (entry and isinstance(check, types.FunctionType)
                and check.__code__.co_filename == "<tests>"):
            check(candidate)
        if conn.fatal:
            raise _Fatal(conn.fatal)
        if conn.calls == 0:
            status, detail = "failed", "no test ran (the solution was never called)"
        else:
            status = "passed"
    except _Timeout:
        status, detail = "timeout", f"time limit {lim['timeout_s']}s exceeded"
    except _Fatal as exc:
        status, detail = ("output_limit" if out.exceeded else "error"), str(exc)
    except BaseException as exc:  # AssertionError and anything else the tests raised
        status, detail = "failed", _describe(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if conn.fatal and status == "passed":  # a swallowed fatal error still fails the run
        status, detail = "error", conn.fatal
    if not info["pid_ns"] and not info["uid_drop"]:
        try:  # same uid as M: at least its process group goes (the zygote sweeps by uid)
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
    out.drain_all()
    if out.exceeded and status == "passed":
        status, detail = "output_limit", "output limit exceeded"
    return {"status": status, "calls": conn.calls, "detail": detail,
            "stdout": out.stdout[-4000:], "stderr": out.stderr[-4000:]}


def _describe(exc: BaseException) -> str:
    import traceback

    tb = exc.__traceback__
    where = ""
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == "<tests>":
            where = f" (tests line {lineno})"
    text = str(exc)[:500]
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


def _tests_namespace(conn: _Conn, table) -> dict:
    if type(table) is tuple and len(table) == 2 and table[0] == "load_error":
        raise _Fatal(f"the solution failed to load: {str(table[1])[:500]}")
    if type(table) is not tuple or len(table) != 2 or table[0] != "ready" \
            or type(table[1]) is not list:
        raise _Fatal("the solution's process did not start properly")
    import typing

    ns: dict = {"__name__": "__tests__", "__builtins__": builtins}
    for item in table[1][:10000]:
        if type(item) is not tuple or len(item) != 3 or type(item[0]) is not str:
            continue
        name, kind, value = item
        if not name.isidentifier() or name.startswith("__"):
            continue
        if kind == "ref":
            ns[name] = _Remote(conn, ("g", name), name)
        elif kind == "data":
            ns[name] = value
        elif kind == "module" and value in _SAFE_MODULES:
            try:
                ns[name] = __import__(value)
            except ImportError:
                pass
        elif kind == "typing" and type(value) is str and hasattr(typing, value):
            ns[name] = getattr(typing, value)
    return ns


# ---- model side of tests mode (runs in M) --------------------------------------------------

def _model_serve(sock, code: str) -> None:
    handles: dict = {}
    ns: dict = {"__name__": "solution", "__builtins__": builtins}

    class ResultPickler(pickle.Pickler):
        def persistent_id(self, obj):
            t = type(obj)
            if t in _PLAIN or f"{t.__module__}.{t.__qualname__}" in _VALUE_TYPES_NAMES:
                return None
            handles[len(handles) + 1] = obj
            return ("h", len(handles))

    def encode(msg) -> bytes:
        bio = io.BytesIO()
        ResultPickler(bio, protocol=pickle.HIGHEST_PROTOCOL).dump(msg)
        return bio.getvalue()

    def resolve(ref):
        if ref[0] == "g":
            return ns[ref[1]]
        return handles[ref[1]]

    class ArgUnpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            return resolve(pid)

    try:
        exec(compile(code, "<solution>", "exec"), ns)
        table = []
        for name, value in list(ns.items()):
            if name.startswith("__"):
                continue
            if isinstance(value, types.ModuleType):
                table.append((name, "module", value.__name__))
            elif getattr(value, "__module__", None) == "typing":
                table.append((name, "typing", name))
            elif type(value) in _PLAIN:
                before = len(handles)
                try:
                    encode(value)
                    plain = len(handles) == before
                except Exception:
                    plain = False
                table.append((name, "data", value) if plain else (name, "ref", None))
            else:
                table.append((name, "ref", None))
        reply = encode(("ready", table))
    except BaseException as exc:
        reply = encode(("load_error", f"{type(exc).__name__}: {str(exc)[:500]}"))
    _flush_std()
    _send_frame(sock, reply)
    while True:
        try:
            data = _recv_frame(sock)
        except BaseException:
            os._exit(0)
        try:
            req = ArgUnpickler(io.BytesIO(data)).load()
            op, ref = req[0], req[1]
            obj = resolve(ref)
            if op == "call":
                args, kwargs = req[2], req[3]
                value = obj(*args, **kwargs)
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
                reply = encode(("ok", value))
            except BaseException as exc:
                reply = encode(("exc", (type(exc).__name__, str(exc)[:1000])))
        except BaseException as exc:
            try:
                reply = encode(("exc", (type(exc).__name__, str(exc)[:1000])))
            except BaseException:
                reply = encode(("exc", ("Exception", "unprintable exception")))
        _flush_std()
        _send_frame(sock, reply)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ---- io mode -------------------------------------------------------------------------------

def _model_program(code: str) -> None:
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
    _flush_std()
    os._exit(status & 0xFF)


def _io_worker(run, hdr: dict, info: dict, workroot: str, pidns_fd, block: int) -> dict:
    lim = hdr["limits"]
    payload = marshal.loads(_recv_frame(run))
    code = hdr["code"]
    cases = []
    for i, data in enumerate(payload["inputs"]):
        uid = block + 1  # one uid per run; swept after each case where no pid namespace
        child = _spawn_model(hdr, info, workroot, uid, pidns_fd,
                             lambda _sock: _model_program(code), stdin_pipe=True, case=i)
        child.sock.close()
        cases.append(_run_case(child, data.encode(), lim))
        if not info["pid_ns"]:  # no namespace to take its strays down: this process does
            if info["uid_drop"]:
                _sweep_uid(uid)
            else:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass
        c = cases[-1]
        if hdr.get("stop_on_error") and (c["exit_code"] != 0 or c["timed_out"]
                                         or c["output_exceeded"]):
            break
    return {"status": "ok", "cases": cases}


def _run_case(child: _Child, data: bytes, lim: dict) -> dict:
    t0 = time.monotonic()
    deadline = t0 + float(lim["timeout_s"])
    out = _Output(child, int(lim["output_bytes"]))
    os.set_blocking(child.in_w, False)
    pending = memoryview(data)
    if not pending:
        os.close(child.in_w)
        child.in_w = None
    open_fds = {child.out_r, child.err_r}
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        wfds = [child.in_w] if child.in_w is not None else []
        try:
            r, w, _ = select.select(list(open_fds), wfds, [], left)
        except InterruptedError:
            continue
        for fd in r:
            if not out.drain(fd):
                open_fds.discard(fd)
        if w:
            try:
                k = os.write(child.in_w, pending[:65536])
                pending = pending[k:]
            except BlockingIOError:
                pass
            except OSError:
                pending = pending[:0]
            if not pending:
                os.close(child.in_w)
                child.in_w = None
        if out.exceeded:
            break
    if timed_out or out.exceeded:
        try:
            os.kill(child.pid, signal.SIGKILL)  # pid 1 of its namespace: takes all with it
        except OSError:
            pass
    if child.in_w is not None:
        os.close(child.in_w)
    left = max(0.05, deadline + 1.0 - time.monotonic())
    _, st = _waitpid_deadline(child.pid, left)
    out.drain_all()
    for fd in (child.out_r, child.err_r, child.life_w):
        try:
            os.close(fd)
        except OSError:
            pass
    exit_code = sig = None
    if st is not None:
        if os.WIFEXITED(st):
            exit_code = os.WEXITSTATUS(st)
        elif os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
    return {"exit_code": exit_code, "signal": sig, "stdout": out.stdout,
            "stderr": out.stderr[-4000:], "timed_out": timed_out,
            "output_exceeded": out.exceeded, "duration_s": time.monotonic() - t0}


def _waitpid_deadline(pid: int, timeout: float):
    end = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            got, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return pid, None
        if got:
            return got, st
        if time.monotonic() > end:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            return os.waitpid(pid, 0)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--zygote":
    _zygote_main(int(sys.argv[2]), sys.argv[3], sys.argv[4].split(os.pathsep),
                 sys.argv[5] == "1")
