"""Session-wide fixtures: an isolated appliance home and one shared local Ray."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest

# Before anything imports Ray: Ray 2.59+ writes ~/.ray/auth_token for a local cluster, so the
# whole session gets a throwaway HOME and an explicit token instead.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="appliance-test-home-"))
os.environ["HOME"] = str(_SESSION_HOME)
os.environ.setdefault("APPLIANCE_HOME", str(_SESSION_HOME / ".appliance"))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) shared by every test that asks for it."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()
