"""Shared by the governance and registry tests: the people of a small bank, and a model version
registered from a tiny dataset (`appliance.registry`), with a run behind it, and models
under periodic review."""

from __future__ import annotations

import threading

import pyarrow as pa

from appliance.artifacts import ArtifactStore
from appliance.governance import audit
from appliance.governance.users import create_user
from appliance.registry import datasets, models
from appliance.store import session_scope


def people(url):
    """An admin, two operators of team credit, an approver and a viewer."""
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root", team="credit")
        create_user(s, "ops2", "operator", actor="root", team="credit")
        create_user(s, "risk", "approver", actor="root")
        create_user(s, "viewer", "viewer", actor="root")


def registered_version(url, tmp_path, name="credit", rows=10):
    """Version 1 of model `name` (default "credit"), trained by "ops" on `rows` rows (10)."""
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(url) as s:
        table = pa.table({"x": list(range(rows)), "y": [0, 1] * (rows // 2)})
        ds = datasets.add_table(s, store, table, "loans", actor="ops")
        models.ensure_model(s, name, owner="ops", team="credit")
        run = models.start_run(s, model=name, dataset=ds, spec={"k": 1}, params={"lr": 0.1},
                               seed=3, actor="ops")
        models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
        return models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                       metrics={"accuracy": 0.9}, features=["x"],
                                       categorical=[], label="y", actor="ops")


def reviewed_models(url):
    """An admin, an operator and an approver; model "credit" of high risk and "toy" of the
    default tier, both owned by "ops"."""
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root")
        create_user(s, "risk", "approver", actor="root")
        models.ensure_model(s, "credit", owner="ops", team="credit", risk_tier="high")
        models.ensure_model(s, "toy", owner="ops", team="credit")


def audit_concurrently(url, writers: int, events: int) -> list[BaseException]:
    """`writers` threads each recording `events` audit events, one transaction per event;
    what any of them raised (empty when all went through)."""
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(events):
                with session_scope(url) as s:
                    audit.record(s, name, "thing.done", "thing", i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
