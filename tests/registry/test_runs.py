"""Run records on both backends (`appliance.registry.runs`): the runtime and the rerun link
round-trip, listings are newest first, and compare puts exactly the differing keys side by
side. The training behind a rerun runs in tests/pipelines/test_training_rerun.py, on a real Ray."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.errors import InvalidInput, NotFound
from appliance.registry import datasets, models, provenance, runs
from appliance.store import session_scope
from appliance.store.models import AuditEvent, Run


def _runs(db_url: str, tmp_path) -> tuple[str, str]:
    runtime = provenance.runtime().model_dump(mode="json")
    with session_scope(db_url) as s:
        ds = datasets.add_table(s, ArtifactStore(tmp_path / "art"),
                                pa.table({"x": [1.0, 2.0], "y": [0, 1]}), "loans", actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="t")
        first = models.start_run(s, model="credit", dataset=ds,
                                 spec={"dataset": "loans:1", "seed": 1, "params": {"lr": 1}},
                                 params={"lr": 1, "hidden": 8}, seed=1, actor="ops",
                                 runtime=runtime)
        models.finish_run(s, first, metrics={"accuracy": 0.9, "auc": 0.8}, device="cpu")
        again = models.start_run(s, model="credit", dataset=ds,
                                 spec={"dataset": "loans:1", "seed": 1, "params": {"lr": 1.0}},
                                 params={"lr": 1.0, "hidden": 8}, seed=1, actor="ops",
                                 runtime=runtime)
        runs.mark_rerun(s, again, first, actor="ops")
        models.finish_run(s, again, metrics={"accuracy": 0.9, "auc": 0.7}, device="cpu")
        return first.id, again.id


def test_records_round_trip_and_compare_names_what_differs(db_url, tmp_path):
    first, again = _runs(db_url, tmp_path)
    with session_scope(db_url) as s:
        listed = runs.list_runs(s)
        shown = runs.show(s, again)
        differing = runs.compare(s, first, again)
        every = runs.compare(s, first, again, all_keys=True)
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "run.rerun")).one()
    assert [r.id for r in listed] == [again, first]
    assert shown.rerun_of == first and shown.dataset.version == 1 and shown.version is None
    assert shown.environment == runs.RunEnvironmentPublic(
        **provenance.runtime().model_dump(), code_version=provenance.code_version(),
        packages=provenance.environment_hash())
    # 1 and 1.0 are one value; the rerun link and the auc are what differ.
    assert [(f.section, f.key, f.a, f.b) for f in differing.fields] == [
        ("run", "rerun_of", None, first), ("metrics", "auc", 0.8, 0.7)]
    assert differing.differing == every.differing == 2
    assert len(every.fields) > 10 and sum(not f.same for f in every.fields) == 2
    assert (event.object_id, event.details["rerun_of"]) == (again, first)


def test_unknown_or_malformed_ids_and_a_dangling_link_are_refused(db_url, tmp_path):
    first, _ = _runs(db_url, tmp_path)
    with session_scope(db_url) as s:
        with pytest.raises(NotFound, match="no run 'feedc0de'"):
            runs.show(s, "feedc0de")
        with pytest.raises(InvalidInput, match="must be letters and digits"):
            runs.compare(s, first, "../x")
        with pytest.raises(NotFound, match="no model named 'ghost'"):
            runs.list_runs(s, model="ghost")
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        row = s.get(Run, first)
        row.rerun_of = "nosuchrun"
        s.add(row)
        s.flush()
