"""The zygote: one long-lived root process per caller process. Set up once (namespaces, mounts,
probes, pre-imports), then per run: fork a harness W into the run's own cgroup, reap it, and
kill and remove whatever the run left. Nothing a run does may end this process: every per-run
step is guarded, and nothing here walks a run's files recursively.

Started as ``python -I -S -c "...; from inside import zygote; zygote.main(argv)"``.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import socket
import struct
import sys
import time

from . import harness, model, system, wire  # noqa: F401  (all imported before /work is hidden)

_CGROUP_V1 = "rl_reason_sandbox"
TMP_MB = 16  # the zygote's own /tmp (a base to mount each run's /tmp over; fallback workdirs)
_PRELOAD = (
    *sorted(harness.SAFE_MODULES),
    "ctypes",
    "resource",
    "traceback",
    "tempfile",
    "shutil",
    "ast",
)  # imported once, before /work is hidden


def setup(parent_cwd: str, hide: list, namespaces: bool = True, cgroups: bool = True):
    info: dict = {
        "root": os.geteuid() == 0,
        "uid_drop": False,
        "mount_ns": False,
        "pid_ns": False,
        "run_ns": False,
        "cgroup": [],
        "run_cgroup": False,
        "network": "socket-blocked",
        "namespaces": bool(namespaces),
    }
    os.chdir("/")
    os.umask(0o022)
    try:
        system.prctl(system.PR_SET_CHILD_SUBREAPER, 1)  # orphans of runs come back here
    except OSError:
        pass
    if info["root"]:
        info["uid_drop"] = True
        try:  # an OOM kill in the shared memory cgroup takes a run, not the zygote (runs
            # raise theirs to 1000; lowering this one needs CAP_SYS_RESOURCE)
            system.write("/proc/self/oom_score_adj", "-1000")
        except OSError:
            pass
        # A shared cgroup caps all sandboxes together (the per-process rlimits cannot bound
        # a fork + memory bomb in aggregate).
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = 8 << 30
        for ctl, knob, value in (
            ("pids", "pids.max", "4096"),
            ("memory", "memory.limit_in_bytes", str(max(2 << 30, min(total // 2, 16 << 30)))),
        ):
            d = f"/sys/fs/cgroup/{ctl}{system.own_cgroup_v1(ctl)}/{_CGROUP_V1}"
            try:
                os.makedirs(d, exist_ok=True)
                system.write(f"{d}/{knob}", value)
                system.write(f"{d}/cgroup.procs", str(os.getpid()))
                info["cgroup"].append(ctl)
            except OSError:
                pass
    if not namespaces:
        pass
    elif info["root"]:
        try:
            system.unshare(system.CLONE_NEWNET)
            info["network"] = "netns"
        except OSError:
            pass
        try:
            system.unshare(system.CLONE_NEWNS | system.CLONE_NEWIPC | system.CLONE_NEWUTS)
            setup_fs(parent_cwd, hide)
            info["mount_ns"] = True
        except OSError as exc:
            info["mount_ns_error"] = str(exc)
        info["pid_ns"] = _probe(lambda: system.unshare(system.CLONE_NEWPID))
        if info["mount_ns"]:
            info["run_ns"] = _probe(
                lambda: harness.enter_run_namespaces({"tmp_mb": 1, "shm_mb": 1, "tmp_inodes": 64})
            )
    else:
        try:  # unprivileged user namespace: still gives an empty network namespace
            system.unshare(system.CLONE_NEWUSER | system.CLONE_NEWNET)
            info["network"] = "netns"
        except OSError:
            pass
    # How a finished run's processes die. With a pid namespace the model process is its
    # init: when its harness exits it is re-parented here (the subreaper) and killed, and the
    # kernel kills everything in its namespace with it. Without one, a cgroup v2 of the
    # run's own (cgroup.kill), else a SIGKILL sweep of the run's uid. (A cgroup is not used
    # with a pid namespace: moving a process into one costs milliseconds per run.)
    groups = None
    if info["root"] and cgroups and not info["pid_ns"]:
        groups = system.RunGroups()
        if groups.base is None:
            groups = None
    info["run_cgroup"] = groups is not None
    info["run_kill"] = (
        "pid-namespace"
        if info["pid_ns"]
        else "cgroup"
        if groups is not None
        else "uid-sweep"
        if info["uid_drop"]
        else "process-group"
    )
    info["seccomp"] = system.probe_seccomp()
    # where runs without a mount namespace work (None: the temporary directory's default)
    info["workdir_root"] = None if info["mount_ns"] else system.tmpfs_dir()
    for name in _PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    return info, groups


def _probe(fn) -> bool:
    """Does ``fn`` succeed in a forked child?"""
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


def setup_fs(parent_cwd: str, hide: list) -> None:
    """In the zygote's own mount namespace (once): read-only root; a small private root-owned
    /tmp (each run mounts its own over it); small root-owned tmpfs over the other
    world-writable places and over private directories; /proc remounted with hidepid=2 (a
    sandboxed uid sees only its own processes)."""
    system.mount(None, "/", None, system.MS_REC | system.MS_PRIVATE)
    flags = system.MS_NOSUID | system.MS_NODEV
    system.mount("tmpfs", "/tmp", "tmpfs", flags, f"size={TMP_MB}m,mode=711,nr_inodes=4096")
    for d in ("/dev/shm", "/var/tmp", "/run/lock", "/dev/mqueue"):
        if os.path.isdir(d):
            try:
                system.mount("tmpfs", d, "tmpfs", flags, "size=64k,mode=755")
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
            system.mount(keep, stage, None, system.MS_BIND | system.MS_REC)
            system.mount("tmpfs", h, "tmpfs", flags, "size=64k,mode=755")
            os.makedirs(keep, exist_ok=True)
            system.mount(stage, keep, None, system.MS_BIND | system.MS_REC)
            system.mount(None, keep, None, system.MS_REMOUNT | system.MS_BIND | system.MS_RDONLY | flags)
            system.umount(stage)
            os.rmdir(stage)
        else:
            system.mount("tmpfs", h, "tmpfs", flags, "size=64k,mode=755")
        done.append(h)
    try:
        system.mount("proc", "/proc", "proc", flags | system.MS_NOEXEC, "hidepid=2")
    except OSError:
        pass
    system.mount(None, "/", None, system.MS_REMOUNT | system.MS_BIND | system.MS_RDONLY | flags)


def _random_uid_block() -> int:
    # 4096 fresh uids per run, none of them a real account; RLIMIT_NPROC counts per uid, so a
    # run only ever competes with itself.
    r = int.from_bytes(os.urandom(4), "little") % 0x40000
    return 0x10000000 + r * 4096


class Run:
    __slots__ = ("pid", "block", "cgroup", "workdir")

    def __init__(self, block, cgroup, workdir):
        self.pid, self.block, self.cgroup, self.workdir = -1, block, cgroup, workdir


class Zygote:
    def __init__(self, ctrl: socket.socket, info: dict, groups) -> None:
        self.ctrl, self.info, self.groups = ctrl, info, groups
        self.runs: dict = {}  # harness pid -> Run
        self.doomed: list = []  # run cgroups still to remove
        self.removers: dict = {}  # pid of a child removing a fallback workdir -> (dir, tries)
        self.serial = 0
        self.children_file = f"/proc/self/task/{os.getpid()}/children"
        # SIGCHLD wakes the loop (through a pipe), so a finished run's model process is killed
        # at once rather than at the next poll
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    # -------- per run: every step guarded

    def start(self, fd: int) -> int:
        self.serial += 1
        run = Run(_random_uid_block(), None, None)
        try:
            if self.groups is not None:
                run.cgroup = self.groups.create(f"r{self.serial}")
            if not self.info["run_ns"]:
                run.workdir = self._workdir()
            pid = os.fork()
        except BaseException:
            self._finish(run)
            return -1
        if pid == 0:
            code = 1
            try:
                self.ctrl.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(self.wake_r)
                os.close(self.wake_w)
                harness.worker_main(fd, self.info, run.workdir, run.block, run.cgroup)
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        run.pid = pid
        self.runs[pid] = run
        return pid

    def _workdir(self) -> str:
        if self.info["mount_ns"]:
            d = f"/tmp/r{self.serial}-{os.urandom(6).hex()}"
            os.mkdir(d, 0o711)
            return d
        import tempfile

        # on a tmpfs where there is one: see system.tmpfs_dir (removal from a disk with
        # synchronous discard took tens of seconds for a deep tree)
        d = tempfile.mkdtemp(prefix="rl-sbx-", dir=self.info.get("workdir_root"))
        os.chmod(d, 0o711)  # the run's uid must reach its own subdirectory
        return d

    def _finish(self, run: Run) -> None:
        """The harness is gone: kill everything of the run, then remove its files."""
        try:
            if run.cgroup is not None:
                if not self.groups.kill(run.cgroup):
                    self.doomed.append(run.cgroup)
            elif self.info["uid_drop"] and not self.info["pid_ns"]:
                system.sweep_uid(run.block + 1)  # SIGKILL to every process of the run's uid
        except BaseException:
            pass
        if run.workdir is not None:
            self._remove(run.workdir, 1)

    def _remove(self, workdir: str, tries: int) -> None:
        try:  # in a child: a tree too deep or too wide costs that child, not this process
            pid = os.fork()
            if pid == 0:
                try:
                    system.remove_tree(workdir)
                finally:
                    os._exit(0)
            self.removers[pid] = (workdir, tries)
        except BaseException:
            pass

    def reap(self) -> None:
        while True:  # reap harnesses, removers and adopted orphans
            try:
                # Look first (WNOWAIT): an exited child stays a zombie until what its exit
                # starts (a run's kill and remover, a remover's retry) has started, so this
                # process never has no children while cleanup is still due: "no children"
                # means "nothing left to do" (the tests wait on exactly that).
                res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            except BaseException:
                break
            if res is None or not res.si_pid:
                break
            pid = res.si_pid
            try:
                removed = self.removers.pop(pid, None)
                if removed is not None and removed[1] < 3 and os.path.lexists(removed[0]):
                    self._remove(removed[0], removed[1] + 1)  # something was still writing
                run = self.runs.pop(pid, None)
                if run is not None:
                    self._finish(run)
            finally:
                try:
                    os.waitpid(pid, 0)  # a zombie: returns at once
                except ChildProcessError:
                    pass
        self._kill_orphans()
        for d in list(self.doomed):
            try:
                if self.groups.kill(d):
                    self.doomed.remove(d)
            except BaseException:
                pass

    def _kill_orphans(self) -> None:
        """Every child of this process that is not a harness or a remover is what a run left
        (its model process once the harness is gone, or a re-parented orphan): SIGKILL it.
        Our own unreaped children cannot have their pids reused, so this hits no stranger."""
        try:
            with open(self.children_file) as fh:
                pids = [int(p) for p in fh.read().split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            if pid in self.runs or pid in self.removers:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)

    def serve(self) -> None:
        while True:
            try:
                busy = self.runs or self.doomed or self.removers
                ready = select.select([self.ctrl, self.wake_r], [], [], 0.05 if busy else None)[0]
            except InterruptedError:
                ready = []
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 4096)
                except OSError:
                    pass
            self.reap()
            if self.ctrl not in ready:
                continue
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, 16, 4)
            except InterruptedError:
                continue
            except OSError:
                return
            if not msg:
                return
            if not fds:
                continue
            for extra in fds[1:]:
                os.close(extra)
            pid = self.start(fds[0])
            try:
                os.close(fds[0])
            except OSError:
                pass
            try:
                self.ctrl.send(struct.pack("<q", pid))
            except OSError:
                return

    def close(self) -> None:
        deadline = time.monotonic() + 2.0
        for pid in list(self.runs):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        while (self.runs or self.removers) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        for workdir, _tries in list(self.removers.values()):
            try:  # last chance, here: remove_tree neither recurses nor builds long paths
                system.remove_tree(workdir)
            except BaseException:
                pass
        if self.groups is not None:
            self.groups.close()


def main(argv: list) -> None:
    """argv: control fd, the caller's cwd, HIDE joined by os.pathsep, "1"/"0" namespaces,
    "1"/"0" per-run cgroups."""
    fd, parent_cwd, hide = int(argv[0]), argv[1], argv[2].split(os.pathsep)
    ctrl = socket.socket(fileno=fd)
    info, groups = setup(parent_cwd, hide, argv[3] == "1", argv[4] == "1")
    ctrl.send(marshal.dumps(info))
    z = Zygote(ctrl, info, groups)
    while True:
        try:
            z.serve()
            break
        except BaseException:  # never die of a run: serve on
            time.sleep(0.01)
    try:
        z.close()
    finally:
        os._exit(0)
