"""The data contract at ingest (`appliance.registry.contract`, `datasets.add_table`): each kind
of violation on a crafted second version, the baseline a version is checked against, the
override with who and why, and training refused until then; on SQLite and PostgreSQL, with a
real artifact store. The retraining set the monitor builds is checked the same way."""

from __future__ import annotations

import datetime as dt

import loop_world as lw
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import CheckFailed, ConflictError, InvalidInput, PermissionDenied
from appliance.governance.users import create_user, get_user
from appliance.monitor import retrain, service
from appliance.monitor.feedback import write_feedback
from appliance.monitor.policy import DEFAULTS
from appliance.pipelines import training
from appliance.pipelines.spec import TrainSpec
from appliance.registry import contract, datasets
from appliance.store import dispose_all, session_scope
from appliance.store.models import AuditEvent, Dataset, RetrainRequest, Run

N = 1000


def base(n: int = N) -> dict[str, pa.Array]:
    """Deterministic columns: x spans [0, 100], k an integer code, c four equal categories,
    label alternating 0/1."""
    return {
        "x": pa.array(np.linspace(0.0, 100.0, n)),
        "k": pa.array(np.arange(n, dtype=np.int64) % 7),
        "c": pa.array(np.array(["a", "b", "c", "d"])[np.arange(n) % 4]),
        "label": pa.array(np.arange(n, dtype=np.int64) % 2),
    }


def _with(cols: dict, **changes) -> pa.Table:
    cols = {**cols, **changes}
    return pa.table({k: v for k, v in cols.items() if v is not None})


def _x_missing(share: float, value: float | None) -> pa.Array:
    x = np.linspace(0.0, 100.0, N).astype(object)
    x[: int(N * share)] = value
    return pa.array(x.tolist(), pa.float64())


# A second version that breaks exactly one rule, and the rule it breaks.
BROKEN = {
    "type": lambda: _with(base(), k=pa.array(np.arange(N, dtype=np.float64) % 7)),
    "column_missing": lambda: _with(base(), k=None),
    "column_added": lambda: _with(base(), z=pa.array(np.ones(N))),
    "missing_share": lambda: _with(base(), x=_x_missing(0.1, None)),
    "missing_share-nan": lambda: _with(base(), x=_x_missing(0.1, float("nan"))),
    "range": lambda: _with(base(), x=pa.array(np.linspace(0.0, 1000.0, N))),
    "category_new": lambda: _with(base(), c=pc.if_else(
        pc.equal(pa.array(np.arange(N) % 40), 0), "e", base()["c"])),
    "category_vanished": lambda: _with(base(), c=pa.array(
        np.array(["a", "b", "c"])[np.arange(N) % 3])),
    "row_count": lambda: _with(base(150)),
    "label_balance": lambda: _with(base(), label=pa.array(
        (np.arange(N) % 5 != 0).astype(np.int64))),
    "label_column": None,  # the same rows, with another label column named
}


def _two(url: str, tmp_path, second: pa.Table, *, name: str = "d", label: str | None = None,
         first: pa.Table | None = None, first_label: str | None = None) -> Dataset:
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(url) as s:
        v1 = datasets.add_table(s, store, first if first is not None else _with(base()), name,
                                actor="ops", label=first_label)
        assert v1.contract_status == "baseline"
        return datasets.add_table(s, store, second, name, actor="ops", label=label)


def _checks(ds: Dataset) -> list[str]:
    return [v.check for v in datasets.report(ds).violations]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_kind_of_violation_is_found_on_a_crafted_second_version(db_url, tmp_path, case):
    if case == "label_column":
        ds = _two(db_url, tmp_path, _with(base(), x=pa.array(np.linspace(0.0, 99.0, N))),
                  label="k")
    else:
        ds = _two(db_url, tmp_path, BROKEN[case]())
    assert ds.contract_status == "failed"
    assert _checks(ds) == [case.split("-")[0]], datasets.report(ds).summary()
    report = datasets.report(ds)
    assert report.dataset == "d:2" and report.baseline == "d:1" and not report.passed
    with pytest.raises(CheckFailed, match=r"dataset d:2 failed its data contract against d:1"):
        datasets.check_trainable(ds)


@pytest.mark.parametrize("case", ["mean", "std"])
def test_a_regression_labels_mean_or_spread_moving_is_a_violation(db_url, tmp_path, case):
    first = _with(base(), label=None, target=pa.array(np.linspace(0.0, 10.0, N)))
    moved = np.linspace(2.0, 12.0, N) if case == "mean" else np.linspace(4.0, 6.0, N)
    # No --label the second time: the label column is the baseline's.
    ds = _two(db_url, tmp_path, _with(base(), label=None, target=pa.array(moved)),
              first=first, first_label="target")
    assert ds.label == "target"
    assert _checks(ds) == ["label_shift"]


