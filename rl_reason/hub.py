"""Hugging Face hub access: fail in one line, within seconds, when a hub id cannot be reached.

Offline, transformers and datasets retry every request (about a minute and 45 lines of
warnings for one model). Before a hub model or dataset loads, :func:`require` decides once
whether the hub is reachable (``HF_HUB_OFFLINE`` set, or a TCP connect to the endpoint with a
short timeout). Offline, the libraries are switched to their offline mode (they then read the
cache without retrying); an id that is not in the cache is a one-line error naming the id, the
cache looked in, and the ways out (``HF_HUB_OFFLINE=1`` with a filled cache, or a local dir).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

__all__ = ["offline_reason", "require", "looks_like_hub_id"]

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}
_reason: Optional[tuple[str, Optional[str]]] = None  # (endpoint, reason) of the last probe


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` or ``name`` that is not an existing local path."""
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def _env_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def offline_reason() -> Optional[str]:
    """Why the hub cannot be used now (None: it can). The probe runs once per endpoint."""
    global _reason
    if _env_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if _reason is not None and _reason[0] == endpoint:
        return _reason[1]
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        why = None
    except OSError as exc:
        why = f"the hub ({host}) is not reachable: {exc.strerror or exc}"
    _reason = (endpoint, why)
    return why


def go_offline() -> None:
    """Switch huggingface_hub, transformers and datasets to offline mode in this process
    (they read the flag at import time, so the module constants are set too) and in children."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except Exception:
        pass
    try:
        import datasets.config as dconfig

        dconfig.HF_HUB_OFFLINE = True
        if hasattr(dconfig, "HF_DATASETS_OFFLINE"):
            dconfig.HF_DATASETS_OFFLINE = True
    except Exception:
        pass


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return os.path.expanduser("~/.cache/huggingface/hub")


def _cached(repo_id: str, repo_type: str) -> bool:
    folder = Path(_hub_cache()) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    if (folder / "snapshots").is_dir() and any((folder / "snapshots").iterdir()):
        return True
    if repo_type == "dataset":  # datasets' own prepared cache
        try:
            import datasets.config as dconfig

            root = Path(dconfig.HF_DATASETS_CACHE)
        except Exception:
            return False
        return (root / repo_id.replace("/", "___")).is_dir()
    return False


def require(repo_id: str, *, repo_type: str, key: str, error: type, way_out: Optional[str] = None) -> None:
    """Before loading hub id ``repo_id`` (``repo_type`` "model" or "dataset", named by recipe
    ``key``): offline, switch the libraries to the cache, or raise ``error`` in one line.
    ``way_out`` replaces the closing "set KEY to a local directory or file"."""
    if not looks_like_hub_id(repo_id):
        return
    why = offline_reason()
    if why is None:
        return
    go_offline()
    if _cached(repo_id, repo_type):
        return
    raise error(
        f"{key}={repo_id!r}: {why}, and the {repo_type} is not in the Hugging Face cache "
        f"({_hub_cache()}); download it once where the hub is reachable (later runs read the "
        f"cache, e.g. with HF_HUB_OFFLINE=1), or {way_out or f'set {key} to a local directory or file'}"
    )
