"""rewards.sandbox: honest code passes; each attack is contained and scored as a failure.

Every attack below is written so that, if the protection it targets were missing, the attack
would *succeed* (the solution would return the right answer, the test would pass wrongly, or
a file / process / connection the test checks for would appear), so each test can fail.
Attacks that could hurt the machine through a broken sandbox are bounded (fan-out, sizes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from rewards import sandbox
from rewards.sandbox import Limits

REPO = Path(__file__).resolve().parents[2]
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
GOOD = "def add(a, b):\n    return a + b\n"
FAST = Limits(timeout_s=1.5)


def run(code: str, tests: str = TESTS, entry: str | None = "add", limits: Limits = FAST):
    return sandbox.run_tests(code, tests, entry, limits)


def caps() -> dict:
    return sandbox.capabilities()


def token() -> str:
    return "sbx" + uuid.uuid4().hex[:10]  # <= 15 chars: fits a process comm name


def procs_named(name: str) -> list[int]:
    """Live (non-zombie) processes whose comm is ``name``, as the host sees them."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as fh:
                comm = fh.read().strip()
            with open(f"/proc/{d}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm == name and state not in ("Z", "X"):
            found.append(int(d))
    return found


def wait_gone(name: str, within: float = 3.0) -> list[int]:
    end = time.monotonic() + within
    while True:
        left = procs_named(name)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


SETNAME = "__import__('ctypes').CDLL(None).prctl(15, {tok!r}.encode(), 0, 0, 0)"


# ---------------------------------------------------------------- basics


def test_capabilities_report_what_applies():
    info = caps()
    for key in ("root", "uid_drop", "mount_ns", "pid_ns", "cgroup", "network", "namespaces", "seccomp"):
        assert key in info
    assert info["network"] in ("netns", "socket-blocked")
    assert sandbox.network_isolation() == info["network"]
    if info["root"]:
        assert info["uid_drop"] is True  # root must never run model code as root


def test_honest_solution_passes_and_wrong_one_fails():
    ok = run(GOOD)
    assert (ok.passed, ok.status, ok.calls) == (True, "passed", 2)
    bad = run("def add(a, b):\n    return a - b\n")
    assert (bad.passed, bad.status) == (False, "failed")
    assert "AssertionError" in bad.detail


def test_plain_asserts_and_no_test_ran():
    asserts = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"
    assert run(GOOD, asserts, None).passed is True
    assert run("def add(a, b):\n    return 3\n", asserts, None).passed is False
    # tests that never call the solution are a failure, not a pass
    nothing = run(GOOD, "x = 1\n", None)
    assert (nothing.passed, nothing.calls) == (False, 0)
    empty_check = run(GOOD, "def check(candidate):\n    pass\n", "add")
    assert (empty_check.passed, empty_check.calls) == (False, 0)
    missing = run("def other(a, b):\n    return a + b\n")
    assert missing.passed is False and "add" in missing.detail


def test_runs_as_unprivileged_uid_in_throwaway_dir_with_closed_stdin():
    code = (
        "import os, sys\n"
        "print(os.getuid(), os.geteuid(), os.getcwd(), repr(sys.stdin.read()))\n"
        "open('scratch.txt', 'w').write('x')\n"
    )
    a = sandbox.run_program(code, stdin="")
    b = sandbox.run_program(code, stdin="")
    assert a.ok and b.ok, (a.stderr, b.stderr)
    uid, euid, cwd, stdin = a.stdout.split()
    assert stdin == "''"
    if caps()["uid_drop"]:
        assert int(uid) != 0 and int(euid) != 0
    assert cwd != b.stdout.split()[2]  # each run gets its own directory
    assert not os.path.exists(os.path.join(cwd, "scratch.txt"))  # and it is thrown away


# ---------------------------------------------------------------- exit tricks


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)\n" + GOOD,
        "import os\nos._exit(0)\n" + GOOD,
        "raise SystemExit(0)\n" + GOOD,
        "import sys\ndef add(a, b):\n    sys.exit(0)\n",
        "import os\ndef add(a, b):\n    os._exit(0)\n",
        "def add(a, b):\n    raise SystemExit(0)\n",
        "def add(a, b):\n    raise KeyboardInterrupt\n",
        "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    ],
    ids=[
        "sys.exit-top",
        "os._exit-top",
        "SystemExit-top",
        "sys.exit-in-call",
        "os._exit-in-call",
        "SystemExit-in-call",
        "KeyboardInterrupt-in-call",
        "self-kill",
    ],
)
def test_exit_before_or_during_tests_fails(code):
    out = run(code)
    assert out.passed is False
    assert out.status in ("error", "failed")


def test_raising_systemexit_in_tests_does_not_pass():
    tests = "def check(candidate):\n    candidate(1, 1)\n    raise SystemExit(0)\n"
    assert run(GOOD, tests).passed is False


def test_fake_pass_output_is_ignored():
    code = (
        "print('PASSED'); print('All tests passed!'); print('OK')\n"
        "import sys; sys.stderr.write('ok\\n')\n"
        "def add(a, b):\n    print('test passed')\n    return 0\n"
    )
    out = run(code)
    assert (out.passed, out.status) == (False, "failed")
    assert "PASSED" in out.stdout  # it printed; the harness did not care


# ---------------------------------------------------------------- monkeypatching


@pytest.mark.parametrize(
    "code",
    [
        # builtins replaced in the model process
        "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\ndef add(a, b):\n    return 0\n",
        # its own `check` that accepts anything
        "def check(candidate):\n    return True\ndef add(a, b):\n    return 0\n",
        # an object that equals everything
        "class E:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
        "def add(a, b):\n    return E()\n",
        # an int subclass that equals everything
        "class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return I(0)\n",
        # reaching for the caller's frames / assert machinery
        "import sys, gc\nfor o in gc.get_objects():\n    if type(o) is dict and 'check' in o:\n"
        "        o['check'] = lambda c: None\ndef add(a, b):\n    return 0\n",
        # __import__ hijack
        "import builtins\n_real = builtins.__import__\n"
        "builtins.__import__ = lambda *a, **k: _real(*a, **k)\ndef add(a, b):\n    return 0\n",
    ],
    ids=["builtins", "own-check", "always-equal", "int-subclass-equal", "gc-frames", "import-hook"],
)
def test_monkeypatching_cannot_change_the_verdict(code):
    out = run(code)
    assert out.passed is False, out


