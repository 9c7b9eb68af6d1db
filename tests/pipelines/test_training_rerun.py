"""Reproducibility on a real Ray: a run's record trains the same model again.

Train, add a newer version of the dataset, then `appliance runs rerun` (in process, on the
session's Ray): the rerun trains on the pinned version with the same spec and seed and gets
exactly the same metrics; `runs compare` finds nothing but the lineage link between them, and
finds the seed when it differs.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
from sqlmodel import select
from typer.testing import CliRunner

from appliance.artifacts import ArtifactStore
from appliance.cli.main import app
from appliance.config import load_config
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import create_user, get_user, issue_token
from appliance.pipelines import training
from appliance.pipelines.spec import TrainSpec
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import AuditEvent, Run


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("runs")
    cfg = load_config({"APPLIANCE_HOME": str(home)})
    migrate(cfg.db_url)
    with audit.configured(cfg), session_scope(cfg.db_url) as s:
        create_user(s, "admin", "admin", actor="admin")
        create_user(s, "ops", "operator", actor="admin")
        create_user(s, "val", "viewer", actor="admin")
        tokens = {name: issue_token(s, name, "t", actor="admin") for name in ("ops", "val")}
        datasets.add_table(s, ArtifactStore(cfg.artifacts), generate(600, seed=1), "loans",
                           actor="ops")
    yield home, cfg, tokens
    dispose_all()


@pytest.fixture
def cli(home, monkeypatch):
    path, cfg, tokens = home
    monkeypatch.setenv("APPLIANCE_HOME", str(path))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_TOKEN", tokens["ops"])

    def run(*args: str) -> dict:
        res = CliRunner().invoke(app, [*args, "--json"])
        assert res.exit_code == 0, (res.output, res.exception)
        return json.loads(res.stdout)

    return run


def _spec(**over) -> TrainSpec:
    spec = TrainSpec(model="credit", dataset="loans", label=LABEL, categorical=CATEGORICAL,
                     seed=5, params={"epochs": 2, "hidden": 8, "batch_size": 64})
    return dataclasses.replace(spec, **over)


def _sides(doc: dict) -> list[tuple]:
    return [(f["section"], f["key"], f["a"], f["b"]) for f in doc["fields"]]


def test_a_rerun_of_the_record_gets_the_same_metrics(home, cli, ray_session):
    _, cfg, _ = home
    with audit.configured(cfg):
        with session_scope(cfg.db_url) as s:
            ops = get_user(s, "ops")
        first = training.train(cfg, ops, _spec())
        # A newer version arrives: the record pins version 1, so the rerun must not see it.
        with session_scope(cfg.db_url) as s:
            assert datasets.add_table(s, ArtifactStore(cfg.artifacts), generate(900, seed=2),
                                      "loans", actor="ops").version == 2
        again = cli("runs", "rerun", first.run_id)
        other = training.train(cfg, ops, _spec(dataset="loans:1", seed=6))

    recorded = cli("runs", "show", first.run_id)
    assert recorded["dataset"]["name"] == "loans" and recorded["dataset"]["version"] == 1
    assert recorded["spec"]["dataset"] == "loans:1" and recorded["seed"] == 5
    env = recorded["environment"]
    assert env["code_version"] and env["packages"].startswith("sha256:")
    assert env["python"].startswith("CPython ") and env["torch"] == str(torch.__version__)
    assert env["cuda"] == torch.version.cuda
    assert env["hardware"]["cores"] == os.cpu_count() and env["hardware"]["memory_bytes"] > 0
    if not torch.cuda.is_available():
        # No NVML on a CPU host: recorded as unknown, not an error.
        assert env["gpu_driver"] is None and env["hardware"]["gpus"] == []

    assert again["rerun_of"] == first.run_id and again["id"] != first.run_id
    assert again["status"] == "finished" and again["version"] == first.version.version + 1
    assert again["dataset"] == recorded["dataset"] and again["seed"] == 5
    assert again["params"] == recorded["params"]
    assert again["metrics"] == recorded["metrics"] == first.metrics
    assert {"accuracy", "auc"} <= set(again["metrics"])

    # Same spec, data, seed and machine: the lineage link is the only difference.
    same = cli("runs", "compare", first.run_id, again["id"])
    assert _sides(same) == [("run", "rerun_of", None, first.run_id)], same
    assert same["differing"] == 1
    every = cli("runs", "compare", first.run_id, again["id"], "--all")
    assert ("metrics", "accuracy", first.metrics["accuracy"],
            first.metrics["accuracy"]) in _sides(every)

    seeds = cli("runs", "compare", first.run_id, other.run_id)
    sides = _sides(seeds)
    assert ("run", "seed", 5, 6) in sides and ("spec", "seed", 5, 6) in sides
    # Another seed gives other metrics, so the equality above is not one that always holds.
    changed = {k for k in first.metrics if first.metrics[k] != other.metrics[k]}
    assert changed, (first.metrics, other.metrics)
    assert {k for s, k, _, _ in sides if s == "metrics"} == changed

    listed = cli("runs", "list", "--model", "credit")
    assert [d["id"] for d in listed] == [other.run_id, again["id"], first.run_id]
    with session_scope(cfg.db_url) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "run.rerun")).one()
        assert (event.actor, event.object_id) == ("ops", again["id"])
        assert event.details["rerun_of"] == first.run_id


def test_a_rerun_needs_operate_and_a_known_run(home):
    _, cfg, _ = home
    with session_scope(cfg.db_url) as s:
        viewer, ops = get_user(s, "val"), get_user(s, "ops")
        before = len(s.exec(select(Run)).all())
        some = s.exec(select(Run.id)).first() or "0123456789abcdef"
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        training.rerun(cfg, viewer, some)
    with pytest.raises(NotFound, match="no run 'feedc0de'"):
        training.rerun(cfg, ops, "feedc0de")
    with session_scope(cfg.db_url) as s:
        assert len(s.exec(select(Run)).all()) == before
        # A run recorded without a trainable spec (an import, an older format).
        ds = datasets.resolve(s, "loans:1")
        bare = models.start_run(s, model="credit", dataset=ds, spec={"model": "credit"},
                                params={}, seed=0, actor="ops").id
    with pytest.raises(InvalidInput, match=r"missing \['dataset', 'label'\]"):
        training.rerun(cfg, ops, bare)
