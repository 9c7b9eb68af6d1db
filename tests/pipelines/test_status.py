"""`appliance_status`: the typed record `appliance status` prints, keys in the contract's order."""

from __future__ import annotations

from appliance.config import load_config
from appliance.pipelines.status import HeadStatusPublic, appliance_status
from cluster.head import ADDRESS_FILE

# tests/cli/test_json_shapes.py pins these keys for the CLI; the order is the table's.
KEYS = ["home", "db_url", "datasets", "models", "versions", "pending_approvals", "open_alerts",
        "deployments", "ray_head"]


def _cfg(tmp_path, url):
    return load_config({"APPLIANCE_HOME": str(tmp_path / "home"), "APPLIANCE_DB_URL": url})


def test_an_appliance_with_no_head(tmp_path, sqlite_url):
    status = appliance_status(_cfg(tmp_path, sqlite_url))
    assert list(status.model_dump()) == KEYS
    assert status.home == str(tmp_path / "home") and status.db_url == sqlite_url
    assert (status.datasets, status.deployments) == (0, [])
    assert status.ray_head == HeadStatusPublic(address=None, running=False, reachable=False,
                                               processes=0, applications=None)


def test_a_recorded_head_that_is_gone_is_reported_down_without_joining_it(tmp_path, sqlite_url):
    home = tmp_path / "home"
    home.mkdir()
    # Port 1: nothing listens there, and no process of a head names it.
    (home / ADDRESS_FILE).write_text("127.0.0.1:1\n")
    head = appliance_status(_cfg(tmp_path, sqlite_url)).ray_head
    assert head == HeadStatusPublic(address="127.0.0.1:1", running=False, reachable=False,
                                    processes=0, applications=None, error=None)
