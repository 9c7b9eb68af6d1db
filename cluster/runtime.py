"""Start or join Ray with token authentication.

Ray 2.59+ enables token auth for local clusters and would write ``~/.ray/auth_token``. The
appliance instead keeps its own token under ``$APPLIANCE_HOME`` (mode 0600) and hands it to Ray
through ``RAY_AUTH_TOKEN``, so every process of one appliance shares one secret and nothing is
written outside the appliance's home.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import ray

from appliance.config import Config


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


def ensure_ray(cfg: Config, num_cpus: int | None = None) -> None:
    """Connect to ``cfg.ray_address`` or start a local Ray, once per process.

    Args:
        cfg: the appliance configuration.
        num_cpus: CPUs for a locally started Ray (default ``cfg.ray_num_cpus``, else all).
    """
    if ray.is_initialized():
        return
    os.environ["RAY_AUTH_TOKEN"] = auth_token(cfg)
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, logging_level="ERROR", log_to_driver=False)
        return
    ray.init(
        num_cpus=num_cpus or cfg.ray_num_cpus,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        configure_logging=True,
    )
