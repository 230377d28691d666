"""rewards.sandbox: honest code passes; each attack is contained and scored as a failure.

Every attack below is written so that, if the protection it targets were missing, the attack
would *succeed* (the solution would return the right answer, the test would pass wrongly, or
a file / process / connection the test checks for would appear), so each test can fail.
Attacks that could hurt the machine through a broken sandbox are bounded (fan-out, sizes).
"""

from __future__ import annotations

import os
import signal
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
    for key in ("root", "uid_drop", "mount_ns", "pid_ns", "cgroup", "network", "namespaces",
                "seccomp"):
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
    code = ("import os, sys\n"
            "print(os.getuid(), os.geteuid(), os.getcwd(), repr(sys.stdin.read()))\n"
            "open('scratch.txt', 'w').write('x')\n")
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


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)\n" + GOOD,
    "import os\nos._exit(0)\n" + GOOD,
    "raise SystemExit(0)\n" + GOOD,
    "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "import os\ndef add(a, b):\n    os._exit(0)\n",
    "def add(a, b):\n    raise SystemExit(0)\n",
    "def add(a, b):\n    raise KeyboardInterrupt\n",
    "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
], ids=["sys.exit-top", "os._exit-top", "SystemExit-top", "sys.exit-in-call",
        "os._exit-in-call", "SystemExit-in-call", "KeyboardInterrupt-in-call", "self-kill"])
def test_exit_before_or_during_tests_fails(code):
    out = run(code)
    assert out.passed is False
    assert out.status in ("error", "failed")


def test_raising_systemexit_in_tests_does_not_pass():
    tests = "def check(candidate):\n    candidate(1, 1)\n    raise SystemExit(0)\n"
    assert run(GOOD, tests).passed is False


def test_fake_pass_output_is_ignored():
    code = ("print('PASSED'); print('All tests passed!'); print('OK')\n"
            "import sys; sys.stderr.write('ok\\n')\n"
            "def add(a, b):\n    print('test passed')\n    return 0\n")
    out = run(code)
    assert (out.passed, out.status) == (False, "failed")
    assert "PASSED" in out.stdout  # it printed; the harness did not care


# ---------------------------------------------------------------- monkeypatching


@pytest.mark.parametrize("code", [
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
], ids=["builtins", "own-check", "always-equal", "int-subclass-equal", "gc-frames",
        "import-hook"])
def test_monkeypatching_cannot_change_the_verdict(code):
    out = run(code)
    assert out.passed is False, out


def test_forged_frames_on_inherited_fds_do_not_pass():
    code = ("import os, struct, marshal, pickle\n"
            "fake = marshal.dumps({'status': 'passed', 'calls': 5})\n"
            "ok = pickle.dumps(('ok', 5))\n"
            "for fd in range(3, 64):\n"
            "    for blob in (fake, ok):\n"
            "        try:\n"
            "            os.write(fd, struct.pack('<I', len(blob)) + blob)\n"
            "        except OSError:\n"
            "            pass\n"
            "def add(a, b):\n    return 0\n")
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
    deep = ("import sys\nsys.setrecursionlimit(10**8)\n"
            "def add(a, b, d=0):\n    return add(a, b, d + 1)\n")
    assert run(deep, limits=Limits(timeout_s=5)).passed is False


def test_huge_output_is_capped():
    code = "def add(a, b):\n    print('PASSED ' * (4 << 20))\n    return a + b\n"
    out = run(code, limits=Limits(timeout_s=5, output_bytes=1 << 20))
    assert (out.passed, out.status) == (False, "output_limit")
    assert len(out.stdout) < 10_000
    spam = "def add(a, b):\n    while True:\n        print('PASSED')\n"
    assert run(spam, limits=Limits(timeout_s=5)).status == "output_limit"


def test_huge_file_is_refused():
    code = ("def add(a, b):\n"
            "    with open('big.bin', 'wb') as fh:\n"
            "        for _ in range(64):\n"
            "            fh.write(b'0' * (1 << 20))\n"
            "    return a + b\n")
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
            f"socket.create_connection((\"127.0.0.1\", {port}), timeout=1)'], "
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
    targets = [str(tmp_path / "pwned.txt"), str(REPO / f".{tok}"), f"/tmp/{tok}",
               f"/var/tmp/{tok}", os.path.join(os.getcwd(), f".{tok}-cwd")]
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
        pytest.skip("no mount namespace here: hidden directories do not apply "
                    f"({caps().get('mount_ns_error', 'namespaces unavailable')})")
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
    tests = f"def check(candidate):\n    assert candidate(0, 0)\n"
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
    code = ("import os\n"
            "def add(a, b):\n"
            f"    os.system('echo PASSED; echo x > {marker}')\n"
            f"    return a + b if os.path.exists({str(marker)!r}) else None\n")
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
