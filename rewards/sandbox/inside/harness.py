"""The harness process W: one per run, forked by the zygote. It sets up the run's own mount and
IPC namespaces (fresh /tmp and /dev/shm), forks the model process M, runs the tests against
proxies of the solution, and writes the verdict. From the moment M exists nothing here runs as
root, and nothing the model sends is more than data.
"""

from __future__ import annotations

import ast
import builtins
import marshal
import os
import select
import signal
import struct
import sys
import time
import types
from typing import Optional

from . import model, system, wire

SAFE_MODULES = frozenset(
    {
        "math",
        "re",
        "collections",
        "itertools",
        "functools",
        "heapq",
        "bisect",
        "string",
        "typing",
        "random",
        "copy",
        "operator",
        "fractions",
        "decimal",
        "statistics",
        "hashlib",
        "json",
        "datetime",
        "io",
        "array",
        "dataclasses",
        "textwrap",
        "cmath",
        "numbers",
        "enum",
        "abc",
        "time",
        "unicodedata",
        "struct",
        "queue",
        "calendar",
    }
)
# Exceptions that steer control flow rather than report a failure: crossing from the
# solution into a test they would end a loop or a generator silently.
CONTROL_FLOW = frozenset({"StopIteration", "StopAsyncIteration", "GeneratorExit"})
_FATAL_EXC = frozenset(
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type)
    and issubclass(getattr(builtins, n), BaseException)
    and not issubclass(getattr(builtins, n), Exception)
)
_BUILTIN_NAMES = frozenset(dir(builtins))
_MODULE_NAMES = frozenset(getattr(sys, "stdlib_module_names", ())) | SAFE_MODULES


class Fatal(BaseException):
    """The run is lost (model process died, output overflow, protocol abuse, timeout)."""


class Timeout(Fatal):
    pass


class RemoteError(Exception):
    """An exception from the solution that maps to no builtin exception type."""


# ---------------------------------------------------------------- per-run namespaces


def enter_run_namespaces(lim: dict, pid: bool = False) -> str:
    """Own IPC namespace (SysV and POSIX queues die with the run), own empty /tmp and /dev/shm
    (tmpfs with size and inode limits; they vanish with the run's mount namespace); with
    ``pid``, also the pid namespace the next model process is pid 1 of. One unshare call:
    each one costs an RCU grace period (milliseconds), whatever it holds."""
    system.unshare(system.CLONE_NEWNS | system.CLONE_NEWIPC | (system.CLONE_NEWPID if pid else 0))
    model.FRESH_PIDNS = pid
    # /tmp root-owned as before (programs write in their own directory, TMPDIR); /dev/shm
    # world-writable (POSIX shared memory and semaphores live there)
    opts = f"size={int(lim['tmp_mb'])}m,nr_inodes={int(lim['tmp_inodes'])},mode=711"
    flags = system.MS_NOSUID | system.MS_NODEV
    system.mount("tmpfs", "/tmp", "tmpfs", flags, opts)
    if os.path.isdir("/dev/shm"):
        system.mount(
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            flags,
            f"size={int(lim['shm_mb'])}m,nr_inodes={int(lim['tmp_inodes'])},mode=1777",
        )
    # the run's own directories: root-owned, reachable only as far as each process's own;
    # a random name, so no path is the same in two runs
    root = f"/tmp/run-{os.urandom(6).hex()}"
    os.mkdir(root, 0o711)
    return root


class Output:
    """Capped collection of a model process's stdout and stderr."""

    def __init__(self, child: model.Child, limit: int):
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