def test_forged_frames_on_inherited_fds_do_not_pass():
    code = (
        "import os, struct, marshal, pickle\n"
        "fake = marshal.dumps({'status': 'passed', 'calls': 5})\n"
        "ok = pickle.dumps(('ok', 5))\n"
        "for fd in range(3, 64):\n"
        "    for blob in (fake, ok):\n"
        "        try:\n"
        "            os.write(fd, struct.pack('<I', len(blob)) + blob)\n"
        "        except OSError:\n"
        "            pass\n"
        "def add(a, b):\n    return 0\n"
    )
    assert run(code).passed is False


def test_closing_the_harness_fds_fails():
    code = "import os\ndef add(a, b):\n    os.closerange(0, 1024)\n    return a + b\n"
    out = run(code)
    assert (out.passed, out.status) == (False, "error")


def test_dup_over_the_harness_fd_fails():
    code = "import os\nos.dup2(1, 3)\nos.dup2(2, 4)\n" + GOOD
    out = run(code)
    assert out.passed is False
    assert out.status in ("timeout", "error")


# ---------------------------------------------------------------- resources


def test_infinite_loop_is_killed_with_its_grandchildren():
    tok = token()
    code = (
        "import os\n"
        "def add(a, b):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        f"            {SETNAME.format(tok=tok)}\n"
        "            while True:\n"
        "                pass\n"
        "        os._exit(0)\n"
        f"    {SETNAME.format(tok=tok)}\n"
        "    while True:\n"
        "        pass\n"
    )
    box: dict = {}
    th = threading.Thread(target=lambda: box.setdefault("out", run(code, limits=Limits(timeout_s=2))))
    t0 = time.monotonic()
    th.start()
    seen = 0
    while th.is_alive():
        seen = max(seen, len(procs_named(tok)))
        time.sleep(0.05)
    th.join()
    took = time.monotonic() - t0
    out = box["out"]
    assert seen == 2  # the model process and its escaped grandchild both really ran
    assert (out.passed, out.status) == (False, "timeout")
    assert took < 2 + 4
    assert wait_gone(tok) == []  # nothing left behind


def test_signal_handler_tricks_do_not_survive_the_timeout():
    tok = token()
    code = (
        "import signal\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGXCPU,\n"
        "          signal.SIGUSR1, signal.SIGPIPE):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "def add(a, b):\n"
        f"    {SETNAME.format(tok=tok)}\n"
        "    signal.alarm(0)\n"
        "    while True:\n"
        "        pass\n"
    )
    t0 = time.monotonic()
    out = run(code, limits=Limits(timeout_s=1))
    assert (out.passed, out.status) == (False, "timeout")
    assert time.monotonic() - t0 < 5
    assert wait_gone(tok) == []


def test_fork_bomb_is_bounded_and_cleaned_up():
    # bounded fan-out: even through a broken sandbox this is 300 sleeping processes for 20 s
    tok = token()
    code = (
        "import os, time\n"
        "def add(a, b):\n"
        "    n = 0\n"
        "    for _ in range(300):\n"
        "        if os.fork() == 0:\n"
        f"            {SETNAME.format(tok=tok)}\n"
        "            time.sleep(20)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "    return a + b if n == 300 else None\n"
    )
    out = run(code, limits=Limits(timeout_s=3, processes=32))
    assert out.passed is False
    assert wait_gone(tok) == []
    assert run(GOOD).passed is True  # the sandbox (and this machine) still work


def test_memory_bomb_fails():
    code = "def add(a, b):\n    x = bytearray(3 << 30)\n    return a + b + x[-1]\n"
    out = run(code, limits=Limits(timeout_s=5, memory_mb=512))
    assert out.passed is False
    assert "MemoryError" in out.detail


def test_recursion_bombs_fail():
    assert run("def add(a, b):\n    return add(a, b)\n").passed is False
    deep = "import sys\nsys.setrecursionlimit(10**8)\ndef add(a, b, d=0):\n    return add(a, b, d + 1)\n"
    assert run(deep, limits=Limits(timeout_s=5)).passed is False


def test_huge_output_is_capped():
    code = "def add(a, b):\n    print('PASSED ' * (4 << 20))\n    return a + b\n"
    out = run(code, limits=Limits(timeout_s=5, output_bytes=1 << 20))
    assert (out.passed, out.status) == (False, "output_limit")
    assert len(out.stdout) < 10_000
    spam = "def add(a, b):\n    while True:\n        print('PASSED')\n"
    assert run(spam, limits=Limits(timeout_s=5)).status == "output_limit"


def test_huge_file_is_refused():
    code = (
        "def add(a, b):\n"
        "    with open('big.bin', 'wb') as fh:\n"
        "        for _ in range(64):\n"
        "            fh.write(b'0' * (1 << 20))\n"
        "    return a + b\n"
    )
    out = run(code, limits=Limits(timeout_s=5, file_size_mb=8))
    assert out.passed is False
    assert run(code, limits=Limits(timeout_s=5, file_size_mb=128)).passed is True  # control


# ---------------------------------------------------------------- secrets, files, network


