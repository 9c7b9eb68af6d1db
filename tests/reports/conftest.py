"""The report tests' store: one lived-in SQLite store per module (`report_world`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator

import pytest
from report_world import World, build_world

from appliance.config import load_config
from appliance.governance import audit
from appliance.reports.audit_report import AuditReportPublic, build_audit_report
from appliance.store import migrate, session_scope
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


@pytest.fixture
def quiet_month(sqlite_url, tmp_path) -> AuditReportPublic:
    """The audit report of January 2026 on an empty store: nothing happened, the chain holds."""
    cfg = dataclasses.replace(load_config({"APPLIANCE_HOME": str(tmp_path / "home")}),
                              db_url=sqlite_url)
    with audit.configured(cfg), session_scope(sqlite_url) as s:
        return build_audit_report(s, "2026-01", cfg,
                                  now=dt.datetime(2026, 2, 10, tzinfo=dt.timezone.utc))
