"""`appliance.pipelines.training` on a real Ray and a real SQLite store: what a run records
about its split, and what its drift reference is fitted on."""

from __future__ import annotations

import numpy as np
import pytest
from loop_world import config

import kernels
from appliance.artifacts import ArtifactStore
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.governance.users import create_user
from appliance.monitor.drift import SCORE, to_columns
from appliance.pipelines import training
from appliance.pipelines.spec import parse_spec
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets
from appliance.registry.lineage import lineage
from appliance.store import dispose_all, migrate, session_scope
from cluster.bundle import ModelBundle

ROWS = 800


@pytest.fixture
def world(tmp_path, ray_session):
    cfg = config(tmp_path)
    migrate(cfg.db_url)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        datasets.add_table(session, ArtifactStore(cfg.artifacts), generate(ROWS, seed=3),
                           "credit-train", actor=ops.name)
    yield cfg, ops
    dispose_all()


def _spec(**over):
    doc = {"model": "credit", "dataset": "credit-train", "label": LABEL,
           "categorical": CATEGORICAL, "seed": 4, "holdout": 0.25,
           "params": {"epochs": 3, "hidden": 8}}
    doc.update(over)
    return parse_spec(doc)


def test_lineage_counts_every_row_once_and_the_reference_is_the_holdouts(world):
    cfg, ops = world
    spec = _spec()
    out = training.train(cfg, ops, spec)
    m = out.version.metrics
    # No split of the trainer's own: the training part trains, the holdout judges.
    assert (m["train_rows"], m["valid_rows"], m["holdout_rows"]) == (600, 0, 200)
    assert m["rows"] == 200
    with session_scope(cfg.db_url) as session:
        record = lineage(session, "credit:1")
    assert record["metrics"]["train_rows"] + record["metrics"]["valid_rows"] \
        + record["metrics"]["holdout_rows"] == record["dataset"]["rows"] == ROWS

    # The prediction reference holds the holdout's scores, exactly: not in-sample ones.
    store = ArtifactStore(cfg.artifacts)
    bundle = ModelBundle.from_bytes(store.get_bytes(out.version.digest))
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(out.version.profile_digest))
    _, holdout = holdout_split(generate(ROWS, seed=3), spec.seed, spec.holdout, spec.split)
    _, scores = bundle.predict(to_columns(holdout, bundle.feature_names, CATEGORICAL))
    assert profile.rows == 200
    np.testing.assert_allclose(profile.features[SCORE].sorted,
                               np.sort(scores.astype(np.float64)))


def test_early_stopping_records_its_validation_slice(world):
    cfg, ops = world
    spec = _spec(params={"epochs": 30, "hidden": 8, "early_stopping": 2,
                         "valid_fraction": 0.2, "lr": 0.5})
    m = training.train(cfg, ops, spec).version.metrics
    assert (m["train_rows"], m["valid_rows"], m["holdout_rows"]) == (480, 120, 200)
    assert m["epochs"] <= 30
