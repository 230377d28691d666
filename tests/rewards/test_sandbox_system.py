"""rewards.sandbox.inside.system: non-recursive tree removal, the tmpfs for fallback workdirs,
cgroup paths (the namespaces, seccomp and kills are exercised by test_sandbox.py)."""

from __future__ import annotations

import os

import pytest

from rewards.sandbox.inside import system


def _deep(root, depth, files=0):
    os.mkdir(root)
    d = root
    for i in range(depth):
        d = os.path.join(d, "d")
        os.mkdir(d)
    for i in range(files):
        open(os.path.join(root, f"f{i}"), "w").close()
    return root


def test_remove_tree_takes_trees_deeper_than_recursion_and_path_limits(tmp_path):
    root = str(tmp_path / "deep")
    # 3000 levels: past the recursion limit and PATH_MAX (4096) for the full path; built by fd
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(3000):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    open("f", "w", opener=lambda p, f: os.open(p, f, dir_fd=fd)).close()
    os.close(fd)
    system.remove_tree(root)
    assert not os.path.lexists(root)


def test_remove_tree_takes_wide_trees_and_leaves_links_targets_alone(tmp_path):
    root = _deep(str(tmp_path / "wide"), 3, files=500)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("x")
    os.symlink(keep, os.path.join(root, "link"))
    system.remove_tree(root)
    assert not os.path.lexists(root) and (keep / "precious").read_text() == "x"
    system.remove_tree(str(tmp_path / "never-there"))  # nothing to do, no error


def test_tmpfs_dir_names_only_a_tmpfs_mount_point(tmp_path):
    with open("/proc/self/mountinfo") as fh:
        fstypes = {ln.split(" - ")[0].split()[4]: ln.split(" - ")[1].split()[0] for ln in fh}
    got = system.tmpfs_dir()
    if fstypes.get("/dev/shm") == "tmpfs" and os.access("/dev/shm", os.W_OK):
        assert got == "/dev/shm"
    else:
        assert got is None
    assert system.tmpfs_dir((str(tmp_path), "/nonexistent")) is None  # a plain directory is not one


def test_own_cgroup_v1_reads_proc_self_cgroup():
    with open("/proc/self/cgroup") as fh:
        lines = fh.read().splitlines()
    v1 = [ln.split(":", 2) for ln in lines if not ln.startswith("0::")]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy")
    _, ctls, path = v1[0]
    assert system.own_cgroup_v1(ctls.split(",")[0]) == ("" if path == "/" else path)
    assert system.own_cgroup_v1("no-such-controller") == ""
