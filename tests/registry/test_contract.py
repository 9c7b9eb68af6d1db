"""The data contract at ingest (`appliance.registry.contract`, `datasets.add_table`): each kind
of violation on a crafted second version, the baseline a version is checked against, the
override with who and why, and training refused until then; on SQLite and PostgreSQL, with a
real artifact store. The retraining set the monitor builds is checked against the champion's
training data, where drift only warns and the rest blocks."""

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


# Severity per purpose: a person's upload blocks on everything; a retraining set only warns on
# drift (values beyond the range, new categories, the label's balance or mean moving).

RETRAINING_WARNS = {"range", "category_new", "label_balance", "label_shift"}


def _compare(second: pa.Table, purpose: contract.Purpose, *, label: str = "label",
             first: pa.Table | None = None, expected_rows: int | None = None):
    old = contract.profile(first if first is not None else _with(base()), label)
    return contract.compare(old, contract.profile(second, label), dataset="d:2",
                            baseline="d:1", purpose=purpose, expected_rows=expected_rows)


@pytest.mark.parametrize("case", sorted(set(BROKEN) - {"label_column"}))
def test_a_retraining_set_only_warns_on_drift_and_blocks_on_everything_else(case):
    second = BROKEN[case]()
    if case == "type":
        # A retraining set is typed as the champion takes it (numbers as float64), so only
        # a change of kind counts there: a number arriving as text.
        second = _with(base(), k=pa.array([str(v) for v in np.arange(N) % 7]))
    report = _compare(second, contract.Purpose.retraining)
    check = case.split("-")[0]
    assert [v.check for v in report.violations] == [check], report.summary()
    want = "warn" if check in RETRAINING_WARNS else "block"
    assert report.violations[0].severity == want
    assert report.passed == (want == "warn") and report.purpose == "retraining"
    assert len(report.warnings()) == (want == "warn")
    # The same finding in a person's upload blocks.
    assert _compare(BROKEN[case](), contract.Purpose.upload).blocking()[0].check == check


def test_a_retraining_sets_int_to_float_widening_is_no_type_change():
    widened = _with(base(), k=pa.array(np.arange(N, dtype=np.float64) % 7))
    assert _compare(widened, contract.Purpose.retraining).violations == []


@pytest.mark.parametrize("purpose", list(contract.Purpose))
def test_a_collapsed_label_blocks_for_every_purpose(purpose):
    # One class all but gone (2% of rows, was 50%): not drift to learn from, a broken feed.
    almost_one = pa.array((np.arange(N) % 50 != 0).astype(np.int64))
    report = _compare(_with(base(), label=almost_one), purpose)
    assert [(v.check, v.severity) for v in report.violations] == [("label_collapse", "block")]
    assert "fell below 20% of their share (0: 50.0% -> 2.0%" in report.summary()
    # A numeric label that stopped varying collapsed too.
    first = _with(base(), label=None, target=pa.array(np.linspace(0.0, 10.0, N)))
    flat = _with(base(), label=None, target=pa.array(np.full(N, 5.0)))
    report = _compare(flat, purpose, label="target", first=first)
    assert [v.check for v in report.blocking()] == ["label_collapse"]


def test_the_row_count_is_checked_against_the_rows_expected_when_they_are_given():
    report = _compare(_with(base()), contract.Purpose.retraining, expected_rows=100)
    assert [(v.check, v.severity, v.expected, v.found) for v in report.violations] == [
        ("row_count", "block", 100, N)]
    assert report.summary() == f"{N} rows, expected 100 (more than x5 apart)"
    # Far from the baseline's rows, but what the windows promised: fine.
    assert _compare(_with(base(150)), contract.Purpose.retraining,
                    expected_rows=160).violations == []


# The retraining set the monitor builds (no Ray): checked against the champion's training data
# with the retraining severities.


def _serve_and_label(world: lw.World, first: int, count: int, at: dt.datetime, *,
                     categories=None, **drift) -> None:
    """Serve `count` requests of 100 rows and label them; `categories(rows)` replaces c."""
    truth = []
    for i in range(first, first + count):
        rows = lw.draw(100, 100 + i, **drift)
        if categories is not None:
            rows["c"] = categories(i).astype(object)
        name = f"r{i:02d}"
        world.log(rows, name, at=at + dt.timedelta(seconds=i))
        truth.append((name, rows["y"]))
    now = at + dt.timedelta(minutes=5)
    service.run_once(world.cfg, now=now, deliver=False)
    world.label(truth)
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


def _new_category(i: int) -> np.ndarray:
    return np.where(np.arange(100) % 10 == 0, "c", np.where(np.arange(100) % 2, "a", "b"))


def test_a_drifted_retraining_set_passes_with_its_drift_recorded_as_warnings(db_url, tmp_path):
    world = lw.make_world(tmp_path, db_url=db_url,
                          policy={"window_rows": 400, "window_seconds": None})
    try:
        # The inputs moved far beyond what the champion learned, and a new category came.
        _serve_and_label(world, 0, 8, lw.T0, shift=8.0, categories=_new_category)
        ds = _retraining_set(world, 1)
        report = datasets.report(ds)
        assert (ds.name, ds.contract_status, ds.label) == ("scorer-retrain", "passed", "y")
        # Checked against what the champion was trained on, though the name is new.
        assert (report.baseline, report.purpose, report.passed) == (
            "scorer-train:1", "retraining", True)
        assert report.blocking() == []
        found = {(v.check, v.column) for v in report.warnings()}
        assert {("range", "x1"), ("range", "x2"), ("category_new", "c")} <= found
        datasets.check_trainable(ds)
        with session_scope(db_url) as s:
            event = s.exec(select(AuditEvent).where(AuditEvent.action == "dataset.added",
                                                    AuditEvent.object_id == "scorer-retrain:1")
                           ).one()
        assert event.details["violations"] == [] and "range" in event.details["warnings"]
        assert event.details["purpose"] == "retraining"
    finally:
        dispose_all()


def test_a_retraining_set_with_a_vanished_category_is_blocked_until_accepted(db_url, tmp_path):
    world = lw.make_world(tmp_path, db_url=db_url,
                          policy={"window_rows": 400, "window_seconds": None})
    try:
        # Category "a" (half the champion's rows) never arrives: a feed broke upstream.
        _serve_and_label(world, 0, 8, lw.T0, categories=lambda i: np.full(100, "b"))
        ds = _retraining_set(world, 1)
        assert ds.contract_status == "failed"
        assert [(v.check, v.column) for v in datasets.report(ds).blocking()] == [
            ("category_vanished", "c")]
        spec = TrainSpec(model=world.model, dataset="scorer-retrain:1", label="y",
                         categorical=["c"], split="latest")
        with pytest.raises(CheckFailed, match=r"scorer-retrain:1 failed .* against "
                                              r"scorer-train:1 .* categories \['a'\] vanished"):
            training.start(world.cfg, world.ops, spec)
        with session_scope(db_url) as s:
            datasets.accept_contract(s, get_user(s, "ops"), "scorer-retrain:1",
                                     "region A is paused this month")
            datasets.check_trainable(datasets.resolve(s, "scorer-retrain:1"))
    finally:
        dispose_all()
