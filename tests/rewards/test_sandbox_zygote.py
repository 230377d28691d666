"""rewards.sandbox.inside.zygote: fresh uid blocks per run, and what setup reports."""

from __future__ import annotations

from rewards import sandbox
from rewards.sandbox.inside import zygote


def test_uid_blocks_are_fresh_aligned_and_never_real_accounts():
    blocks = {zygote._random_uid_block() for _ in range(200)}
    assert len(blocks) > 190  # random: runs almost never share a block
    for b in blocks:
        assert b % 4096 == 0 and 0x10000000 <= b < 0x10000000 + 0x40000 * 4096


def test_capabilities_report_every_key_and_a_consistent_kill_path():
    info = sandbox.capabilities()
    keys = {"root", "uid_drop", "mount_ns", "pid_ns", "run_ns", "cgroup", "run_cgroup", "network"}
    assert keys | {"namespaces", "run_kill", "seccomp", "workdir_root"} <= set(info)
    expected = (
        "pid-namespace"
        if info["pid_ns"]
        else "cgroup"
        if info["run_cgroup"]
        else "uid-sweep"
        if info["uid_drop"]
        else "process-group"
    )
    assert info["run_kill"] == expected
    assert info["workdir_root"] is None if info["mount_ns"] else True
