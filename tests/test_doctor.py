"""`appliance doctor`'s checks (`appliance.doctor`), called in process on real stores and
folders: what passes, what fails naming the cause, and that checking never creates or leaks
anything. The command itself, on a real Ray head: tests/cli/test_doctor_cli.py."""

from __future__ import annotations

import dataclasses
import sqlite3

from appliance import doctor
from appliance.config import load_config
from appliance.store import migrate


def _cfg(tmp_path, db_url=None):
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path / "home")})
    return dataclasses.replace(cfg, db_url=db_url) if db_url else cfg


def test_a_set_up_node_passes_every_check(db_url, tmp_path):
    cfg = _cfg(tmp_path, db_url)
    report = doctor.run(cfg)
    names = [c.name for c in report.checks]
    assert names == ["ray.version", "ray.ports", "store.migrations", "artifacts.writable",
                     "artifacts.disk", "audit.chain", "clock.skew", "gpu.nvml"]
    assert report.ok, report.findings
    assert all(c.status in (doctor.OK, doctor.WARN) for c in report.checks)
    assert report.model_dump()["ok"] is True
    by_name = {c.name: c for c in report.checks}
    assert by_name["ray.ports"].detail == "no local Ray head is running"
    assert "at migration" in by_name["store.migrations"].detail


def test_a_missing_store_fails_and_is_not_created(tmp_path):
    cfg = _cfg(tmp_path)
    check = doctor.check_database(cfg)
    assert (check.name, check.status) == ("store.reachable", doctor.FAIL)
    assert "run `appliance init`" in check.detail
    assert not list((tmp_path / "home").glob("*.db"))
    # The store's failure skips the checks that need it, and the report fails.
    report = doctor.run(cfg)
    assert not report.ok and "audit.chain" not in [c.name for c in report.checks]


def test_an_unmigrated_store_names_both_revisions(tmp_path):
    url = f"sqlite:///{tmp_path / 'blank.db'}"
    migrate(url)
    with sqlite3.connect(tmp_path / "blank.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001_old'")
    check = doctor.check_database(_cfg(tmp_path, url))
    assert (check.name, check.status) == ("store.migrations", doctor.FAIL)
    assert "is at migration 0001_old, the code expects" in check.detail


def test_an_unreachable_store_is_named_without_its_password(tmp_path):
    url = "postgresql+psycopg://ops:hunter2@127.0.0.1:1/appliance?connect_timeout=2"
    check = doctor.check_database(_cfg(tmp_path, url))
    assert check.status == doctor.FAIL and "cannot reach the metadata store" in check.detail
    assert "hunter2" not in check.detail and "\n" not in check.detail


def test_an_artifact_root_that_cannot_be_written_fails(tmp_path):
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the folder should be")
    cfg = dataclasses.replace(_cfg(tmp_path), artifacts=blocked)
    [check] = doctor.check_artifacts(cfg)
    assert (check.name, check.status) == ("artifacts.writable", doctor.FAIL)
    assert f"cannot write in {blocked}" in check.detail


def test_the_report_fails_on_any_failed_check_and_lists_findings():
    ok = doctor.Check(name="a", status=doctor.OK, detail="")
    warn = doctor.Check(name="b", status=doctor.WARN, detail="")
    fail = doctor.Check(name="c", status=doctor.FAIL, detail="")
    assert doctor.Report(checks=[ok, warn]).ok
    assert doctor.Report(checks=[ok, warn]).findings == [warn]
    assert not doctor.Report(checks=[ok, fail]).ok
