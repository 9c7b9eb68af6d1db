"""Fixtures of the cluster.serve module tests: a trained bundle file."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import make_bundle


@pytest.fixture(scope="session")
def bundle_file(tmp_path_factory) -> Path:
    """serve_helpers' small trained model, as the bundle file a replica loads."""
    path = tmp_path_factory.mktemp("bundle") / "credit.bundle"
    path.write_bytes(make_bundle().to_bytes())
    return path
