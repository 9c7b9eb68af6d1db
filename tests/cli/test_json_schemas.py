"""Every ``--json`` names its typed record, each record's JSON schema is a golden file, and
``--json=FIELDS`` selects fields the way `gh` does.

The golden files (tests/cli/golden/*.schema.json) are the CLI's JSON contract: a change to a
record that scripts would notice (a key renamed, dropped, retyped) changes its schema and fails
here until the golden file is rewritten on purpose::

    APPLIANCE_UPDATE_GOLDEN=1 pytest tests/cli/test_json_schemas.py

tests/cli/test_json_shapes.py runs the read commands against a populated store and checks that
what they print validates against these records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from json_records import json_commands
from pydantic import TypeAdapter

from appliance.cli._json_fields import record_fields, split_fields

GOLDEN = Path(__file__).parent / "golden"


COMMANDS_WITH_JSON = json_commands()


def _golden(path: tuple[str, ...]) -> Path:
    return GOLDEN / f"{'-'.join(path)}.schema.json"


def test_every_json_option_names_its_record():
    assert len(COMMANDS_WITH_JSON) > 30
    undeclared = sorted(" ".join(p) for p, record in COMMANDS_WITH_JSON.items() if record is None)
    assert not undeclared, f"declare --json with json_option(Record): {undeclared}"


@pytest.mark.parametrize("path", sorted(COMMANDS_WITH_JSON), ids=" ".join)
def test_the_record_matches_its_golden_schema(path):
    record = COMMANDS_WITH_JSON[path]
    if record is None:
        pytest.skip("declares no record (test_every_json_option_names_its_record fails)")
    schema = TypeAdapter(record).json_schema(mode="serialization")
    golden = _golden(path)
    if os.environ.get("APPLIANCE_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert golden.is_file(), f"no golden schema for `{' '.join(path)}`: see this module's doc"
    assert json.loads(golden.read_text()) == schema, (
        f"`{' '.join(path)} --json` changed its shape; if on purpose, rewrite the golden file")


def test_no_golden_file_outlives_its_command():
    expected = {_golden(p).name for p in COMMANDS_WITH_JSON}
    assert {p.name for p in GOLDEN.glob("*.schema.json")} <= expected


def test_json_equals_fields_is_taken_apart_before_parsing():
    assert split_fields(["models", "list", "--json=model, version"]) == (
        ["models", "list", "--json"], ("model", "version"))
    assert split_fields(["models", "list", "--json"]) == (["models", "list", "--json"], None)
    assert split_fields(["x", "--json="]) == (["x", "--json"], ())
    # After `--`, an argument that looks like the option is an argument.
    assert split_fields(["x", "--", "--json=a"]) == (["x", "--", "--json=a"], None)


def test_record_fields_use_the_json_names():
    from appliance.registry.models import ModelVersionPublic

    assert record_fields(list[ModelVersionPublic]) == list(ModelVersionPublic.model_fields)


# --- field selection, end to end --------------------------------------------------------------

def _cli(args, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(APPLIANCE_HOME=str(home), HOME=str(home))
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("fields")
    data = home / "loans.csv"
    data.write_text("x,y\n1.0,0\n2.0,1\n")
    for args in (["init"], ["data", "add", str(data), "--name", "loans"]):
        res = _cli(args, home)
        assert res.returncode == 0, res.stderr
    return home


def test_fields_are_printed_in_the_order_asked(home):
    res = _cli(["data", "list", "--json=rows,name"], home)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [{"rows": 2, "name": "loans"}]
    assert list(json.loads(res.stdout)[0]) == ["rows", "name"]
    res = _cli(["data", "show", "loans", "--json=digest"], home)
    assert res.returncode == 0, res.stderr
    (key,) = json.loads(res.stdout)
    assert key == "digest"


def test_an_unknown_field_lists_the_available_ones_before_anything_runs(home):
    res = _cli(["data", "list", "--json=name,nope"], home)
    assert res.returncode == 2 and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert "unknown field 'nope'" in line and "name, version, digest, rows" in line
    res = _cli(["data", "list", "--json="], home)
    assert res.returncode == 2 and "available fields: name, version" in res.stderr
    # A mutating command checks its fields before it acts: the dataset is not registered.
    data = home / "more.csv"
    data.write_text("x,y\n3.0,0\n")
    res = _cli(["data", "add", str(data), "--name", "more", "--json=bogus"], home)
    assert res.returncode == 2 and "unknown field 'bogus'" in res.stderr
    listed = json.loads(_cli(["data", "list", "--json=name"], home).stdout)
    assert listed == [{"name": "loans"}]


def test_json_fields_on_a_command_without_json_is_a_usage_error(home):
    res = _cli(["tokens", "revoke", "admin", "--name", "x", "--json=name"], home)
    assert res.returncode == 2 and "--json" in res.stderr
