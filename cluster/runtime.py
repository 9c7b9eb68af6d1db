"""Start or join Ray with token authentication.

Ray 2.59+ enables token auth for local clusters and would write ``~/.ray/auth_token``. The
appliance instead keeps its own token under ``$APPLIANCE_HOME`` (mode 0600) and hands it to Ray
through ``RAY_AUTH_TOKEN``, so every process of one appliance shares one secret and nothing is
written outside the appliance's home.

Embedded shape: work that ends with the process (training, the demo) runs on an in-process
local Ray. Work that must outlive the command (a deployment) needs a Ray that outlives it too,
so `ensure_ray(persistent=True)` starts a detached local head once (``ray start --head``) and
records its address under the home; later commands join it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import ray

from appliance.config import Config
from appliance.errors import CheckFailed


def auth_token(cfg: Config) -> str:
    """Return the appliance's Ray token, creating it (0600) on first use."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path(cfg.home) / "ray_auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _address_file(cfg: Config) -> Path:
    return Path(cfg.home) / "ray_head_address"


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(cfg: Config, num_cpus: int | None = None) -> str:
    """Start a detached local Ray head (loopback only) and return its address."""
    address = f"127.0.0.1:{_free_port()}"
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head",
           f"--port={address.rpartition(':')[2]}", "--node-ip-address=127.0.0.1",
           "--include-dashboard=false", "--disable-usage-stats"]
    cpus = num_cpus or cfg.ray_num_cpus
    if cpus:
        cmd.append(f"--num-cpus={cpus}")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token(cfg)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"could not start a local Ray head: {tail[0]}")
    _address_file(cfg).write_text(address)
    return address


def ensure_ray(cfg: Config, num_cpus: int | None = None, *, persistent: bool = False) -> None:
    """Connect to Ray once per process.

    Args:
        cfg: the appliance configuration; ``cfg.ray_address`` names a cluster to join.
        num_cpus: CPUs for a locally started Ray (default ``cfg.ray_num_cpus``, else all).
        persistent: when no cluster is configured, join (or start) the detached local head
            instead of an in-process Ray that ends with this process (default False; an
            already running local head is joined either way).
    """
    if ray.is_initialized():
        return
    os.environ["RAY_AUTH_TOKEN"] = auth_token(cfg)
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    address = cfg.ray_address
    if not address:
        recorded = _address_file(cfg)
        if recorded.is_file() and _reachable(recorded.read_text().strip()):
            address = recorded.read_text().strip()
        elif persistent:
            address = start_head(cfg, num_cpus)
    if address:
        ray.init(address=address, **quiet)
        return
    # "local": a new Ray of our own. Without it, ray.init joins whatever cluster
    # /tmp/ray/ray_current_cluster names, and hangs or fails if that cluster has died.
    ray.init(address="local", num_cpus=num_cpus or cfg.ray_num_cpus, include_dashboard=False,
             **quiet)