def test_a_clean_second_version_passes_and_trains(db_url, tmp_path):
    clean = _with(base(900), x=pa.array(np.linspace(1.0, 99.0, 900)))
    ds = _two(db_url, tmp_path, clean)
    assert ds.contract_status == "passed" and ds.label == "label"
    assert datasets.report(ds).violations == [] and datasets.report(ds).passed
    datasets.check_trainable(ds)


def test_a_range_inside_the_margin_and_a_rare_category_going_are_tolerated(db_url, tmp_path):
    c = np.array(["a", "b", "c", "d"])[np.arange(N) % 4]
    c[:5] = "rare"  # 0.5% of the baseline's rows
    first = _with(base(), c=pa.array(c))
    second = _with(base(), x=pa.array(np.linspace(-40.0, 140.0, N)))
    assert _two(db_url, tmp_path, second, first=first).contract_status == "passed"


def test_the_check_reads_only_the_stored_profile_not_the_earlier_rows(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(db_url) as s:
        v1 = datasets.add_table(s, store, _with(base()), "d", actor="ops")
        assert v1.profile["columns"]["x"]["max"] == 100.0
        assert v1.profile["label"] == {"column": "label", "kind": "classes",
                                       "shares": {"0": 0.5, "1": 0.5}}
    store.path(v1.digest).unlink()  # version 1's rows are gone; its profile is enough
    with session_scope(db_url) as s:
        v2 = datasets.add_table(s, store, BROKEN["range"](), "d", actor="ops")
    assert _checks(v2) == ["range"]


def test_a_failed_version_is_never_the_baseline_and_an_accepted_one_is(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    wide = pa.array(np.linspace(0.0, 1000.0, N))
    with session_scope(db_url) as s:
        create_user(s, "ops", "operator", actor="ops")
        datasets.add_table(s, store, _with(base()), "d", actor="ops")
        v2 = datasets.add_table(s, store, _with(base(), x=wide), "d", actor="ops")
        # The same shape again is still checked against version 1, the last good one.
        v3 = datasets.add_table(s, store, _with(base(), x=wide, k=pa.array(
            np.arange(N, dtype=np.int64) % 5)), "d", actor="ops")
        assert (v2.contract_status, v3.contract_status) == ("failed", "failed")
        assert datasets.report(v3).baseline == "d:1"
        datasets.accept_contract(s, get_user(s, "ops"), "d:3", "the sensor now reads to 1000")
        v4 = datasets.add_table(s, store, _with(base(), x=pa.array(np.linspace(0, 990.0, N)),
                                                k=pa.array(np.arange(N) % 5)), "d", actor="ops")
    assert v4.contract_status == "passed" and datasets.report(v4).baseline == "d:3"


def test_identical_content_is_the_same_version_and_is_not_checked_again(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(db_url) as s:
        datasets.add_table(s, store, _with(base()), "d", actor="ops")
        v2 = datasets.add_table(s, store, BROKEN["range"](), "d", actor="ops")
        again = datasets.add_table(s, store, BROKEN["range"](), "d", actor="ops")
        assert (again.id, again.version) == (v2.id, 2)


def test_a_label_the_data_lacks_is_refused(db_url, tmp_path):
    with session_scope(db_url) as s, pytest.raises(InvalidInput, match="'target' is not in"):
        datasets.add_table(s, ArtifactStore(tmp_path / "a"), _with(base()), "d", actor="ops",
                           label="target")


def test_accepting_needs_operate_a_reason_a_named_version_and_a_failed_contract(
        db_url, tmp_path):
    _two(db_url, tmp_path, BROKEN["range"]())
    with session_scope(db_url) as s:
        for name, role in (("ops", "operator"), ("risk", "approver"), ("val", "viewer")):
            create_user(s, name, role, actor="ops")
    with session_scope(db_url) as s:
        for who in ("risk", "val"):
            with pytest.raises(PermissionDenied, match="'operate' needs one of"):
                datasets.accept_contract(s, get_user(s, who), "d:2", "fine")
        ops = get_user(s, "ops")
        with pytest.raises(InvalidInput, match="--reason must say why"):
            datasets.accept_contract(s, ops, "d:2", "  ")
        with pytest.raises(InvalidInput, match="as NAME:VERSION"):
            datasets.accept_contract(s, ops, "d", "fine")
        with pytest.raises(ConflictError, match="did not fail its data contract"):
            datasets.accept_contract(s, ops, "d:1", "fine")
        assert not s.exec(select(AuditEvent).where(
            AuditEvent.action == "dataset.contract_accepted")).all()


def test_training_is_refused_on_a_failed_version_until_it_is_accepted(db_url, tmp_path):
    cfg = Config(home=tmp_path, db_url=db_url, artifacts=tmp_path / "artifacts")
    _two(db_url, tmp_path, BROKEN["range"]())
    with session_scope(db_url) as s:
        ops = create_user(s, "ops", "operator", actor="ops")
    spec = TrainSpec(model="credit", dataset="d:2", label="label", categorical=["c"])
    with pytest.raises(CheckFailed) as refused:
        training.start(cfg, ops, spec)
    message = str(refused.value)
    assert "dataset d:2 failed its data contract against d:1 (1 violation(s))" in message
    assert "column 'x': values span [0, 1000]" in message
    assert "appliance data accept d:2 --reason" in message and "\n" not in message
    with session_scope(db_url) as s:
        assert s.exec(select(Run)).all() == []  # refused before a run is recorded
        datasets.accept_contract(s, get_user(s, "ops"), "d:2", "  the sensor now\nreads to 1000 ",
                                 now=dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc))
    run = training.start(cfg, ops, spec)
    assert run.status == "running"
    with session_scope(db_url) as s:
        ds = datasets.resolve(s, "d:2")
        assert (ds.contract_status, ds.contract_accepted_by, ds.contract_accepted_reason) == (
            "accepted", "ops", "the sensor now reads to 1000")
        assert ds.contract_accepted_at == dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
        (event,) = s.exec(select(AuditEvent).where(
            AuditEvent.action == "dataset.contract_accepted")).all()
        assert (event.actor, event.object_id) == ("ops", "d:2")
        assert event.details == {"reason": "the sensor now reads to 1000", "baseline": "d:1",
                                 "violations": ["range"]}
        with pytest.raises(ConflictError, match="accepted already by ops"):
            datasets.accept_contract(s, get_user(s, "ops"), "d:2", "again")


def test_profile_counts_nan_and_inf_as_missing_and_lists_no_id_like_column():
    table = pa.table({"x": [1.0, float("nan"), float("inf"), None],
                      "id": pa.array([f"r{i}" for i in range(4)]),
                      "d": pa.array(["u", "v", "u", None]).dictionary_encode()})
    doc = contract.profile(table, tolerances=contract.Tolerances(max_categories=3))
    assert doc["columns"]["x"] == {"type": "double", "kind": "numeric", "min": 1.0, "max": 1.0,
                                   "mean": 1.0, "std": 0.0, "missing": 0.75}
    assert doc["columns"]["id"]["categories"] is None and doc["columns"]["id"]["distinct"] == 4
    assert doc["columns"]["d"]["type"] == "string"
    assert doc["columns"]["d"]["categories"] == {"u": 2, "v": 1}


# The retraining set the monitor builds goes through the same check (no Ray).


def _serve_and_label(world: lw.World, first: int, count: int, at: dt.datetime, **drift) -> None:
    rows = {}
    for i in range(first, first + count):
        name = f"r{i:02d}"
        rows[name] = lw.log_rows(world.cfg.artifacts, world.deployment, name, 100,
                                 at=at + dt.timedelta(seconds=i), seed=100 + i, **drift)
    now = at + dt.timedelta(minutes=5)
    service.run_once(world.cfg, now=now, deliver=False)
    for name, got in rows.items():
        write_feedback(world.cfg.artifacts, world.deployment, name, np.arange(100), got["y"])
    service.run_once(world.cfg, now=now, deliver=False)


def _retraining_set(world: lw.World, since_window: int) -> Dataset:
    with session_scope(world.cfg.db_url) as s:
        request = RetrainRequest(model_name=world.model, deployment=world.deployment,
                                 trigger="accuracy", since_window=since_window,
                                 created_by="monitor", champion_version_id=world.version.id)
        s.add(request)
        s.flush()
        return retrain.build_dataset(s, ArtifactStore(world.cfg.artifacts),
                                     world.cfg.artifacts, request, DEFAULTS)


def test_the_monitors_retraining_sets_are_checked_and_blocked_the_same_way(db_url, tmp_path):
    world = lw.make_world(tmp_path, db_url=db_url,
                          policy={"window_rows": 400, "window_seconds": None})
    try:
        _serve_and_label(world, 0, 8, lw.T0)
        first = _retraining_set(world, 1)
        assert (first.name, first.version, first.contract_status, first.label) == (
            "scorer-retrain", 1, "baseline", "y")
        # The inputs arrive in another unit: every value far beyond what was seen.
        _serve_and_label(world, 8, 4, lw.T0 + dt.timedelta(hours=1), shift=8.0)
        second = _retraining_set(world, 3)
        assert second.version == 2 and second.contract_status == "failed"
        assert {v.column for v in datasets.report(second).violations
                if v.check == "range"} == {"x1", "x2"}
        # The retrain loop trains the champion's spec on the set: refused, naming violations.
        spec = TrainSpec(model=world.model, dataset="scorer-retrain:2", label="y",
                         categorical=["c"], split="latest")
        with pytest.raises(CheckFailed, match=r"scorer-retrain:2 failed .* column 'x1'"):
            training.start(world.cfg, world.ops, spec)
    finally:
        dispose_all()