def worker_main(fd: int, info: dict, workroot: Optional[str], block: int, cgroup: Optional[str]) -> None:
    import socket

    run = socket.socket(fileno=fd)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    started = time.monotonic()
    try:
        hdr = marshal.loads(wire.recv_frame(run))
    except (EOFError, ValueError, OSError):
        return
    try:
        if info["root"]:
            system.write("/proc/self/oom_score_adj", "1000")  # runs go first, not the zygote
        if cgroup is not None:
            system.RunGroups.join(cgroup)  # first: everything the run starts is in it
        try:
            pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY) if info["pid_ns"] else None
        except OSError:
            pidns_fd = None
        if info["run_ns"]:
            workroot = enter_run_namespaces(hdr["limits"], pid=info["pid_ns"])
        os.chdir(workroot)
        if hdr["mode"] == "tests":
            result = tests_worker(run, hdr, info, workroot, pidns_fd, block)
        else:
            result = io_worker(run, hdr, info, workroot, pidns_fd, block)
    except BaseException as exc:  # the harness failed; say so rather than hang
        result = {"status": "sandbox_error", "detail": f"{type(exc).__name__}: {exc}"}
    result["duration_s"] = time.monotonic() - started
    try:
        wire.send_frame(run, marshal.dumps(result))
    except OSError:
        pass


# ---------------------------------------------------------------- the link to M


class Conn:
    def __init__(self, child: model.Child, out: Output, deadline: float):
        self.child, self.out, self.deadline = child, out, deadline
        self.calls = 0
        self.fatal: Optional[str] = None
        self.open_out = [child.out_r, child.err_r]

    def die(self, why: str, exc=Fatal):
        if self.fatal is None:
            self.fatal = why
        raise exc(why)

    def recv(self) -> bytes:
        sock = self.child.sock
        buf = bytearray()
        need = 4
        have_len = False
        while True:
            if self.fatal:
                raise Fatal(self.fatal)
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.die("timeout", Timeout)
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
                            if need > wire.MAX_FRAME:
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

    def _ref(self, tag, v):
        if tag == "ref" and type(v) is int and v >= 0:
            return Remote(self, wire.Ref("ref", v), "<object>")
        raise wire.WireError("bad reference")

    def decode(self, data: bytes):
        try:
            return wire.decode(data, self._ref)
        except Fatal:
            raise
        except Exception as exc:  # includes RecursionError, MemoryError from the decoder
            self.die(f"undecodable reply: {type(exc).__name__}: {str(exc)[:200]}")

    def request(self, op: str, ref, *args):
        if self.fatal:
            raise Fatal(self.fatal)
        try:
            data = wire.encode([op, ref] + list(args), remote_ref=_remote_ref)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(f"cannot send this argument to the solution: {exc}") from None
        try:
            wire.send_frame(self.child.sock, data)
        except OSError:
            self.die("the solution's process exited or crashed")
        if op == "call":
            self.calls += 1  # a call the tests made (nothing else sends one)
        msg = self.decode(self.recv())
        if type(msg) is not list or not msg:
            self.die("malformed reply")
        if msg[0] == "ok" and len(msg) == 2:
            return msg[1]
        if msg[0] == "exc" and len(msg) == 3 and type(msg[1]) is list and type(msg[2]) is str:
            raise_remote(self, [str(n)[:100] for n in msg[1][:16]], msg[2][:1000])
        self.die("malformed reply")


def raise_remote(conn: Conn, names: list, text: str):
    """Raise, in the tests, the solution's exception as the nearest builtin exception type of
    its class's MRO (a ``class E(ValueError)`` reaches ``except ValueError``)."""
    for name in names:
        if name in CONTROL_FLOW:
            conn.die(f"the solution raised {name} (control flow may not cross into the tests)")
        if name in _FATAL_EXC and (name != "BaseException" or name == names[0]):
            conn.die(f"the solution raised {name}")
    for name in names:
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            continue
        try:
            exc = cls(text)
        except Exception:  # e.g. UnicodeDecodeError needs five arguments: try the next base
            continue
        raise exc from None
    raise RemoteError(f"{names[0] if names else 'Exception'}: {text}") from None


def _remote_ref(obj):
    if type(obj) is Remote:
        return object.__getattribute__(obj, "_ref")
    return None


class Remote:
    """A solution object living in the model's process."""

    __slots__ = ("_conn", "_ref", "_label")

    def __init__(self, conn, ref, label):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)

    def _req(self, op, *args):
        return object.__getattribute__(self, "_conn").request(
            op, object.__getattribute__(self, "_ref"), *args
        )

    def __call__(self, *args, **kwargs):
        return self._req("call", list(args), kwargs)

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


