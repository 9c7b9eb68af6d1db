"""`appliance.cli.commands`: the root group's rows and `RootGroup`.

Each row's summary is what its command's own help says, the root group resolves every row (and
nothing else), single commands come before groups, and ``--json=FIELDS`` anywhere below the
root is taken apart before Click parses: the flag stays, the names travel in the context's
meta to whichever command, single or in a group, declares the option. (The lazy group itself:
tests/cli/test_lazy_commands.py; help without imports: tests/test_import_hygiene.py.)
"""

from __future__ import annotations

import inspect
import json

import pytest
import typer
import typer.main
from governance_world import people, registered_version
from typer.testing import CliRunner

from appliance.cli._json_fields import META_KEY
from appliance.cli._lazy import build
from appliance.cli.commands import COMMANDS
from appliance.cli.main import app
from appliance.governance import approvals
from appliance.governance.users import get_user
from appliance.store import dispose_all, migrate, session_scope


def _first_paragraph(cmd) -> str:
    return inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0]


@pytest.mark.parametrize("row", COMMANDS, ids=lambda r: r.name)
def test_each_row_summarises_its_command_as_the_command_does(row):
    cmd = build(row)
    assert cmd.name == row.name
    assert row.summary == _first_paragraph(cmd), (
        f"the summary of {row.name!r} in appliance/cli/commands.py differs from its help; "
        "copy the first paragraph of its docstring (or its Typer's help)"
    )


def test_rows_are_unique_and_the_root_group_resolves_them_all():
    names = [r.name for r in COMMANDS]
    assert len(names) == len(set(names))
    group = typer.main.get_command(app)
    assert group.list_commands(None) == names
    for name in names:
        cmd = group.get_command(None, name)
        assert cmd is not None and cmd.name == name, name
    assert group.get_command(None, "no-such-command") is None


def test_single_commands_are_listed_before_groups():
    is_group = [isinstance(row.load(), typer.Typer) for row in COMMANDS]
    assert is_group == sorted(is_group), [r.name for r in COMMANDS]


@pytest.mark.parametrize(("args", "fields", "rest"), [
    (["approvals", "--json=id, status"], ("id", "status"), ["--json"]),
    (["data", "list", "--json=name"], ("name",), ["list", "--json"]),
    (["models", "list", "--json=", "--limit", "3"], (), ["list", "--json", "--limit", "3"]),
    (["approvals", "--json"], None, ["--json"]),
    # After `--` it is an argument, whatever it looks like.
    (["data", "show", "--", "--json=a"], None, ["show", "--", "--json=a"]),
])
def test_json_fields_are_split_off_before_parsing(args, fields, rest):
    ctx = typer.main.get_command(app).make_context("appliance", list(args))
    assert ctx.meta.get(META_KEY) == fields
    assert ctx.args == rest


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("commands")
    url = f"sqlite:///{home / 'appliance.db'}"
    migrate(url)
    people(url)
    version = registered_version(url, home)
    with session_scope(url) as s:
        approvals.request_promotion(s, get_user(s, "ops"), s.merge(version), "champion",
                                    approvals.gate({"accuracy": 0.9, "auc": 0.9}))
    dispose_all()
    return home


def test_a_single_command_gets_its_fields_in_the_order_asked(home, monkeypatch):
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_HOME", str(home))
    try:
        res = CliRunner().invoke(app, ["approvals", "--json=status,model,id"])
    finally:
        dispose_all()
    assert res.exit_code == 0, (res.output, res.exception)
    (doc,) = json.loads(res.stdout)
    assert list(doc.items()) == [("status", "pending"), ("model", "credit"), ("id", 1)]
