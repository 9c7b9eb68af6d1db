"""Every table round-trips on both backends; the database enforces unique and foreign keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from appliance.store import get_engine, session_scope, utcnow
from appliance.store.models import (
    Alert,
    AlertDelivery,
    Alias,
    ApiToken,
    Approval,
    ApprovalVote,
    AuditEvent,
    Dataset,
    Deployment,
    DriftReport,
    FeedbackBatch,
    Lease,
    ModelReview,
    ModelVersion,
    MonitorPolicy,
    PredictionWindow,
    RegisteredModel,
    RequestIndex,
    RetrainRequest,
    Run,
    TokenSet,
    User,
    WindowVersion,
)

# Not UTC and with microseconds: the store must hand back the same instant, in UTC.
WHEN = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
# Nested, unicode, floats, null and booleans: what params, metrics and gate documents contain.
DOC = {
    "lr": 0.001,
    "layers": [64, 32],
    "nested": {"ok": True, "none": None, "name": "crédit ✓"},
    "auc": 0.8125,
}


def _add(session: Session, row: SQLModel) -> SQLModel:
    session.add(row)
    # Flush one at a time so each row's generated key is known to the rows that point to it.
    session.flush()
    return row


def _add_parents(session: Session) -> list[SQLModel]:
    """User, token, dataset, model, run and version 1: the parents most other rows need."""
    user = _add(
        session, User(name="olga", role="operator", team="risk", email="o@x", created_at=WHEN)
    )
    token = _add(
        session,
        ApiToken(user_id=user.id, name="ci", token_hash="h" * 64, created_at=WHEN, revoked_at=WHEN,
                 scopes=["infer", "feedback"], expires_at=WHEN, issued_by="root"),
    )
    dataset = _add(
        session,
        Dataset(
            name="credit",
            version=1,
            digest="d" * 64,
            rows=1000,
            columns=[{"name": "income", "type": "float64"}, {"name": "city", "type": "string"}],
            source="synthetic",
            lineage={"windows": [1, 2], "feedback_batches": [3]},
            created_by="olga",
            created_at=WHEN,
        ),
    )
    model = _add(
        session,
        RegisteredModel(
            name="credit", owner="olga", team="risk", description="d",
            runbook_url="https://wiki/credit", risk_tier="low", created_at=WHEN,
        ),
    )
    run = _add(
        session,
        Run(
            id="run-1",
            model_name="credit",
            dataset_id=dataset.id,
            spec={"model": "credit"},
            params=DOC,
            seed=7,
            code_version="abc123",
            environment="python 3.11",
            status="finished",
            metrics={"accuracy": 0.91},
            device="cpu",
            error="x" * 5000,
            created_by="olga",
            started_at=WHEN,
            finished_at=WHEN + dt.timedelta(minutes=1),
        ),
    )
    version = _add(
        session,
        ModelVersion(
            model_name="credit",
            version=1,
            digest="m" * 64,
            profile_digest="p" * 64,
            run_id=run.id,
            metrics={"auc": 0.8125},
            features=["income", "city"],
            categorical=["city"],
            label="default",
            calibration={"method": "isotonic", "x": [0.1, 0.9], "y": [0.05, 0.95]},
            created_by="olga",
            created_at=WHEN,
        ),
    )
    return [user, token, dataset, model, run, version]


def _add_graph(session: Session) -> list[SQLModel]:
    """One row of every table, linked through their foreign keys, in insertion order."""
    rows = _add_parents(session)
    version = rows[-1]
    approval = _add(
        session,
        Approval(
            model_name="credit",
            version_id=version.id,
            target_alias="champion",
            status="approved",
            gate=DOC,
            incumbent_version_id=version.id,
            required_approvals=2,
            requested_by="olga",
            requested_at=WHEN,
            expires_at=WHEN,
            decided_by="ann",
            decided_at=WHEN,
            comment="fine",
        ),
    )
    window = _add(
        session,
        PredictionWindow(
            deployment="credit",
            index=0,
            path="w/0",
            sha256="e" * 64,
            rows=500,
            requests=50,
            versions=["1"],
            first_ts=WHEN,
            last_ts=WHEN,
            shadow_rows=7,
            labelled_rows=10,
            accuracy=0.5,
            closed_by="seconds",
            closed_at=WHEN,
            labels_updated_at=WHEN,
        ),
    )
    alert = _add(
        session,
        Alert(
            kind="drift",
            rule="drift",
            severity="critical",
            status="resolved",
            model_name="credit",
            deployment="credit",
            version=1,
            window_id=window.id,
            last_window_id=window.id,
            value=0.75,
            threshold=0.5,
            occurrences=3,
            message="drift in window 0",
            owner="olga",
            team="risk",
            runbook_url="https://wiki/credit",
            notified=["olga"],
            created_at=WHEN,
            last_seen_at=WHEN,
            acknowledged_by="olga",
            acknowledged_at=WHEN,
            resolved_by="monitor",
            resolved_at=WHEN,
            resolution="cleared",
        ),
    )
    rows += [approval, window, alert]
    for row in (
        ApprovalVote(
            approval_id=approval.id,
            voter="ann",
            decision="approved",
            token_issuer="root",
            comment="fine",
            decided_at=WHEN,
        ),
        Alias(
            model_name="credit",
            alias="champion",
            version_id=version.id,
            approval_id=approval.id,
            updated_at=WHEN,
        ),
        Deployment(
            name="credit",
            model_name="credit",
            version_id=version.id,
            url="http://127.0.0.1:8000",
            serving={"max_batch_size": 8},
            role="canary",
            mode="split",
            share=0.1,
            retrain_id=1,
            status="active",
            created_by="olga",
            started_at=WHEN,
            stopped_at=None,
        ),
        FeedbackBatch(
            deployment="credit", path="f/1.parquet", rows=10, status="partial",
            matched_rows=4, received_at=WHEN, applied_at=WHEN,
        ),
        DriftReport(
            window_id=window.id,
            version_id=version.id,
            shadow=True,
            rows=500,
            drifted_share=0.25,
            dataset_drifted=True,
            drifted_features=["income"],
            report=DOC,
            computed_at=WHEN,
        ),
        AlertDelivery(
            alert_id=alert.id,
            event="raised",
            channel="webhook",
            target="http://127.0.0.1:9/hook",
            status="delivered",
            attempts=2,
            next_attempt_at=WHEN,
            claimed_by="host:1:2",
            claimed_until=WHEN,
            delivered_at=WHEN,
            last_error="503",
            created_at=WHEN,
        ),
        WindowVersion(
            window_id=window.id,
            version_id=version.id,
            version=1,
            shadow=True,
            rows=500,
            labelled_rows=10,
            metrics=DOC,
            estimated=DOC,
            drift_status="drifted",
            drifted_share=0.5,
            updated_at=WHEN,
        ),
        RequestIndex(deployment="credit", request_id="r-1", window_id=window.id),
        MonitorPolicy(model_name="credit", settings=DOC, updated_by="olga", updated_at=WHEN),
        RetrainRequest(
            model_name="credit",
            deployment="credit",
            active_key="credit",
            trigger="drift",
            alert_id=alert.id,
            since_window=0,
            state="canary",
            champion_version_id=version.id,
            dataset_id=1,
            run_id="run-1",
            version_id=version.id,
            canary_deployment_id=1,
            approval_id=approval.id,
            gate=DOC,
            canary=DOC,
            outcome="promoted",
            error="e",
            attempts=1,
            created_by="monitor",
            created_at=WHEN,
            updated_at=WHEN,
            finished_at=WHEN,
        ),
        Lease(name="deployment:credit", holder="host:1:2", expires_at=WHEN, acquired_at=WHEN),
        ModelReview(model_name="credit", reviewer="olga", notes="annual validation",
                    version=1, reviewed_at=WHEN, next_due_at=WHEN),
        TokenSet(id=1, version=7, updated_at=WHEN),
        AuditEvent(
            ts=WHEN,
            actor="olga",
            action="model.promote",
            object_type="model",
            object_id="credit@1",
            details=DOC,
            prev_hash="0" * 64,
            hash="a" * 64,
        ),
    ):
        rows.append(_add(session, row))
    return rows


def _insert(url: str, rows: list[SQLModel]) -> None:
    with session_scope(url) as session:
        for row in rows:
            _add(session, row)


def _insert_graph(url: str) -> list[dict]:
    """Insert one row of every table; return each row's values as written, tagged by class."""
    with session_scope(url) as session:
        return [{"cls": type(row), **row.model_dump()} for row in _add_graph(session)]