# ---------------------------------------------------------------- the tests


class AssertCounter(ast.NodeTransformer):
    """Marks every assert with a call that records it ran. Asserts on the tests' straight
    path (the module body and ``check``'s body, through ``for``/``while``/``with`` bodies but
    not through ``if``/``try``/``else`` branches or other functions) must all run for a
    pass: a test that ends early without failing (a loop cut short) is not a pass."""

    HOOK = "__rl_assert_ran__"

    def __init__(self):
        self.required: set = set()
        self.total = 0
        self.lines: dict = {}

    def run(self, tree: ast.Module, check: bool) -> ast.Module:
        self._straight(tree.body)
        if check:
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name == "check":
                    self._straight(node.body)
        self.visit(tree)
        return ast.fix_missing_locations(tree)

    def _straight(self, body):
        for node in body:
            if isinstance(node, ast.Assert):
                node._rl_required = True
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)):
                self._straight(node.body)

    def visit_Assert(self, node):
        i = self.total
        self.total += 1
        self.lines[i] = node.lineno
        if getattr(node, "_rl_required", False):
            self.required.add(i)
        mark = ast.Expr(ast.Call(ast.Name(self.HOOK, ast.Load()), [ast.Constant(i)], []))
        return [ast.copy_location(mark, node), node]


def tests_namespace(conn: Conn, table, entry: Optional[str], prompt: Optional[str]) -> dict:
    """The tests' globals: the harness's own builtins, what the task's prompt declares (run
    here: it is task data, not model output), and the solution's entry point as a proxy. Without
    an entry point (assert-style tests), the solution's other names, except any that would
    shadow a builtin or a module, and no module object of the solution's (a name it bound
    with ``import math`` gets the harness's own ``math``)."""
    if type(table) is list and len(table) == 2 and table[0] == "load_error":
        raise Fatal(f"the solution failed to load: {str(table[1])[:500]}")
    if type(table) is not list or len(table) != 2 or table[0] != "ready" or type(table[1]) is not list:
        raise Fatal("the solution's process did not start properly")
    ns: dict = {"__name__": "__tests__", "__builtins__": builtins}
    if prompt:
        try:
            exec(compile(prompt, "<prompt>", "exec"), ns)
        except Exception as exc:
            raise Fatal(f"the task's prompt does not run: {type(exc).__name__}: {exc}") from None
    names = {}
    for item in table[1][:10000]:
        if (
            type(item) is list
            and len(item) == 3
            and type(item[0]) is str
            and item[0].isidentifier()
            and not item[0].startswith("__")
        ):
            names[item[0]] = (item[1], item[2])
    if entry:
        kind, _ = names.get(entry, (None, None))
        if kind != "ref":
            raise Fatal(f"the solution does not define {entry!r}")
        ns[entry] = Remote(conn, wire.Ref("g", entry), entry)
        return ns
    for name, (kind, value) in names.items():
        if name in _BUILTIN_NAMES or name in _MODULE_NAMES:
            if kind == "module" and value == name and name in SAFE_MODULES:
                try:
                    ns[name] = __import__(name)
                except ImportError:
                    pass
            continue
        if kind == "ref":
            ns[name] = Remote(conn, wire.Ref("g", name), name)
        elif kind == "data":
            ns[name] = value
    return ns


