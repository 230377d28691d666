"""Linux plumbing: namespaces, mounts, seccomp, cgroups, killing and removing what a run left.

ctypes only (Python 3.11 has no os.unshare and no mount at all). Nothing here raises past its
caller's guard on behalf of a run: the zygote wraps every per-run call.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Optional

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
        _libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    _check(_c().setns(fd, nstype), "setns")


def mount(
    src: Optional[str], target: str, fstype: Optional[str], flags: int, data: Optional[str] = None
) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_c().mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def umount(target: str) -> None:
    _check(_c().umount2(target.encode(), MNT_DETACH), f"umount {target}")


def prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_c().prctl(option, arg, arg3, 0, 0), f"prctl({option})")


def write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


# ---------------------------------------------------------------- seccomp

# machine -> (AUDIT_ARCH of the native ABI, socket() syscall number)
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
_IO_URING_SETUP = 425  # same number on every architecture; io_uring can create sockets


def seccomp_no_sockets() -> None:
    """Install a seccomp filter in this process (inherited by children, kept across exec):
    ``socket()`` of any family fails with EACCES, as do ``io_uring_setup`` (its ops can open
    sockets) and every syscall of a foreign ABI (32-bit ``socketcall``, x32). Needs
    no_new_privs (set by the caller). ``socketpair`` stays allowed: it connects to nothing."""
    import ctypes

    arch, nr = _SECCOMP_ARCH[os.uname().machine]

    class Insn(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_ushort),
            ("jt", ctypes.c_ubyte),
            ("jf", ctypes.c_ubyte),
            ("k", ctypes.c_uint),
        ]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JSET|K, RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 13  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO|EACCES
    code = [
        (ld, 0, 0, 4),  # 0: A = arch
        (jeq, 1, 0, arch),  # 1: native -> 3
        (ret, 0, 0, deny),  # 2: foreign ABI: refused
        (ld, 0, 0, 0),  # 3: A = syscall nr
        (jset, 3, 0, 0x40000000),  # 4: x32 -> deny (8)
        (jeq, 2, 0, nr),  # 5: socket -> deny (8)
        (jeq, 1, 0, _IO_URING_SETUP),  # 6: io_uring_setup -> deny (8)
        (ret, 0, 0, allow),  # 7
        (ret, 0, 0, deny),  # 8
    ]
    insns = (Insn * len(code))(*[Insn(*c) for c in code])
    prog = Prog(len(code), ctypes.cast(insns, ctypes.POINTER(Insn)))
    prctl(22, 2, ctypes.addressof(prog))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def probe_seccomp() -> bool:
    """Can a child install the filter, and does it then refuse AF_INET and AF_UNIX sockets
    while a socketpair still works?"""
    if os.uname().machine not in _SECCOMP_ARCH:
        return False
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        code = 1
        try:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            seccomp_no_sockets()
            refused = 0
            for fam in (socket.AF_INET, socket.AF_UNIX):
                try:
                    socket.socket(fam, socket.SOCK_STREAM).close()
                except PermissionError:
                    refused += 1
            for end in socket.socketpair():
                end.close()
            code = 0 if refused == 2 else 1
        except BaseException:
            pass
        os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


# ---------------------------------------------------------------- cgroups


def own_cgroup_v1(ctl: str) -> str:
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


def _cgroup2_dir() -> Optional[str]:
    """This process's directory in the cgroup v2 hierarchy, if one is mounted."""
    mnt = None
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mnt = left.split()[4]
                    break
        if mnt is None:
            return None
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    path = line[3:].rstrip("\n")
                    return mnt + ("" if path == "/" else path)
    except (OSError, ValueError, IndexError):
        pass
    return None


