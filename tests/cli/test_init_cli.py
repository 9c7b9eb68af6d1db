"""`appliance init` (appliance/cli/init.py) on an empty, migrated store: what it tells the
operator (stderr only), its `InitPublic` document and `--json=FIELDS`, the admin it makes and
whose saved token later commands act with, and its refusals (a store with users, a bad name).

tests/cli/test_cli_operations.py checks that it is one operation and the token file's mode.
"""

from __future__ import annotations

import json
import shutil

import pytest
from cli_home import invoke, one_error_line, refusal, run_cli, use_home

from appliance.config import load_config
from appliance.governance.bootstrap import InitPublic


@pytest.fixture
def empty(tmp_path, _sqlite_template):
    """The configuration of a home whose store is migrated and has no user yet."""
    shutil.copyfile(_sqlite_template, tmp_path / "appliance.db")
    return load_config({"APPLIANCE_HOME": str(tmp_path)})


def test_init_tells_the_operator_on_stderr_and_refuses_a_second_time(empty):
    res = run_cli(["init", "--admin", "root"], empty)
    assert res.returncode == 0, res.stderr
    # Nothing a script would read: the token is in the file, never in any output.
    assert res.stdout == ""
    token = (empty.home / "token").read_text()
    assert token.startswith("apl_") and token not in res.stderr
    said = " ".join(res.stderr.split())
    assert f"initialised appliance at {empty.home}; admin 'root'" in said
    assert f"admin token saved to {empty.home / 'token'} (used when APPLIANCE_TOKEN is unset)" \
        in said
    line = one_error_line(run_cli(["init"], empty))
    assert f"the store at {empty.db_url!r} already has users" in line
    assert "create more with `appliance users create`" in line
    assert (empty.home / "token").read_text() == token


def test_a_home_whose_path_looks_like_markup_is_printed_as_it_is(tmp_path, _sqlite_template):
    # The path reads ".../[bold]ops[/]x": a tag, and a closing tag rich refuses.
    home = tmp_path / "[bold]ops[" / "]x"
    home.mkdir(parents=True)
    shutil.copyfile(_sqlite_template, home / "appliance.db")
    res = run_cli(["init", "--admin", "root"], load_config({"APPLIANCE_HOME": str(home)}))
    assert res.returncode == 0, res.stderr
    # Compared without whitespace: a long path wraps anywhere on stderr.
    said = "".join(res.stderr.split())
    assert "".join(f"initialised appliance at {home}; admin 'root'".split()) in said
    assert "".join(f"admin token saved to {home / 'token'}".split()) in said


def test_init_json_is_its_record_and_the_saved_token_acts_as_the_admin(empty, monkeypatch):
    use_home(monkeypatch, empty)
    res = invoke(["init", "--admin", "chief", "--team", "risk", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = InitPublic.model_validate_json(res.stdout)
    assert doc == InitPublic(home=str(empty.home), db_url=empty.db_url,
                             artifacts=str(empty.artifacts), admin="chief",
                             token_file=str(empty.home / "token"))
    assert res.stderr == "" and empty.artifacts.is_dir()
    users = json.loads(invoke(["users", "list", "--json"]).stdout)
    assert [(u["name"], u["role"], u["team"]) for u in users] == [("chief", "admin", "risk")]
    # No APPLIANCE_TOKEN: an admin-only command runs as the admin whose token init saved.
    listed = invoke(["tokens", "list", "--json"])
    assert listed.exit_code == 0, (listed.output, listed.exception)
    assert [(t["user"], t["name"], t["state"]) for t in json.loads(listed.stdout)] == [
        ("chief", "init", "active")]


def test_init_json_fields_prints_only_those(empty, monkeypatch):
    use_home(monkeypatch, empty)
    res = invoke(["init", "--json=token_file,admin"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert res.stdout.startswith('{\n  "token_file"')
    assert json.loads(res.stdout) == {"token_file": str(empty.home / "token"), "admin": "admin"}


def test_a_bad_admin_name_creates_nothing(empty, monkeypatch):
    use_home(monkeypatch, empty)
    message = refusal(invoke(["init", "--admin", "no way"]))
    assert message == "user name 'no way' must be letters, digits, '-', '_' or '.'"
    assert not (empty.home / "token").exists()
    # The store still has no user: a good name is accepted afterwards.
    assert invoke(["init", "--admin", "ok.name"]).exit_code == 0