def test_environment_secrets_are_not_visible(monkeypatch):
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("RL_TEST_SECRET", secret)
    sandbox.shutdown()  # the next zygote starts from a parent environment holding the secret
    code = (
        "import os, glob\n"
        "def add(a, b):\n"
        "    found = os.environ.get('RL_TEST_SECRET', '')\n"
        "    for p in glob.glob('/proc/*/environ'):\n"
        "        try:\n"
        "            data = open(p, 'rb').read()\n"
        "        except OSError:\n"
        "            continue\n"
        "        if b'RL_TEST_SECRET=' in data:\n"
        "            found = data.split(b'RL_TEST_SECRET=')[1].split(b'\\0')[0].decode()\n"
        "    return found\n"
    )
    tests = f"def check(candidate):\n    assert candidate(0, 0) == {secret!r}\n"
    out = run(code, tests)
    assert (out.passed, out.status) == (False, "failed")
    env = sandbox.run_program("import os\nprint(' '.join(sorted(os.environ)))\n")
    assert env.ok
    assert set(env.stdout.split()) <= {"PATH", "HOME", "LANG", "TMPDIR"}


def test_no_network_connection_reaches_a_local_listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        code = (
            "import socket, ctypes, struct\n"
            "def add(a, b):\n"
            "    try:\n"
            f"        s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "        s.sendall(b'hello')\n"
            "        return a + b\n"
            "    except OSError:\n"
            "        pass\n"
            "    import subprocess, sys\n"  # a fresh interpreter, free of in-process patches
            "    r = subprocess.run([sys.executable, '-c', 'import socket; "
            f'socket.create_connection(("127.0.0.1", {port}), timeout=1)\'], '
            "capture_output=True, timeout=5)\n"
            "    return a + b if r.returncode == 0 else None\n"
        )
        out = run(code, limits=Limits(timeout_s=8))
        assert out.passed is False
        srv.settimeout(0.3)
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_writes_and_deletes_outside_the_workdir_fail(tmp_path):
    tok = token()
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    targets = [
        str(tmp_path / "pwned.txt"),
        str(REPO / f".{tok}"),
        f"/tmp/{tok}",
        f"/var/tmp/{tok}",
        os.path.join(os.getcwd(), f".{tok}-cwd"),
    ]
    victims = [str(sentinel)]
    code = (
        "import os\n"
        "def add(a, b):\n"
        "    n = 0\n"
        f"    for p in {targets!r}:\n"
        "        try:\n"
        "            with open(p, 'w') as fh:\n"
        "                fh.write('pwned')\n"
        "            n += 1\n"
        "        except OSError:\n"
        "            pass\n"
        f"    for p in {victims!r}:\n"
        "        try:\n"
        "            os.remove(p)\n"
        "            n += 1\n"
        "        except OSError:\n"
        "            pass\n"
        f"    os.system('touch {targets[0]}.sh 2>/dev/null; rm -f {victims[0]} 2>/dev/null')\n"
        "    return a + b if n else None\n"
    )
    try:
        out = run(code)
        assert out.passed is False
        assert sentinel.read_text() == "keep me"
        for t in targets + [targets[0] + ".sh"]:
            assert not os.path.exists(t), t
    finally:
        for t in targets + [targets[0] + ".sh"]:
            try:
                os.remove(t)
            except OSError:
                pass


def test_files_under_work_and_the_cwd_are_hidden():
    if not caps()["mount_ns"]:
        pytest.skip(
            "no mount namespace here: hidden directories do not apply "
            f"({caps().get('mount_ns_error', 'namespaces unavailable')})"
        )
    target = REPO / "pyproject.toml"
    first = target.read_text().splitlines()[0]
    code = (
        "import os\n"
        "def add(a, b):\n"
        f"    for p in ({str(target)!r}, os.path.join({os.getcwd()!r}, 'pyproject.toml'),\n"
        "              '/root/.bash_history', '/work/shared/DESIGN.md'):\n"
        "        try:\n"
        "            line = open(p).read().splitlines()[0]\n"
        f"            if line == {first!r} or line:\n"
        "                return line\n"
        "        except (OSError, IndexError):\n"
        "            pass\n"
        "    return os.listdir('/work') or None\n"
    )
    tests = "def check(candidate):\n    assert candidate(0, 0)\n"
    assert run(code, tests).passed is False
    listing = sandbox.run_program("import os\nprint(os.listdir('/work'), os.listdir('/tmp'))\n")
    assert "main" not in listing.stdout and "shared" not in listing.stdout


def test_killing_the_parent_and_others_is_contained():
    victim = subprocess.Popen(["sleep", "30"])
    run(GOOD)  # make sure the zygote is up
    zygote = sandbox._get_zygote().proc.pid
    try:
        code = (
            "import os, signal\n"
            "def add(a, b):\n"
            "    hits = 0\n"
            f"    for pid in ({victim.pid}, {zygote}, {os.getpid()}, 1, -1):\n"
            "        try:\n"
            "            os.kill(pid, signal.SIGSTOP if pid == "
            f"{os.getpid()} else signal.SIGKILL)\n"
            "            hits += pid > 1\n"
            "        except OSError:\n"
            "            pass\n"
            "    try:\n"
            "        os.kill(os.getppid(), signal.SIGKILL)\n"
            "    except OSError:\n"
            "        pass\n"
            "    return a + b if hits else None\n"
        )
        out = run(code)
        assert out.passed is False
        time.sleep(0.1)
        assert victim.poll() is None  # an unrelated process survived
        assert sandbox._get_zygote().proc.pid == zygote  # the zygote too
        assert run(GOOD).passed is True
    finally:
        victim.kill()
        victim.wait()


def test_os_system_and_subprocess_stay_inside(tmp_path):
    marker = tmp_path / "sys.txt"
    code = (
        "import os\n"
        "def add(a, b):\n"
        f"    os.system('echo PASSED; echo x > {marker}')\n"
        f"    return a + b if os.path.exists({str(marker)!r}) else None\n"
    )
    out = run(code, limits=Limits(timeout_s=5))
    assert out.passed is False
    assert not marker.exists()


# ---------------------------------------------------------------- io mode


def test_io_mode_runs_programs_per_case():
    outs = sandbox.run_io("n = int(input())\nprint(n * n)\n", ["3", "12"])
    assert [(o.ok, o.stdout) for o in outs] == [(True, "9\n"), (True, "144\n")]
    crash = sandbox.run_io("raise ValueError('x')\n", ["1", "2"])
    assert len(crash) == 1 and crash[0].exit_code == 1 and not crash[0].ok
    loop = sandbox.run_io("while True:\n    pass\n", ["1"], Limits(timeout_s=1))
    assert loop[0].timed_out and not loop[0].ok


