"""`appliance predictions show|explain` on requests logged by the real prediction log, with a
real XGBoost bundle in the store: the JSON is the typed record, errors are one line, exit 2."""

from __future__ import annotations

import json
import shutil

import loop_world as lw
import pytest
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.errors import InvalidInput, exit_code_for
from appliance.store import dispose_all


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template):
    """The world's model v1 backed by a real tree bundle; two requests logged, the first in a
    closed window, the second still pending (`loop_world.tree_world`)."""
    home = tmp_path_factory.mktemp("predictions-cli")
    shutil.copyfile(_sqlite_template, home / "store.db")
    world = lw.tree_world(home, f"sqlite:///{home / 'store.db'}")
    dispose_all()
    return world


@pytest.fixture
def env(home, monkeypatch):
    w, bundle = home
    monkeypatch.setenv("APPLIANCE_HOME", str(w.cfg.home))
    monkeypatch.setenv("APPLIANCE_DB_URL", w.cfg.db_url)
    monkeypatch.setenv("APPLIANCE_ARTIFACTS", str(w.cfg.artifacts))
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    return w, bundle


def _json(args):
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_show_returns_the_logged_request_and_its_lineage(env):
    w, _ = env
    doc = _json(["predictions", "show", "first"])
    assert set(doc) == {"request_id", "client_id", "deployment", "model", "window", "pending",
                        "rows", "lineage"}
    assert doc["window"] == 1 and doc["pending"] is False
    drawn = lw.draw(4, 11)
    assert [r["inputs"]["x2"] for r in doc["rows"]] == drawn["x2"].tolist()
    assert [r["inputs"]["c"] for r in doc["rows"]] == drawn["c"].tolist()
    assert doc["rows"][0]["version"] == "1" and doc["rows"][0]["label"] is None
    assert doc["lineage"]["1"]["run"]["id"]
    assert _json(["predictions", "show", "second"])["pending"] is True


def test_explain_attributes_the_margin_with_tree_shap(env):
    w, bundle = env
    doc = _json(["predictions", "explain", "first", "--row", "2"])
    assert doc["method"] == "tree_shap" and doc["kind"] == "xgboost" and doc["row"] == 2
    drawn = lw.draw(4, 11)
    row = {f: drawn[f][2:3] for f in lw.FEATURES}
    margin = float(bundle.raw(row)[0, 0])
    total = doc["baseline_value"] + sum(a["attribution"] for a in doc["attributions"])
    assert total == pytest.approx(margin, abs=1e-4)
    assert {a["feature"] for a in doc["attributions"]} == set(lw.FEATURES)
    assert abs(doc["completeness_gap"]) < 1e-4


@pytest.mark.parametrize("args, says", [
    (["predictions", "show", "nope"], "no logged prediction has request id 'nope'"),
    (["predictions", "explain", "first", "--row", "9"],
     "--row 9 is not a row of this request; it has rows [0, 1, 2, 3]"),
])
def test_bad_input_exits_2_naming_what_was_wrong(env, args, says):
    # `appliance.cli.main.run` prints the error's one line and exits with `exit_code_for`.
    res = CliRunner().invoke(app, [*args, "--json"])
    assert isinstance(res.exception, InvalidInput) and exit_code_for(res.exception) == 2
    assert says in str(res.exception) and "\n" not in str(res.exception)
    assert res.stdout == ""