class RunGroups:
    """One cgroup v2 per run, under ``<own cgroup>/rl_sbx_<zygote pid>``: the run's harness
    joins it before anything else and every process of the run inherits it; when the run
    ends ``cgroup.kill`` takes them all down at once (no signal the model can block or undo,
    no fork race), and the directory goes."""

    PREFIX = "rl_sbx_"

    def __init__(self) -> None:
        self.base: Optional[str] = None
        own = _cgroup2_dir()
        if own is None:
            return
        base = f"{own}/{self.PREFIX}{os.getpid()}"
        try:
            self._sweep_stale(own)
            os.makedirs(base, exist_ok=True)
            probe = f"{base}/probe"
            os.mkdir(probe)
            ok = os.path.exists(f"{probe}/cgroup.kill")
            os.rmdir(probe)
            if ok:
                self.base = base
        except OSError:
            pass

    def _sweep_stale(self, own: str) -> None:
        """Runs of zygotes that are gone (killed from outside): kill what is left, remove."""
        for name in os.listdir(own):
            if not name.startswith(self.PREFIX):
                continue
            pid = name[len(self.PREFIX) :]
            if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
                continue
            d = f"{own}/{name}"
            for run in os.listdir(d):
                if os.path.isdir(f"{d}/{run}"):
                    self._kill_dir(f"{d}/{run}")
            try:
                os.rmdir(d)
            except OSError:
                pass

    def create(self, name: str) -> Optional[str]:
        if self.base is None:
            return None
        d = f"{self.base}/{name}"
        os.mkdir(d)
        return d

    @staticmethod
    def join(d: str) -> None:
        write(f"{d}/cgroup.procs", "0")  # "0": the writing process itself

    @staticmethod
    def _kill_dir(d: str) -> bool:
        try:
            write(f"{d}/cgroup.kill", "1")
        except OSError:
            pass
        try:
            os.rmdir(d)  # fails (EBUSY) until the killed processes have exited
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def kill(self, d: str) -> bool:
        """Kill everything in the run's group; True once the directory is gone."""
        return self._kill_dir(d)

    def close(self) -> None:
        if self.base is not None:
            try:
                for run in os.listdir(self.base):
                    self._kill_dir(f"{self.base}/{run}")
                os.rmdir(self.base)
            except OSError:
                pass


# ---------------------------------------------------------------- stray processes and files


def tmpfs_dir(candidates: tuple = ("/dev/shm",)) -> Optional[str]:
    """The first of ``candidates`` that is a writable tmpfs mount point, if any.

    Runs without a mount namespace of their own get their working directories there rather
    than in the host's ``/tmp``: on a disk file system a run's files cost disk writes, and
    removing them can cost far more (mounted with ``discard``, ext4 issues a synchronous
    discard for every directory it frees: removing a 1200-deep tree took 6 s to over 30 s
    here, against 30 ms on a tmpfs). Pages of a tmpfs are charged to the memory cgroup of the
    process that writes them, so the sandboxes' shared memory cap bounds them too."""
    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = {}
            for line in fh:
                left, _, right = line.partition(" - ")
                mounts[left.split()[4]] = right.split(" ", 1)[0]
    except (OSError, IndexError):
        return None
    for d in candidates:
        if mounts.get(d) == "tmpfs" and os.access(d, os.W_OK | os.X_OK):
            return d
    return None


def sweep_uid(uid: int) -> None:
    """Kill every process running as ``uid`` (a helper that becomes ``uid`` and signals -1:
    an unprivileged kill(-1) reaches exactly the processes of its own uid; SIGKILL cannot be
    caught or blocked). The fallback where no cgroup can take a run's processes down."""
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


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it without recursion and without building long
    paths: it walks down by directory fd and back up by name, so neither depth (a tree
    deeper than PATH_MAX or the recursion limit) nor width can make it raise past here.
    Call it only once the run's processes are dead (nothing moves the tree meanwhile)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    names: list = []  # the path from ``path`` down to ``fd``, by name
    try:
        while True:
            sub = None
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                sub = entry.name
                                break
                            os.unlink(entry.name, dir_fd=fd)
                        except OSError:
                            pass
            except OSError:
                pass
            if sub is not None:
                try:
                    child = os.open(sub, flags, dir_fd=fd)
                except OSError:
                    return  # cannot enter it: give up rather than loop
                else:
                    os.close(fd)
                    fd = child
                    names.append(sub)
                    continue
            if not names:
                break
            try:
                parent = os.open("..", flags, dir_fd=fd)
            except OSError:
                return
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except OSError:
                return  # something we cannot remove: give up rather than loop
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
