"""Isolated execution of model-written Python.

Layout of one run (Linux, as root; see ``capabilities()`` for what applied elsewhere)::

    caller process ──(SEQPACKET + fd passing)──> zygote  (one per caller process, started once:
         │                                                 no network namespace, pids/memory
         │ run socket                                      cgroup, common modules pre-imported)
         v                                                    │ fork per run
      harness  W  (own cgroup v2, killed whole when the run ends; own mount and IPC namespace
         │         with an empty /tmp and /dev/shm of its own; read-only /, hidden /root /home
         │         /work ...; drops to a fresh unprivileged uid A)
         │ socketpair: calls in, JSON data out
         v
      model    M  (pid 1 of a fresh pid namespace; fresh uid B != A; rlimits; seccomp: no
                   socket(); scrubbed env; stdin /dev/null; stdout/stderr through capped pipes)

The model's code runs only in M. The tests run only in W and reach the solution through
proxies: every call is a message to M, and what comes back is data-only JSON (numbers,
strings, containers and tagged forms of a few stdlib value types; anything else stays a
handle in M). So the verdict is computed and written by W, a process the model's code can
neither signal, trace, read nor write to, and never by M's exit status or output.

Package layout: ``caller`` is this side (records, the zygote client, ``run_tests``,
``run_io``); ``inside`` is the standard-library-only program side that runs in the zygote
(``wire``: framing and the value codec; ``system``: namespaces, mounts, seccomp, cgroups;
``zygote``; ``harness``: W; ``model``: M).
"""

from __future__ import annotations

import os

from .caller import (  # noqa: F401  (_get_zygote: tests reach the running zygote through it)
    Limits,
    ProgramOutcome,
    SandboxError,
    TestOutcome,
    _get_zygote,
    capabilities,
    network_isolation,
    run_io,
    run_program,
    run_tests,
    shutdown,
)

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

# Directories covered by an empty tmpfs inside the sandbox (plus the caller's working
# directory); the Python installation is bound back read-only if it lives under one of them.
# Change before the first run: it is applied once per zygote.
HIDE = ["/root", "/home", "/work", "/srv", "/opt"]
# False (or RL_REASON_SANDBOX_NAMESPACES=0) runs without any namespace, as on platforms that
# refuse them: sockets are then blocked by seccomp (or in-process), files are protected by
# the uid drop alone. Applied when the zygote starts (call ``shutdown()`` first to change it).
NAMESPACES = os.environ.get("RL_REASON_SANDBOX_NAMESPACES", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)
# False (or RL_REASON_SANDBOX_CGROUPS=0) leaves out the per-run cgroup v2: a run's processes
# are then killed by a SIGKILL sweep of its uid (as root), or by process group. Applied when
# the zygote starts, like NAMESPACES.
CGROUPS = os.environ.get("RL_REASON_SANDBOX_CGROUPS", "1").strip().lower() not in ("0", "false", "no", "off")
