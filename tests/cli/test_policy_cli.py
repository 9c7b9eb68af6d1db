"""`appliance policy show|set` (appliance/cli/policy.py): a model's effective policy with
where each value comes from (default, the config's [policy] table, the model's own keys), the
KEY=VALUE pairs an operator sets and `--reset`, and the refusals that name the bad key."""

from __future__ import annotations

import pytest
from governed_home import Home, document, refused, table

from appliance.cli import policy as cli
from appliance.errors import ConflictError, InvalidInput, NotFound
from appliance.monitor.policy import KEYS
from appliance.registry import models


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Models "credit" (risk tier medium) and "toy" (low); the config sets window_rows."""
    home = Home(tmp_path_factory.mktemp("policy-cli"), _sqlite_template,
                config="[policy]\nwindow_rows = 500\n")
    with home.session() as s:
        models.ensure_model(s, "credit", owner="ops", team="credit")
        models.ensure_model(s, "toy", owner="ops", team="credit", risk_tier="low")
    return home


def _values(res) -> dict[str, list[str]]:
    """`policy show|set`'s table: key -> [value, source]."""
    rows = table(res)
    assert rows[0] == ["KEY", "VALUE", "SOURCE"]
    return {r[0]: r[1:] for r in rows[1:]}


def test_show_tells_each_value_and_its_source(home):
    shown = _values(home.invoke("policy", "show", "credit", who="val"))
    assert list(shown) == list(KEYS)
    assert shown["window_rows"] == ["500", "config"]
    assert shown["min_labelled_rows"] == ["2000", "default"]
    assert shown["triggers"] == ["drift,accuracy", "default"]
    assert shown["max_rows"] == ["<none>", "default"]
    doc = document(home.invoke("policy", "show", "credit", "--json"), cli.show)
    assert doc["model"] == "credit" and doc["updated_by"] is None
    assert doc["policy"]["window_rows"] == 500 and doc["sources"]["window_rows"] == "config"
    assert doc["policy"]["triggers"] == ["drift", "accuracy"]
    assert set(doc["policy"]) == set(doc["sources"]) == set(KEYS)


def test_set_parses_each_value_and_reset_returns_a_key_to_its_default(home):
    res = home.invoke("policy", "set", "credit", "min_labelled_rows=4000", "max_rows=none",
                      "triggers=drift,schedule", "schedule_seconds=86400", "canary_share=0.25",
                      "retrain=false", who="ops")
    assert res.stderr == "policy of credit updated\n"
    shown = _values(res)
    assert shown["min_labelled_rows"] == ["4000", "model"]
    assert shown["triggers"] == ["drift,schedule", "model"]
    assert shown["canary_share"] == ["0.25", "model"] and shown["retrain"] == ["False", "model"]
    assert shown["max_rows"] == ["<none>", "model"]
    doc = document(home.invoke("policy", "set", "credit", "window_rows=800",
                               "--reset", "min_labelled_rows", "--reset", "retrain", "--json",
                               who="ops"), cli.set_)
    assert doc["updated_by"] == "ops" and doc["updated_at"] is not None
    assert (doc["policy"]["window_rows"], doc["sources"]["window_rows"]) == (800, "model")
    assert (doc["policy"]["min_labelled_rows"], doc["sources"]["min_labelled_rows"]) == (
        2000, "default")
    assert (doc["policy"]["retrain"], doc["sources"]["retrain"]) == (True, "default")
    assert doc["policy"]["schedule_seconds"] == 86400
    only = document(home.invoke("policy", "show", "credit", "--json"), cli.show)
    assert only["policy"] == doc["policy"]
    res = home.invoke("policy", "show", "credit", "--json=sources,model")
    assert res.exit_code == 0 and res.stdout.splitlines()[1] == '  "sources": {'


def test_auto_promote_needs_a_low_risk_model(home):
    doc = document(home.invoke("policy", "set", "toy", "auto_promote=true", "--json",
                               who="ops"), cli.set_)
    assert doc["policy"]["auto_promote"] is True
    refused(home.invoke("policy", "set", "credit", "auto_promote=true", who="ops"),
            ConflictError, "model 'credit' has risk tier 'medium'; auto_promote needs 'low'")


@pytest.mark.parametrize(("pairs", "needle"), [
    (["bogus=1"], "unknown policy key 'bogus'"),
    (["window_rows=-5"], "'window_rows' must be an integer"),
    (["canary_mode=rainbow"], "'canary_mode' must be one of"),
    (["triggers=drift,astrology"], "unknown retrain trigger"),
    (["nonsense"], "expected KEY=VALUE, got 'nonsense'; keys: window_rows, window_seconds"),
    (["=5"], "expected KEY=VALUE, got '=5'"),
    (["--reset", "bogus"], "unknown policy key(s) ['bogus']; known keys: window_rows"),
    ([], "nothing to change: give at least one policy key"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_set_names_the_bad_key(home, pairs, needle):
    refused(home.invoke("policy", "set", "credit", *pairs, who="ops"), InvalidInput, needle)


@pytest.mark.parametrize("args", [["show", "ghost"], ["set", "ghost", "window_rows=10"]],
                         ids=" ".join)
def test_an_unknown_model_is_refused(home, args):
    refused(home.invoke("policy", *args), NotFound, "no model named 'ghost'")
    refused(home.invoke("policy", args[0], "../x", *args[2:]), InvalidInput,
            "model name '../x'")
