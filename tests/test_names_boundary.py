"""Every name and path a user gives is checked at one boundary (`appliance.names`): traversal,
absolute paths, NUL and control characters, and very long names are refused, in the library and
through the real CLI (exit 2, one stderr line naming the argument)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from appliance.artifacts import ArtifactStore
from appliance.errors import InvalidInput
from appliance.names import MAX_PATH, check_model_name, check_name, check_path
from appliance.registry import datasets, models
from appliance.store import session_scope

BAD = ["../x", "a/b", "/etc/passwd", "x\x00y", "tab\there", "x" * 129, "..", ""]


@pytest.mark.parametrize("name", ["credit", "credit-v2", "a.b_c", "9lives", "x" * 63])
def test_good_model_names(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", [*BAD, "Credit", "x" * 64, "-x", None])
def test_bad_model_names_are_refused_naming_them(name):
    with pytest.raises(InvalidInput, match="model name"):
        check_model_name(name)


@pytest.mark.parametrize("path", ["data.csv", "/data/loans.parquet", "s3://bucket/a b.csv"])
def test_good_paths(path):
    assert check_path("dataset file", path) == path


@pytest.mark.parametrize("path", ["", "a\x00b", "a\nb", "x" * (MAX_PATH + 1), None])
def test_bad_paths_are_refused_naming_them(path):
    with pytest.raises(InvalidInput, match="dataset file"):
        check_path("dataset file", path)


@pytest.mark.parametrize("name", BAD)
def test_the_registry_refuses_bad_names(sqlite_url, tmp_path, name):
    store = ArtifactStore(tmp_path / "a")
    with session_scope(sqlite_url) as s:
        with pytest.raises(InvalidInput, match="dataset name"):
            datasets.add_table(s, store, pa.table({"x": [1]}), name, actor="ops")
        with pytest.raises(InvalidInput, match="dataset name"):
            datasets.resolve(s, f"{name}:1")
        with pytest.raises(InvalidInput, match="model name"):
            models.ensure_model(s, name, owner="ops", team="t")
        for ref in (name, f"{name}:1", f"{name}@champion"):
            with pytest.raises(InvalidInput, match="model name"):
                models.resolve(s, ref)
        if name:
            with pytest.raises(InvalidInput, match="alias"):
                models.resolve(s, f"credit@{name}")
    with pytest.raises(InvalidInput, match="file"):
        datasets.read_table(f"{name}\x00.csv")


def test_run_names_use_the_same_rule():
    # cluster.train checks its run name with check_name; its old rule allowed 100 characters.
    assert check_name("run name", "credit-" + "a" * 16) == "credit-" + "a" * 16
    with pytest.raises(InvalidInput, match="run name 'bad name/..'"):
        check_name("run name", "bad name/..")


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("names-home")
    e = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    e["APPLIANCE_HOME"] = str(home)
    assert _cli(["init", "--json"], e).returncode == 0
    return e


LONG = "m" * 200


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["promote", "../x", "1"], "model name '../x'"),
        (["promote", "credit", "1", "--to", "a/b"], "alias 'a/b'"),
        (["promote", "credit", "1", "--expires-in", "soon"], "--expires-in 'soon'"),
        (["deploy", "/etc/passwd"], "model name '/etc/passwd'"),
        (["models", "show", "a/b:1"], "model name 'a/b'"),
        (["models", "set", "../x", "--team", "t"], "model name '../x'"),
        (["lineage", "credit@../x"], "alias '../x'"),
        (["policy", "show", LONG], f"model name '{LONG}'"),
        (["canary", "status", ".."], "model name '..'"),
        (["rollback", "../../x"], "model name '../../x'"),
        (["data", "add", "@CSV@", "--name", "../x"], "dataset name '../x'"),
        (["data", "add", "@CSV@", "--name", "a\tb"], "dataset name 'a\\tb'"),
        (["feedback", "add", "@CSV@", "--deployment", "/abs"], "deployment name '/abs'"),
        (["monitor", "--once", "--deployment", "../x"], "deployment name '../x'"),
        (["approvals", "--status", "weird"], "unknown approval status 'weird'"),
    ],
)
def test_the_cli_refuses_bad_names_with_exit_2(env, args, needle, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("request_id,row,label\nr1,0,1\n")
    res = _cli([str(csv) if a == "@CSV@" else a for a in args], env)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not any((tmp_path.parent / "x").glob("*"))
