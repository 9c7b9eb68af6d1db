"""`appliance monitor --once` (appliance/cli/monitor.py), one round and no Ray: on a store
with nothing deployed, and on `loop_world`'s deployment with logged traffic (a window closes
and shows in the table); the `Round` document and `--json=FIELDS`; bad options refused before
anything runs. The round runs as a viewer, who may watch but not retrain, so no round here
ever needs Ray (the retrain loop is tests/pipelines' and tests/e2e's)."""

from __future__ import annotations

import json
import shutil

import loop_world as lw
import pytest
from cli_home import invoke, make_home, refusal, use_home
from pydantic import TypeAdapter

from appliance.governance.users import create_user, issue_token
from appliance.pipelines.daemon import Round
from appliance.store import dispose_all, session_scope


@pytest.fixture(scope="module")
def empty(tmp_path_factory, _sqlite_template):
    """A home with its people and nothing deployed."""
    return make_home(tmp_path_factory.mktemp("monitor-cli"), _sqlite_template)


@pytest.fixture(scope="module")
def served(tmp_path_factory, _sqlite_template):
    """`loop_world`'s deployment "scorer" with two requests of three rows logged, and the token
    of a viewer."""
    home = tmp_path_factory.mktemp("monitor-cli-served")
    shutil.copyfile(_sqlite_template, home / "store.db")
    w = lw.make_world(home)
    w.serve("req", requests=2, rows_per_request=3, seed=7)
    with session_scope(w.cfg.db_url) as s:
        create_user(s, "val", "viewer", actor="admin")
        token = issue_token(s, "val", "app", actor="admin")
    dispose_all()
    return w, token


def _round(res) -> Round:
    assert res.exit_code == 0, (res.output, res.exception)
    return TypeAdapter(Round).validate_json(res.stdout)


def test_a_round_with_nothing_deployed(empty, monkeypatch):
    cfg, tokens = empty
    use_home(monkeypatch, cfg, token=tokens["val"])
    res = invoke(["monitor", "--once", "--json"])
    assert res.exit_code == 0 and res.stderr == "", (res.output, res.exception)
    assert json.loads(res.stdout) == {"passes": [], "steps": []}
    assert _round(res) == Round(passes=[], steps=[])
    # Nothing happened, so the table has no row and is not printed.
    res = invoke(["monitor", "--once"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")
    # A deployment the store never recorded is a mistake, not a quiet round.
    message = refusal(invoke(["monitor", "--once", "--deployment", "scorer"]))
    assert message == "no deployment named 'scorer'; deployments: none yet"


def test_a_round_closes_the_window_of_the_logged_traffic(served, monkeypatch):
    w, token = served
    use_home(monkeypatch, w.cfg, token=token)
    table = invoke(["monitor", "--once", "--deployment", "scorer"])
    assert table.exit_code == 0, (table.output, table.exception)
    header, row = table.stdout.strip().splitlines()
    assert header.split() == ["DEPLOYMENT", "WINDOW", "EVENT", "ROWS", "DRIFT", "DRIFTED_SHARE",
                              "EST_ACCURACY", "ACCURACY", "ALERTS"]
    # Six rows are too few for drift statistics; the estimate needs no label.
    cells = row.split()
    assert cells[:5] == ["scorer", "1", "closed", "6", "insufficient"]
    assert cells[5] == "<none>" and 0 < float(cells[6]) <= 1 and cells[7:] == ["<none>", "0"]
    # The next round has nothing new: an empty pass for the deployment, no retrain step.
    again = _round(invoke(["monitor", "--once", "--json"]))
    (quiet,) = again.passes
    assert (quiet.deployment, quiet.model, quiet.closed, quiet.error) == (
        "scorer", "scorer", [], None)
    assert again.steps == []
    res = invoke(["monitor", "--once", "--json=passes"])
    assert list(json.loads(res.stdout)) == ["passes"]


@pytest.mark.parametrize(("args", "says"), [
    (["--interval", "-5"], "--interval must be positive, got -5.0"),
    (["--interval", "nan"], "--interval must be positive, got nan"),
    (["--deployment", "../x"], "deployment name '../x' is not valid"),
    (["--once", "--json=rounds"], "--json: unknown field 'rounds'; available fields: passes, "
                                  "steps"),
])
def test_bad_options_are_refused_before_anything_runs(empty, monkeypatch, args, says):
    cfg, _ = empty
    # No token at all: the options are refused before the caller is even looked for.
    use_home(monkeypatch, cfg)
    assert says in refusal(invoke(["monitor", *args]))


def test_a_value_that_is_no_number_is_a_usage_error(empty, monkeypatch):
    use_home(monkeypatch, empty[0])
    res = invoke(["monitor", "--interval", "often"])
    assert res.exit_code == 2 and "Invalid value for '--interval'" in res.output
