"""Configuration precedence: defaults < appliance.toml < environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.errors import InvalidInput


def test_defaults_need_no_file(tmp_path):
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert cfg.home == tmp_path
    assert cfg.db_url == f"sqlite:///{tmp_path / 'appliance.db'}"
    assert cfg.artifacts == tmp_path / "artifacts"
    assert cfg.ray_address is None and cfg.serve_host == "127.0.0.1"


def test_default_home_is_under_the_user_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config({}).home == Path(tmp_path) / ".appliance"


def test_file_then_environment(tmp_path):
    (tmp_path / "appliance.toml").write_text(
        'db_url = "postgresql://db/appl"\nartifacts = "/srv/art"\nserve_port = 9000\n'
        'ray_address = "10.0.0.1:6379"\n'
    )
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert (cfg.db_url, cfg.artifacts, cfg.serve_port) == (
        "postgresql://db/appl", Path("/srv/art"), 9000)
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_DB_URL": "sqlite:///x.db",
                       "APPLIANCE_ARTIFACTS": "/other", "RAY_ADDRESS": "head:6379"})
    assert (cfg.db_url, cfg.artifacts, cfg.ray_address) == (
        "sqlite:///x.db", Path("/other"), "head:6379")


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("serve_host = '0.0.0.0'\n")
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_CONFIG": str(path)})
    assert cfg.serve_host == "0.0.0.0"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("db_url = ", "not valid TOML"), ("colour = 'blue'\n", "unknown key(s) ['colour']"),
     ("serve_port = 'eighty'\n", "serve_port must be an integer")],
)
def test_bad_config_names_the_problem(tmp_path, text, needle):
    (tmp_path / "appliance.toml").write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert needle in str(info.value)


@pytest.mark.parametrize(("env", "toml", "expected"), [
    ({}, "", False),  # embedded: SQLite, local Ray
    ({"APPLIANCE_DB_URL": "postgresql://db/appl"}, "", True),
    ({"RAY_ADDRESS": "head:6379"}, "", True),
    ({}, 'db_url = "postgresql://db/appl"\n', True),
    ({"APPLIANCE_DB_URL": "postgresql://db/appl"}, "require_token_for_reads = false\n", False),
    ({}, "require_token_for_reads = true\n", True),
    ({"APPLIANCE_REQUIRE_TOKEN_FOR_READS": "0", "RAY_ADDRESS": "head:6379"}, "", False),
    ({"APPLIANCE_REQUIRE_TOKEN_FOR_READS": "yes"}, "require_token_for_reads = false\n", True),
])
def test_reads_need_a_token_on_a_cluster_by_default(tmp_path, env, toml, expected):
    (tmp_path / "appliance.toml").write_text(toml)
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path), **env})
    assert cfg.require_token_for_reads is expected


def test_require_token_for_reads_must_be_a_boolean(tmp_path):
    (tmp_path / "appliance.toml").write_text('require_token_for_reads = "sometimes"\n')
    with pytest.raises(InvalidInput, match="require_token_for_reads must be true or false"):
        load_config({"APPLIANCE_HOME": str(tmp_path)})
    with pytest.raises(InvalidInput, match="APPLIANCE_REQUIRE_TOKEN_FOR_READS must be true"):
        load_config({"APPLIANCE_HOME": str(tmp_path / "x"),
                     "APPLIANCE_REQUIRE_TOKEN_FOR_READS": "maybe"})