def tests_worker(run, hdr: dict, info: dict, workroot: str, pidns_fd, block: int) -> dict:
    lim = hdr["limits"]
    code = hdr["code"]
    child = model.spawn(
        lim, info, workroot, block + 1, pidns_fd, lambda sock: model.serve(sock, code), stdin_pipe=False
    )
    # child.life_w stays open for as long as this process lives (M checks it once at start).
    # From here on nothing in this process is root: the verdict is computed as uid A.
    if info["uid_drop"]:
        os.setgroups([])
        os.setresgid(block, block, block)
        os.setresuid(block, block, block)
    system.prctl(system.PR_SET_DUMPABLE, 0)
    import resource

    big = (lim["memory_mb"] * 2 + 512) << 20
    resource.setrlimit(resource.RLIMIT_AS, (big, big))
    payload = marshal.loads(wire.recv_frame(run))  # the tests enter memory only after M forked
    run.setblocking(True)
    deadline = time.monotonic() + float(lim["timeout_s"])
    out = Output(child, int(lim["output_bytes"]))
    conn = Conn(child, out, deadline)
    status, detail = "failed", ""
    entry = payload.get("entry_point")
    counter = AssertCounter()
    ran: set = set()

    def on_alarm(*_):
        conn.die("timeout", Timeout)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))
    try:
        tree = ast.parse(payload["tests"], "<tests>")
        code_obj = compile(counter.run(tree, bool(entry)), "<tests>", "exec")
        table = conn.decode(conn.recv())
        ns = tests_namespace(conn, table, entry, payload.get("prompt"))
        ns[AssertCounter.HOOK] = ran.add
        candidate = ns.get(entry) if entry else None
        if entry:
            ns.setdefault("candidate", candidate)
        exec(code_obj, ns)
        check = ns.get("check")
        if entry and isinstance(check, types.FunctionType) and check.__code__.co_filename == "<tests>":
            check(candidate)
        if conn.fatal:
            raise Fatal(conn.fatal)
        missing = sorted(counter.required - ran)
        if conn.calls == 0:
            status, detail = "failed", "no test ran (the solution was never called)"
        elif missing:
            status = "failed"
            detail = (
                f"{len(missing)} of {len(counter.required)} asserts never ran "
                f"(tests line {counter.lines[missing[0]]})"
            )
        else:
            status = "passed"
    except Timeout:
        status, detail = "timeout", f"time limit {lim['timeout_s']}s exceeded"
    except Fatal as exc:
        status, detail = ("output_limit" if out.exceeded else "error"), str(exc)
    except BaseException as exc:  # AssertionError and anything else the tests raised
        status, detail = "failed", describe(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if conn.fatal and status == "passed":  # a swallowed fatal error still fails the run
        status, detail = "error", conn.fatal
    if not info["pid_ns"] and not info["uid_drop"]:
        try:  # same uid as M: at least its process group goes
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
    out.drain_all()
    if out.exceeded and status == "passed":
        status, detail = "output_limit", "output limit exceeded"
    return {
        "status": status,
        "calls": conn.calls,
        "detail": detail,
        "stdout": out.stdout[-4000:],
        "stderr": out.stderr[-4000:],
    }


def describe(exc: BaseException) -> str:
    import traceback

    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<tests>":
            where = f" (tests line {lineno})"
    try:
        text = str(exc)[:500]
    except Exception:
        text = ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


# ---------------------------------------------------------------- io mode


def io_worker(run, hdr: dict, info: dict, workroot: str, pidns_fd, block: int) -> dict:
    lim = hdr["limits"]
    payload = marshal.loads(wire.recv_frame(run))
    code = hdr["code"]
    cases = []
    for i, data in enumerate(payload["inputs"]):
        uid = block + 1  # one uid per run
        child = model.spawn(
            lim, info, workroot, uid, pidns_fd, lambda _sock: model.program(code), stdin_pipe=True, case=i
        )
        child.sock.close()
        cases.append(run_case(child, data.encode(), lim))
        if not info["pid_ns"]:  # no namespace to take its strays down: this process does
            if info["uid_drop"]:
                system.sweep_uid(uid)
            else:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass
        c = cases[-1]
        if hdr.get("stop_on_error") and (c["exit_code"] != 0 or c["timed_out"] or c["output_exceeded"]):
            break
    return {"status": "ok", "cases": cases}


def run_case(child: model.Child, data: bytes, lim: dict) -> dict:
    t0 = time.monotonic()
    deadline = t0 + float(lim["timeout_s"])
    out = Output(child, int(lim["output_bytes"]))
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
    return {
        "exit_code": exit_code,
        "signal": sig,
        "stdout": out.stdout,
        "stderr": out.stderr[-4000:],
        "timed_out": timed_out,
        "output_exceeded": out.exceeded,
        "duration_s": time.monotonic() - t0,
    }


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