_PRIMARY_KEYS = {RegisteredModel: "name", Lease: "name", MonitorPolicy: "model_name"}


def test_every_table_is_covered(db_url):
    written = _insert_graph(db_url)
    assert {row["cls"].__tablename__ for row in written} == set(SQLModel.metadata.tables)


def test_rows_round_trip(db_url):
    written = _insert_graph(db_url)
    with Session(get_engine(db_url)) as session:
        for want in written:
            want = dict(want)
            cls = want.pop("cls")
            got = session.get(cls, want[_PRIMARY_KEYS.get(cls, "id")])
            assert got is not None, cls.__name__
            assert got.model_dump() == want, cls.__name__


def test_datetimes_come_back_aware_utc(db_url):
    _insert_graph(db_url)
    with Session(get_engine(db_url)) as session:
        for cls in (User, Run, PredictionWindow, AuditEvent):
            for row in session.exec(select(cls)):
                for value in row.model_dump().values():
                    if isinstance(value, dt.datetime):
                        assert value.utcoffset() == dt.timedelta(0), (cls.__name__, value)
                        assert value.tzinfo is not None
        user = session.exec(select(User)).one()
        assert user.created_at == WHEN
        assert user.created_at.replace(tzinfo=None) == dt.datetime(2026, 3, 28, 23, 30, 15, 123456)