# ---------------------------------------------------------------- without namespaces


def test_fallback_without_namespaces_still_contains_the_basics(monkeypatch, tmp_path):
    """What CI gets where namespaces are refused: sockets blocked in the child, uid drop,
    rlimits, scrubbed env, strays swept by uid."""
    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "NAMESPACES", False)
    try:
        info = caps()
        assert (info["namespaces"], info["mount_ns"], info["pid_ns"]) == (False, False, False)
        assert info["network"] == "socket-blocked"
        assert run(GOOD).passed is True
        sock = sandbox.run_program("import socket\nsocket.socket()\n")
        assert sock.exit_code == 1 and "PermissionError" in sock.stderr
        if info["seccomp"]:  # kernel-level refusal: ctypes cannot get around it
            raw = sandbox.run_program("import ctypes\nprint(ctypes.CDLL(None).socket(2, 1, 0))\n")
            assert raw.stdout.strip() == "-1"
        assert run("import sys\nsys.exit(0)\n" + GOOD).passed is False
        env = sandbox.run_program("import os\nprint(' '.join(sorted(os.environ)))\n")
        assert set(env.stdout.split()) <= {"PATH", "HOME", "LANG", "TMPDIR"}
        tok = token()
        code = (
            "import os\n"
            "def add(a, b):\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            f"        {SETNAME.format(tok=tok)}\n"
            "        while True:\n"
            "            pass\n"
            "    while True:\n"
            "        pass\n"
        )
        assert run(code, limits=Limits(timeout_s=1)).status == "timeout"
        if info["uid_drop"]:
            assert wait_gone(tok) == []
            pwn = tmp_path / "pwned"
            write = f"def add(a, b):\n    open({str(pwn)!r}, 'w').write('x')\n    return a + b\n"
            assert run(write).passed is False and not pwn.exists()
    finally:
        sandbox.shutdown()


# ================================================================ second red team (issue 15)
#
# Each class below: the attacks score 0, the zygote is the same process afterwards, a correct
# solution right after scores 1.0, and the run left nothing behind (no process under the
# zygote, no new entry in the host's /dev/shm, SysV segments or /tmp).

from rewards.code import code_tests  # noqa: E402


def score(
    code: str, tests: str = TESTS, entry: str | None = "add", timeout_s: float = 3.0, **fields
) -> float:
    res = code_tests(code, dict(fields, tests=tests, entry_point=entry), prefix="never", timeout_s=timeout_s)
    return res.score


def zygote_pid() -> int:
    return sandbox._get_zygote().proc.pid


