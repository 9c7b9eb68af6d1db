"""The report tests' store: one lived-in SQLite store per module (`report_world`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from report_world import World, build_world

from appliance.store import migrate
from appliance.store.database import dispose_all


@pytest.fixture(scope="module")
def world(request, tmp_path_factory) -> Iterator[World]:
    """One lived-in SQLite store per test module; the report tests only read it."""
    home = tmp_path_factory.mktemp("report-world")
    shutil.copyfile(request.getfixturevalue("_sqlite_template"), home / "store.db")
    url = f"sqlite:///{home / 'store.db'}"
    migrate(url)
    try:
        yield build_world(url, home)
    finally:
        dispose_all()