def test_defaults_fill_in(db_url):
    before = utcnow()
    _insert(db_url, [User(name="dan")])
    with Session(get_engine(db_url)) as session:
        user = session.exec(select(User).where(User.name == "dan")).one()
        assert user.id is not None
        assert user.role == "viewer"
        assert before <= user.created_at <= utcnow()


def test_naive_datetime_is_refused(db_url):
    # A naive time would silently mean "server local time" on one backend and UTC on the other.
    with pytest.raises(Exception, match="timezone"), session_scope(db_url) as session:
        session.add(User(name="naive", created_at=dt.datetime(2026, 1, 1)))
        session.flush()


# Each case: a row clashing with those test_unique_constraints inserts (given user and version id).
UNIQUE_CASES: dict[str, Callable[[int, int], SQLModel]] = {
    "dataset(name,version)": lambda user_id, version_id: Dataset(
        name="credit", version=1, digest="e" * 64, rows=1, created_by="x"
    ),
    "modelversion(model_name,version)": lambda user_id, version_id: ModelVersion(
        model_name="credit",
        version=1,
        digest="n" * 64,
        run_id="run-1",
        label="y",
        created_by="x",
    ),
    "alias(model_name,alias)": lambda user_id, version_id: Alias(
        model_name="credit", alias="champion", version_id=version_id
    ),
    "user(name)": lambda user_id, version_id: User(name="olga"),
    "apitoken(token_hash)": lambda user_id, version_id: ApiToken(
        user_id=user_id, name="other", token_hash="h" * 64
    ),
    "predictionwindow(deployment,index)": lambda user_id, version_id: PredictionWindow(
        deployment="credit", index=0, path="w/0b", rows=1, requests=1
    ),
    "feedbackbatch(path)": lambda user_id, version_id: FeedbackBatch(
        deployment="other", path="f/1.parquet", rows=1
    ),
    # A second event on the same head would fork the hash chain.
    "auditevent(prev_hash)": lambda user_id, version_id: AuditEvent(
        actor="x", action="y", object_type="z", object_id="1", prev_hash="0" * 64, hash="b" * 64
    ),
    "auditevent(hash)": lambda user_id, version_id: AuditEvent(
        actor="x", action="y", object_type="z", object_id="1", prev_hash="c" * 64, hash="a" * 64
    ),
}


@pytest.mark.parametrize("case", list(UNIQUE_CASES))
def test_unique_constraints(db_url, case):
    with session_scope(db_url) as session:
        user, *_, version = _add_parents(session)
        _add(session, Alias(model_name="credit", alias="champion", version_id=version.id))
        _add(
            session, PredictionWindow(deployment="credit", index=0, path="w/0", rows=1, requests=1)
        )
        _add(session, FeedbackBatch(deployment="credit", path="f/1.parquet", rows=1))
        _add(
            session,
            AuditEvent(
                actor="x",
                action="y",
                object_type="z",
                object_id="0",
                prev_hash="0" * 64,
                hash="a" * 64,
            ),
        )
    duplicate = UNIQUE_CASES[case](user.id, version.id)
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        _add(session, duplicate)
    # The failed transaction rolled back and left the table usable.
    with Session(get_engine(db_url)) as session:
        assert len(session.exec(select(type(duplicate))).all()) == 1


def test_same_name_new_version_is_allowed(db_url):
    with session_scope(db_url) as session:
        _add_parents(session)
    _insert(db_url, [Dataset(name="credit", version=2, digest="e" * 64, rows=1, created_by="x")])
    with Session(get_engine(db_url)) as session:
        assert len(session.exec(select(Dataset)).all()) == 2


@pytest.mark.parametrize(
    "orphan",
    [
        pytest.param(lambda: ApiToken(user_id=999, name="t", token_hash="z"), id="apitoken.user"),
        pytest.param(
            lambda: Run(
                id="r",
                model_name="m",
                dataset_id=999,
                seed=0,
                code_version="c",
                environment="e",
                created_by="x",
            ),
            id="run.dataset",
        ),
        pytest.param(
            lambda: ModelVersion(
                model_name="nobody", version=1, digest="d", run_id="none", label="y", created_by="x"
            ),
            id="modelversion.model",
        ),
        pytest.param(
            lambda: DriftReport(
                window_id=999, version_id=999, drifted_share=0.0, dataset_drifted=False
            ),
            id="driftreport.window",
        ),
    ],
)
def test_foreign_keys_are_enforced(db_url, orphan):
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        session.add(orphan())
        session.flush()


def test_sqlite_foreign_keys_pragma_is_on(sqlite_url):
    # SQLite ignores REFERENCES unless each connection turns this on.
    with get_engine(sqlite_url).connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
