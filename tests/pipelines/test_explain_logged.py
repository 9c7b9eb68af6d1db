"""Explaining one logged prediction (`appliance.pipelines.explain`): the row as logged, scored
again by the version that answered it, attributed by the method of its kind (TreeSHAP for
trees, summing to the margin), and a row or request that is not there refused by name."""

from __future__ import annotations

import shutil

import loop_world as lw
import pytest

from appliance.errors import InvalidInput, NotFound
from appliance.pipelines.explain import explain
from appliance.store import dispose_all, session_scope


@pytest.fixture(scope="module")
def tree(tmp_path_factory, _sqlite_template):
    home = tmp_path_factory.mktemp("explain")
    shutil.copyfile(_sqlite_template, home / "store.db")
    world = lw.tree_world(home, f"sqlite:///{home / 'store.db'}")
    yield world
    dispose_all()


def _explain(world, request_id, **kwargs):
    with session_scope(world.cfg.db_url) as s:
        return explain(world.cfg, s, request_id, **kwargs)


def test_tree_shap_attributions_sum_to_the_margin_of_the_logged_row(tree):
    world, bundle = tree
    doc = _explain(world, "first", row=2)
    assert (doc.request_id, doc.row, doc.model, doc.version) == ("first", 2, world.model, 1)
    assert (doc.kind, doc.method) == ("xgboost", "tree_shap")
    drawn = lw.draw(4, 11)
    margin = float(bundle.raw({f: drawn[f][2:3] for f in lw.FEATURES})[0, 0])
    assert doc.baseline_value + sum(a.attribution for a in doc.attributions) == pytest.approx(
        margin, abs=1e-4)
    # Largest share first; each attribution carries the value the row was logged with.
    shares = [abs(a.attribution) for a in doc.attributions]
    assert shares == sorted(shares, reverse=True)
    assert {a.feature: a.value for a in doc.attributions}["x1"] == pytest.approx(drawn["x1"][2])


def test_the_first_row_by_default_and_a_pending_request_too(tree):
    world, _ = tree
    assert _explain(world, "first").row == 0
    assert _explain(world, "second", deployment=world.deployment).row == 0


def test_a_missing_row_or_request_is_refused_by_name(tree):
    world, _ = tree
    with pytest.raises(InvalidInput, match=r"--row 9 is not a row of this request; it has "
                                           r"rows \[0, 1, 2, 3\]"):
        _explain(world, "first", row=9)
    with pytest.raises(NotFound, match="'nope'"):
        _explain(world, "nope")
