"""What a run records about the code and environment that produced it."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from pathlib import Path


@functools.cache
def code_version() -> str:
    """``git:<sha>[+dirty]`` when running from a checkout, else ``appliance==<version>``."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{sha}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"appliance=={importlib.metadata.version('appliance')}"


@functools.cache
def environment_hash() -> str:
    """sha256 over the sorted ``name==version`` of every installed distribution (a lock hash)."""
    pins = sorted(
        f"{(d.metadata['Name'] or '').lower()}=={d.version}"
        for d in importlib.metadata.distributions()
    )
    return "sha256:" + hashlib.sha256("\n".join(pins).encode()).hexdigest()