def has_children(pid: int) -> bool:
    """Whether ``pid`` has any child, a zombie not reaped yet included. One read of the
    kernel's own list: a walk of /proc can miss a child forked while it reads (the zygote
    forks a run's remover just before it reaps the run's harness)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return bool(fh.read().split())
    except OSError:
        return False


def descendants(root: int) -> list[int]:
    """Live processes under ``root`` (orphans of runs are re-parented to the zygote)."""
    kids: dict = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if rest[0] not in ("Z", "X"):
            kids.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


SANDBOX_UIDS = range(0x10000000, 0x10000000 + 0x40000 * 4096)  # the runs' fresh uids


def host_state() -> dict:
    """What runs could have left on the host: /dev/shm entries and SysV segments owned by a
    sandbox uid (other jobs on this machine use /dev/shm too), our fallback workdirs."""

    def owned(d):
        out = set()
        try:
            for name in os.listdir(d):
                try:
                    if os.lstat(os.path.join(d, name)).st_uid in SANDBOX_UIDS:
                        out.add(name)
                except OSError:
                    pass
        except OSError:
            pass
        return out

    try:
        with open("/proc/sysvipc/shm") as fh:
            rows = [line.split() for line in fh.readlines()[1:]]
        shm = {r[0] for r in rows if len(r) > 7 and int(r[7]) in SANDBOX_UIDS}
    except (OSError, ValueError):
        shm = set()
    try:
        tmp = {f"{d}/{n}" for d in ("/tmp", "/dev/shm") for n in os.listdir(d) if n.startswith("rl-sbx-")}
    except OSError:
        tmp = set()
    return {"dev_shm": owned("/dev/shm"), "sysv_shm": shm, "tmp": tmp}


class Contained:
    """Snapshot before an attack; ``check()`` after it asserts the four promises."""

    def __init__(self):
        run(GOOD)  # the zygote is up
        self.zygote = zygote_pid()
        self.before = host_state()

    def check(self, tok: str | None = None):
        assert sandbox._get_zygote().proc.poll() is None
        assert zygote_pid() == self.zygote, "the zygote died"
        # Wait until the zygote has no child left, not even one to reap (a fallback
        # workdir's remover may be at work): it reaps a child only once what that child's
        # exit starts has started, so no children means nothing is left to do.
        end = time.monotonic() + 30
        while has_children(self.zygote) and time.monotonic() < end:
            time.sleep(0.05)
        left = descendants(self.zygote)

        def what(pid):
            try:
                with open(f"/proc/{pid}/status") as fh:
                    st = dict(line.split(":", 1) for line in fh if ":" in line)
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]
                with open(f"/proc/{pid}/wchan") as fh:
                    wchan = fh.read()
                return (
                    pid,
                    st["Name"].strip(),
                    st["State"].strip(),
                    st["Uid"].split()[0],
                    st["PPid"].strip(),
                    wchan,
                    cmd,
                )
            except OSError:
                return (pid, "gone")

        assert left == [], f"a run's process outlived it: {[what(p) for p in left]}"
        if tok:
            assert wait_gone(tok) == []
        end = time.monotonic() + 5
        while True:
            now = host_state()
            new = {k: now[k] - self.before[k] for k in now}
            if not any(new.values()) or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert not any(new.values()), new
        assert score(GOOD) == 1.0
        assert zygote_pid() == self.zygote


# ---------------------------------------------------------------- 1. the reply channel

# A solution that takes the link to the harness over (fd 3): it sends READY itself, then
# answers every request with REPLY. Framing is the harness's (4-byte length, body).
TAKEOVER = (
    "import os, struct\n"
    "def _send(b):\n    os.write(3, struct.pack('<I', len(b)) + b)\n"
    "def _recv():\n"
    "    n = struct.unpack('<I', os.read(3, 4))[0]\n"
    "    got = b''\n"
    "    while len(got) < n:\n"
    "        got += os.read(3, n - len(got))\n"
    "_send({ready!r})\n"
    "while True:\n"
    "    try:\n        _recv()\n"
    "    except Exception:\n        os._exit(0)\n"
    "    _send({reply!r})\n"
)
_X = lambda s: b"X" + len(s).to_bytes(4, "little") + s.encode()  # noqa: E731  BINUNICODE
PICKLE_READY = b"\x80\x02" + _X("ready") + b"]" + _X("add") + _X("ref") + b"N\x87a\x86."
# ('ok', Counter()) after BUILD set Counter.__eq__ = slice: every == with a Counter is truthy
PICKLE_BUILD = (
    b"\x80\x02"
    + _X("ok")
    + b"ccollections\nCounter\n"
    + b"N}"
    + _X("__eq__")
    + b"cbuiltins\nslice\ns\x86b)R\x86."
)
# a table whose decoding calls the solution (REDUCE on a remote handle): a "call" no test made
PICKLE_REDUCE_READY = (
    b"\x80\x02"
    + _X("ready")
    + b"]"
    + _X("add")
    + _X("ref")
    + b"N\x87a"
    + _X("x")
    + _X("data")
    + _X("h")
    + b"K\x01\x86Q)R\x87a\x86."
)
PICKLE_OK = b"\x80\x02" + _X("ok") + b"K\x05\x86."
JSON_READY = b'["ready",[["add","ref",null]]]'


@pytest.mark.parametrize(
    "ready,reply,tests",
    [
        (PICKLE_READY, PICKLE_BUILD, TESTS),
        (PICKLE_REDUCE_READY, PICKLE_OK, "def check(candidate):\n    pass\n"),
        (JSON_READY, b'["ok",' + b"[" * 100000 + b"]" * 100000 + b"]", TESTS),
        (JSON_READY, b'["ok",{"t":"global","v":"os.system"}]', TESTS),
        (JSON_READY, b'["ok",{"t":"int","v":"' + b"f" * 2_000_000 + b'"}]', TESTS),
        (
            JSON_READY,
            b'["ok",{"t":"ref","v":-1}]',
            "def check(candidate):\n    assert candidate(1, 2) is not None\n",
        ),
        (
            JSON_READY,
            b'["exc",["StopIteration"],""]',
            "def check(candidate):\n    for r in map(candidate, [1]):\n        assert r == 2\n",
        ),
    ],
    ids=[
        "pickle-build",
        "pickle-reduce-call",
        "json-deep",
        "json-unknown-tag",
        "json-huge-int",
        "json-bad-ref",
        "json-stopiteration",
    ],
)
def test_reply_channel_carries_data_only(ready, reply, tests):
    box = Contained()
    out = run(TAKEOVER.format(ready=ready, reply=reply), tests, limits=Limits(timeout_s=3))
    assert out.passed is False, out
    box.check()


# ---------------------------------------------------------------- 2. names from the solution


@pytest.mark.parametrize(
    "code,tests,entry,prompt",
    [
        (
            "def abs(x):\n    return 0\ndef f(x):\n    return 7\n",
            "def check(candidate):\n    assert abs(candidate(1.0) - 2.0) < 1e-9\n",
            "f",
            None,
        ),
        (
            "def sorted(x):\n    return [1, 2, 3]\ndef f(x):\n    return [3, 1]\n",
            "def check(candidate):\n    assert sorted(candidate(0)) == [1, 2, 3]\n",
            "f",
            None,
        ),
        (
            "set = lambda x: {1}\ndef f(x):\n    return [2]\n",
            "def check(candidate):\n    assert set(candidate(0)) == {1}\n",
            "f",
            None,
        ),
        (
            "class math:\n    fabs = staticmethod(lambda x: 0.0)\ndef f(x):\n    return 7\n",
            "def check(candidate):\n    assert math.fabs(candidate(1) - 2) < 1e-9\n",
            "f",
            'import math\n\n\ndef f(x):\n    """Return 2."""\n',
        ),
        (
            "def enc(s):\n    return s\ndef dec(s):\n    return s\n",
            "def check(candidate):\n    for w in ['abc', 'hello']:\n        assert candidate(enc(w)) == w\n",
            "dec",
            'def enc(s):\n    return s[::-1]\n\n\ndef dec(s):\n    """Undo enc."""\n',
        ),
        (
            "def sorted(x):\n    return [1, 2, 3]\ndef f():\n    return [3, 1]\n",
            "assert sorted(f()) == [1, 2, 3]\n",
            None,
            None,
        ),
        ("import cmath as math\ndef f():\n    return -4\n", "assert math.sqrt(f()) == 2j\n", None, None),
        ("len = lambda x: 3\ndef f():\n    return 'ab'\n", "assert len(f()) == 3\n", None, None),
    ],
    ids=[
        "abs",
        "sorted",
        "set",
        "fake-math-module",
        "prompt-helper-redefined",
        "mbpp-sorted",
        "mbpp-module-alias",
        "mbpp-len",
    ],
)
def test_solution_names_do_not_leak_into_the_tests(code, tests, entry, prompt):
    box = Contained()
    fields = {"prompt": prompt} if prompt else {}
    assert score(code, tests, entry, **fields) == 0.0
    box.check()


def test_the_prompts_declarations_and_imports_reach_the_tests():
    prompt = 'import math\n\n\ndef poly(x):\n    return x * x\n\n\ndef f(x):\n    """doc"""\n'
    tests = "def check(candidate):\n    assert math.isclose(poly(candidate(3)), 9.0)\n"
    assert score(prompt + "    return x\n", tests, "f", prompt=prompt) == 1.0
    # a natural-language prompt declares nothing and does not break the run
    assert score(GOOD, TESTS, "add", prompt="Write a function add(a, b).") == 1.0
    # assert-style tests still see the solution's own helpers and data
    helper = "LIMIT = 3\ndef sq(x):\n    return x * x\ndef f():\n    return sq(LIMIT)\n"
    res = code_tests(helper, {"tests": "assert f() == sq(LIMIT) == 9\n"}, prefix="never")
    assert res.score == 1.0, res.info


# ---------------------------------------------------------------- 3. control-flow exceptions


@pytest.mark.parametrize(
    "code,tests",
    [
        (
            "def add(a, b):\n    raise StopIteration\n",
            "def check(candidate):\n    for r in map(candidate, [1, 2], [3, 4]):\n        assert r == 99\n",
        ),
        (
            "def add(a, b):\n    raise StopIteration\n",
            "def check(candidate):\n    assert not any(map(candidate, [1, 2], [3, 4]))\n",
        ),
        (
            "class Done(StopIteration):\n    pass\ndef add(a, b):\n    raise Done()\n",
            "def check(candidate):\n    for r in map(candidate, [1], [1]):\n        assert r == 99\n",
        ),
        (
            "def add(a, b):\n    raise StopAsyncIteration\n",
            "def check(candidate):\n    try:\n        candidate(1, 2)\n    except Exception:\n        pass\n"
            "    assert True\n",
        ),
        (
            "def add(a, b):\n    raise GeneratorExit\n",
            "def check(candidate):\n    for r in map(candidate, [1], [1]):\n        assert r == 99\n",
        ),
        (
            "def add(a, b):\n    return []\n",
            "def check(candidate):\n    for p in candidate(10, 0):\n        assert p % 2 == 0 and p > 0\n",
        ),
        ("def add(a, b):\n    return []\n", "for p in add(10, 0):\n    assert p > 0\n"),
    ],
    ids=[
        "stopiteration-map",
        "stopiteration-any",
        "stopiteration-subclass",
        "stopasync",
        "generatorexit",
        "vacuous-loop",
        "vacuous-loop-mbpp",
    ],
)
def test_control_flow_from_the_solution_does_not_end_tests_early(code, tests):
    box = Contained()
    entry = None if tests.startswith("for") else "add"
    assert score(code, tests, entry) == 0.0
    box.check()


def test_asserts_behind_branches_need_not_all_run():
    tests = (
        "def check(candidate):\n    if candidate(1, 1) == 2:\n        assert True\n"
        "    else:\n        assert False\n    try:\n        assert candidate(2, 2) == 4\n"
        "    except TypeError:\n        assert False\n"
    )
    assert score(GOOD, tests) == 1.0


# ---------------------------------------------------------------- 4. state between runs


def test_no_state_survives_between_runs():
    box = Contained()
    tok = token()
    key = int(uuid.uuid4().hex[:7], 16)
    plant = (
        "import ctypes\n"
        "def add(a, b):\n"
        f"    open('/dev/shm/{tok}', 'w').write('5')\n"
        "    libc = ctypes.CDLL(None)\n"
        f"    libc.shmget({key}, 1 << 20, 0o1666)\n"  # IPC_CREAT | 0666: a segment that stays
        "    return a + b\n"
    )
    assert run(plant).passed is True
    # a second run would pass only by finding what the first one left
    harvest = (
        "import ctypes, os\n"
        "def add(a, b):\n"
        f"    found = os.path.exists('/dev/shm/{tok}')\n"
        f"    found = found or ctypes.CDLL(None).shmget({key}, 0, 0) >= 0\n"
        "    return a + b if found else None\n"
    )
    assert score(harvest) == 0.0
    # each run starts with an empty /dev/shm and no SysV objects of anyone else
    look = sandbox.run_program(
        "import os\nprint(os.listdir('/dev/shm'), open('/proc/sysvipc/shm').read().count('\\n'))\n"
    )
    assert look.ok and look.stdout.split("]")[0] == "[", look
    assert look.stdout.split()[-1] == "1", look  # the header line only
    box.check()


# ---------------------------------------------------------------- 5. unix sockets


def test_no_unix_socket_reaches_a_host_listener():
    box = Contained()
    tok = token()
    d = Path("/run") / tok
    d.mkdir(mode=0o755)
    path = str(d / "s")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        os.chmod(path, 0o777)
        srv.listen(8)
        abstract.bind("\0" + tok)
        abstract.listen(8)
        attacks = [
            "import socket\ndef add(a, b):\n    s = socket.socket(socket.AF_UNIX)\n"
            f"    s.connect({path!r})\n    s.sendall(b'hi')\n    return a + b\n",
            "import socket\ndef add(a, b):\n    s = socket.socket(socket.AF_UNIX)\n"
            f"    s.connect({chr(0) + tok!r})\n    s.sendall(b'hi')\n    return a + b\n",
            "import ctypes\ndef add(a, b):\n    fd = ctypes.CDLL(None).socket(1, 1, 0)\n"
            "    return a + b if fd >= 0 else None\n",
            "import subprocess, sys\ndef add(a, b):\n"
            "    r = subprocess.run([sys.executable, '-c', 'import socket; s = socket.socket(1); "
            f"s.connect({path!r})'], capture_output=True, timeout=5)\n"
            "    return a + b if r.returncode == 0 else None\n",
        ]
        for code in attacks:
            assert score(code, timeout_s=6) == 0.0, code
        for listener in (srv, abstract):
            listener.settimeout(0.2)
            with pytest.raises(socket.timeout):
                listener.accept()
        # the harness link still works, and so does a socketpair of the program's own
        pair = (
            "import socket\ndef add(a, b):\n    x, y = socket.socketpair()\n"
            "    x.sendall(bytes([a + b]))\n    return y.recv(1)[0]\n"
        )
        assert score(pair) == 1.0
    finally:
        srv.close()
        abstract.close()
        for p in (path,):
            try:
                os.remove(p)
            except OSError:
                pass
        d.rmdir()
    box.check()


# ---------------------------------------------------------------- 6. the zygote survives


def _in_flight(code: str, seconds: float):
    box: dict = {}
    th = threading.Thread(target=lambda: box.setdefault("out", run(code, limits=Limits(timeout_s=seconds))))
    th.start()
    return th, box


DEEP = (
    "import os\n"
    "def add(a, b):\n"
    "    for _ in range({n}):\n"
    "        try:\n"
    "            os.mkdir('d')\n"
    "            os.chdir('d')\n"
    "        except OSError:\n"
    "            break\n"
    "    return None\n"
)


def test_deep_tree_and_inode_exhaustion_do_not_kill_the_zygote():
    box = Contained()
    tok = token()
    # a run in flight whose model clears its parent-death signal and would outlive everything
    lingering = (
        "import ctypes, time\n"
        "def add(a, b):\n"
        "    libc = ctypes.CDLL(None)\n"
        "    libc.prctl(1, 0, 0, 0, 0)\n"  # PR_SET_PDEATHSIG 0
        f"    libc.prctl(15, {tok!r}.encode(), 0, 0, 0)\n"
        "    while True:\n"
        "        time.sleep(0.05)\n"
    )
    th, _ = _in_flight(lingering, 3.0)
    time.sleep(0.3)
    assert score(DEEP.format(n=3000)) == 0.0
    # inode exhaustion of the run's /tmp and /dev/shm while another run starts
    fill = (
        "import os\n"
        "def add(a, b):\n"
        "    for d in ('.', '/dev/shm'):\n"
        "        for i in range(70000):\n"
        "            try:\n"
        "                open(f'{d}/f{i}', 'w').close()\n"
        "            except OSError:\n"
        "                break\n"
        "    import time\n"
        "    time.sleep(3)\n"
    )
    th2, _ = _in_flight(fill, 2.5)
    time.sleep(1.0)
    assert score(GOOD) == 1.0  # a run started while the other has filled what it can
    th.join()
    th2.join()
    box.check(tok)


# The fallback's working directories live on a tmpfs (/dev/shm). In the host's /tmp on a disk
# mounted with `discard` (ext4 here), removing this 1200-deep tree issued a synchronous discard
# per directory: its remover was still at work (state R, in blkdev_issue_discard) 30 s on,
# which failed this test in about 1 of 6 runs. On a tmpfs it takes milliseconds.
def test_fallback_removes_deep_trees_without_recursion(monkeypatch):
    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "NAMESPACES", False)
    try:
        assert not caps().get("run_ns")
        box = Contained()
        t0 = time.monotonic()
        assert score(DEEP.format(n=1200), timeout_s=8) == 0.0  # > the recursion limit
        while has_children(box.zygote) and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        assert time.monotonic() - t0 < 10, "the deep tree took long to remove"
        box.check()
    finally:
        sandbox.shutdown()


def test_fallback_workdirs_are_on_a_tmpfs(monkeypatch):
    from rewards.sandbox.inside import system

    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "NAMESPACES", False)
    try:
        root = system.tmpfs_dir()
        if root is None:
            pytest.skip("no writable tmpfs at /dev/shm")
        assert caps()["workdir_root"] == root
        out = sandbox.run_program("import os\nprint(os.getcwd())\n")
        assert out.ok and out.stdout.startswith(f"{root}/rl-sbx-"), out.stdout
        assert score(GOOD) == 1.0
    finally:
        sandbox.shutdown()


# ---------------------------------------------------------------- 7, 8. honest code


@pytest.mark.parametrize(
    "code,tests",
    [
        (
            "from fractions import Fraction\ndef f(a):\n    return Fraction(a, 3)\n",
            "from fractions import Fraction\ndef check(candidate):\n"
            "    assert candidate(1) == Fraction(1, 3)\n    assert isinstance(candidate(2), Fraction)\n"
            "    assert candidate(Fraction(3, 2)) == Fraction(1, 2)\n",
        ),
        (
            "from decimal import Decimal\ndef f(a):\n    return Decimal('0.1') * a\n",
            "from decimal import Decimal\ndef check(candidate):\n"
            "    assert candidate(3) == Decimal('0.3')\n    assert str(candidate(2)) == '0.2'\n",
        ),
        (
            "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
            "from collections import Counter\ndef check(candidate):\n"
            "    assert candidate('aab') == Counter({'a': 2, 'b': 1})\n"
            "    assert candidate('aab').most_common(1) == [('a', 2)]\n",
        ),
        (
            "from collections import OrderedDict\ndef f(n):\n    return OrderedDict((i, i * i) for i in range(n))\n",
            "from collections import OrderedDict\ndef check(candidate):\n"
            "    assert candidate(3) == OrderedDict([(0, 0), (1, 1), (2, 4)])\n"
            "    assert list(candidate(3).items())[-1] == (2, 4)\n",
        ),
        (
            "from collections import deque\ndef f(n):\n    return deque(range(n), maxlen=2)\n",
            "from collections import deque\ndef check(candidate):\n"
            "    assert candidate(5) == deque([3, 4])\n    assert candidate(5).maxlen == 2\n",
        ),
        (
            "import datetime\ndef f(d):\n    return d + datetime.timedelta(days=1)\n",
            "import datetime\ndef check(candidate):\n"
            "    assert candidate(datetime.date(2024, 2, 28)) == datetime.date(2024, 2, 29)\n"
            "    tz = datetime.timezone(datetime.timedelta(hours=2))\n"
            "    x = datetime.datetime(2024, 1, 1, 23, 30, tzinfo=tz)\n"
            "    assert candidate(x) == datetime.datetime(2024, 1, 2, 23, 30, tzinfo=tz)\n",
        ),
        (
            "def f(a):\n    return complex(a, -a)\n",
            "def check(candidate):\n    assert candidate(2) == 2 - 2j\n    assert candidate(1.5).imag == -1.5\n",
        ),
        (
            "from fractions import Fraction\ndef f(n):\n"
            "    return {(i, frozenset({i})): [Fraction(1, i + 1), b'x' * i, float('inf')] for i in range(n)}\n",
            "from fractions import Fraction\ndef check(candidate):\n"
            "    r = candidate(2)\n    assert r[(1, frozenset({1}))] == [Fraction(1, 2), b'x', float('inf')]\n"
            "    assert len(r) == 2\n",
        ),
        (
            "def f(n):\n    return 7 ** n\n",
            "def check(candidate):\n    assert candidate(5000) == 7 ** 5000\n",
        ),
    ],
    ids=[
        "Fraction",
        "Decimal",
        "Counter",
        "OrderedDict",
        "deque",
        "datetime",
        "complex",
        "nested",
        "big-int",
    ],
)
def test_honest_values_compare_as_in_plain_python(code, tests):
    box = Contained()
    assert score(code, tests, "f") == 1.0
    box.check()


def test_expected_exceptions_reach_the_tests_as_their_type():
    box = Contained()
    code = (
        "class BadInput(ValueError):\n    pass\n"
        "def f(x):\n    if not isinstance(x, int):\n        raise TypeError('int please')\n"
        "    if x < 0:\n        raise BadInput('negative')\n    return x\n"
    )
    tests = (
        "def check(candidate):\n"
        "    try:\n        candidate('a')\n        assert False\n    except TypeError:\n        pass\n"
        "    try:\n        candidate(-1)\n        assert False\n    except ValueError as e:\n"
        "        assert 'negative' in str(e)\n    assert candidate(3) == 3\n"
    )
    assert score(code, tests, "f") == 1.0
    # and a wrong exception type is a failure
    assert score(code.replace("raise TypeError", "raise KeyError"), tests, "f") == 0.0
    box.check()


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])
def test_without_run_cgroups_a_lingering_run_is_swept_by_uid(monkeypatch, namespaces):
    """The fallback where no cgroup v2 can be made: SIGKILL to every process of the run's uid,
    which the model cannot catch, block or undo (a cleared parent-death signal changes
    nothing)."""
    sandbox.shutdown()
    monkeypatch.setattr(sandbox, "CGROUPS", False)
    monkeypatch.setattr(sandbox, "NAMESPACES", namespaces)
    try:
        info = caps()
        assert info["run_cgroup"] is False and info["namespaces"] is namespaces
        if not info["uid_drop"]:
            pytest.skip("not root: no uid of its own to sweep")
        box = Contained()
        tok = token()
        code = (
            "import ctypes, os, time\n"
            "def add(a, b):\n"
            "    libc = ctypes.CDLL(None)\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        libc.prctl(1, 0, 0, 0, 0)\n"
            f"        libc.prctl(15, {tok!r}.encode(), 0, 0, 0)\n"
            "        while True:\n"
            "            time.sleep(0.05)\n"
            "    return a + b\n"
        )
        assert run(code).passed is True  # it passes; what matters is what it leaves
        box.check(tok)
    finally:
        sandbox.shutdown()


# ---------------------------------------------------------------- the codec on its own


def test_wire_round_trips_values_and_refuses_anything_else():
    import collections
    import datetime
    import decimal
    import fractions

    from rewards.sandbox.inside import wire

    tz = datetime.timezone(datetime.timedelta(hours=-3), "X")
    values = [
        None,
        True,
        0,
        -(10**400),
        1.5,
        float("inf"),
        "s\udc80",
        [1, [2]],
        (1, (2,)),
        {1, 2},
        frozenset({3}),
        {(1, 2): {"a": [b"\x00"]}},
        bytearray(b"ab"),
        2 - 3j,
        fractions.Fraction(-7, 3),
        decimal.Decimal("-0.00"),
        collections.Counter("aab"),
        collections.OrderedDict(b=1, a=2),
        collections.deque([1, 2], maxlen=3),
        datetime.date(2020, 2, 29),
        datetime.datetime(2020, 1, 1, 1, 2, 3, 4, tzinfo=tz),
        datetime.time(1, 2),
        datetime.timedelta(days=-1, microseconds=5),
        tz,
        range(1, 10, 3),
        slice(1, None, 2),
    ]
    for v in values:
        back = wire.decode(wire.encode(v))
        assert back == v and type(back) is type(v), v
    nan = wire.decode(wire.encode(float("nan")))
    assert nan != nan
    assert wire.decode(wire.encode(collections.defaultdict(int, a=1))) == {"a": 1}
    # no class is looked up, nothing is called: unknown tags, refs without a resolver,
    # non-standard constants and malformed forms are errors
    for bad in (
        b'{"t":"global","v":"os.system"}',
        b'{"t":"ref","v":1}',
        b"NaN",
        b'{"t":"Fraction","v":[1,0]}',
        b'{"t":"tuple","v":1}',
        b'{"t":"dict","v":[[[1],2]]}',
        b'{"a":1}',
        b"[" * 5000 + b"]" * 5000,
    ):
        with pytest.raises((ValueError, TypeError)):
            wire.decode(bad)
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError):
        wire.encode(loop)  # harness side: not a value
    refs: list = []
    assert (
        wire.encode([loop, object()], ref=lambda o: refs.append(o) or len(refs))
        == b'[[{"t":"ref","v":1}],{"t":"ref","v":2}]'
    )  # the cycle's back edge is a handle


def test_an_oom_kill_takes_a_run_and_never_the_zygote():
    if not caps()["root"]:
        pytest.skip("not root")
    with open(f"/proc/{zygote_pid()}/oom_score_adj") as fh:
        assert int(fh.read()) <= 0  # -1000 where the container grants CAP_SYS_RESOURCE
    out = sandbox.run_program("print(open('/proc/self/oom_score_adj').read())")
    assert out.ok and out.stdout.strip() == "1000"
