"""The program side of the sandbox: everything that runs inside the zygote and its children.

Standard library only, and importable two ways: as ``rewards.sandbox.inside`` (the caller uses
``wire`` for framing) and as the top-level package ``inside`` (the zygote is started as
``python -I -S -c ...`` with this package's parent directory on ``sys.path``, so it never
imports ``rewards`` or anything outside the standard library).

Layers, outside in:

- ``wire``: framing, and the data-only value codec of the harness <-> model link;
- ``system``: Linux plumbing (namespaces, mounts, seccomp, cgroups, fd-based tree removal);
- ``zygote``: the long-lived root process that forks one harness per run and cleans up;
- ``harness``: the harness process W (runs the tests, computes the verdict);
- ``model``: the model process M (runs the model's code and answers the harness).
"""
