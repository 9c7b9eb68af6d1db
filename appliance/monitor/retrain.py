"""The retrain policy's decisions, and the retraining set it asks for.

When a new alert of a kind the model's policy names as a trigger is raised (or its schedule
is due), the monitor writes a `RetrainRequest` in the same transaction: an outbox row that the
orchestrator (`appliance.pipelines.loop`) walks to a trained, gated, canaried and proposed
challenger. A model has at most one request in flight (`active_key` is unique), and a cooldown
between two.

The retraining set is what production saw and what came true: the served rows of the
deployment's windows since the trigger's window, inputs exactly as logged, joined with the
labels that arrived for them, oldest first (so the newest rows are the holdout), optionally
cut to the newest `max_rows`, after an optional seeded share of the champion's own training
rows. It is registered as a dataset version whose lineage names the windows and feedback
batches it came from. Nothing generated, nothing from the future.

Its data contract (`appliance.registry.contract`, purpose "retraining") is checked against the
data the champion was trained on, the features and label only, since that is what the
challenger would replace; its row count against the labelled rows the window index promised.
Drift (ranges, new categories, the label's balance) only warns there; a set with a blocking
finding makes the request wait for `appliance data accept` (`appliance.pipelines.loop`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from appliance.artifacts import ArtifactStore
from appliance.errors import ConflictError
from appliance.governance import audit
from appliance.monitor import labels
from appliance.monitor.policy import Policy
from appliance.monitor.windows import read_window, served_mask
from appliance.registry import contract, datasets
from appliance.store.models import (
    Alert,
    Dataset,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    Run,
    WindowVersion,
    utcnow,
)

TERMINAL = ("promoted", "gate_failed", "canary_aborted", "rejected", "failed", "cancelled")


def _champion(session: Session, deployment: str) -> int | None:
    row = session.exec(select(Deployment).where(
        Deployment.name == deployment, Deployment.status == "active",
        Deployment.role == "primary",
    ).order_by(col(Deployment.id).desc())).first()
    return row.version_id if row else None


def _cooling(session: Session, model: str, policy: Policy, now: dt.datetime) -> bool:
    last = session.exec(select(func.max(RetrainRequest.created_at)).where(
        RetrainRequest.model_name == model)).one()
    return bool(last and now - last < dt.timedelta(seconds=policy.cooldown_seconds))


def _create(
    session: Session, *, model: str, deployment: str, trigger: str, alert_id: int | None,
    since_window: int, actor: str, now: dt.datetime,
) -> RetrainRequest | None:
    request = RetrainRequest(
        model_name=model, deployment=deployment, active_key=model, trigger=trigger,
        alert_id=alert_id, since_window=since_window,
        champion_version_id=_champion(session, deployment), created_by=actor,
        created_at=now, updated_at=now,
    )
    try:
        # The unique active_key refuses a second request in flight for the model.
        with session.begin_nested():
            session.add(request)
            session.flush()
    except IntegrityError:
        return None
    audit.record(session, actor, "retrain.requested", "model", model, {
        "request": request.id, "trigger": trigger, "alert": alert_id,
        "since_window": since_window, "deployment": deployment,
    })
    return request


def on_alerts(
    session: Session, policy: Policy, alerts: list[Alert], *, actor: str,
    now: dt.datetime | None = None,
) -> RetrainRequest | None:
    """Open a retrain request when one of the new `alerts` is a trigger of `policy`.

    Args:
        session: the session that raised the alerts (the request commits with them).
        policy: the model's effective policy.
        alerts: alerts raised just now (not deduplicated updates).
        actor: who asks (the monitor's principal).
        now: the current time (default `utcnow()`).
    """
    now = now or utcnow()
    if not policy.retrain:
        return None
    trigger = next((a for a in alerts if a.kind in policy.triggers), None)
    if trigger is None or _cooling(session, trigger.model_name, policy, now):
        return None
    window = session.get(PredictionWindow, trigger.window_id)
    return _create(session, model=trigger.model_name, deployment=trigger.deployment,
                   trigger=trigger.kind, alert_id=trigger.id, since_window=window.index,
                   actor=actor, now=now)


def on_open_alerts(
    session: Session, policy: Policy, model: str, deployment: str, *, actor: str,
    now: dt.datetime | None = None,
) -> RetrainRequest | None:
    """Open a retrain request for a triggering alert that is still open when none is in
    flight: the last one ended without fixing it (a failed gate, an aborted canary), or the
    cooldown held the alert's own request back."""
    now = now or utcnow()
    if not policy.retrain or _cooling(session, model, policy, now):
        return None
    kinds = [k for k in policy.triggers if k != "schedule"]
    if not kinds or session.exec(select(RetrainRequest.id).where(
            RetrainRequest.active_key == model)).first() is not None:
        return None
    alert = session.exec(select(Alert).where(
        Alert.model_name == model, Alert.deployment == deployment,
        col(Alert.kind).in_(kinds), col(Alert.status).in_(["open", "acknowledged"]),
    ).order_by(col(Alert.id).desc())).first()
    if alert is None or alert.window_id is None:
        return None
    latest = session.exec(select(RetrainRequest).where(RetrainRequest.model_name == model)
                          .order_by(col(RetrainRequest.id).desc())).first()
    since = session.get(PredictionWindow, alert.window_id).index
    if latest is not None:
        # A new attempt learns from what came after the last one ended.
        since = max(since, _next_window(session, deployment, latest))
    return _create(session, model=model, deployment=deployment, trigger=alert.kind,
                   alert_id=alert.id, since_window=since, actor=actor, now=now)


def _next_window(session: Session, deployment: str, request: RetrainRequest) -> int:
    """The first window after `request` ended: a new attempt learns from what came since."""
    last = session.exec(select(func.max(PredictionWindow.index)).where(
        PredictionWindow.deployment == deployment,
        PredictionWindow.closed_at <= (request.finished_at or request.created_at),
    )).one()
    return (last or 0) + 1


def on_schedule(
    session: Session, policy: Policy, model: str, deployment: str, *, actor: str,
    now: dt.datetime | None = None,
) -> RetrainRequest | None:
    """Open a scheduled retrain request when the model's schedule is due.

    The period counts from the model's last request, or from its deployment; the data are
    the windows that began within the last period.
    """
    now = now or utcnow()
    if not policy.retrain or "schedule" not in policy.triggers or not policy.schedule_seconds:
        return None
    period = dt.timedelta(seconds=policy.schedule_seconds)
    last = session.exec(select(func.max(RetrainRequest.created_at)).where(
        RetrainRequest.model_name == model)).one()
    if last is None:
        last = session.exec(select(func.min(Deployment.started_at)).where(
            Deployment.name == deployment)).one()
    if last is None or now - last < period or _cooling(session, model, policy, now):
        return None
    since = session.exec(select(func.min(PredictionWindow.index)).where(
        PredictionWindow.deployment == deployment, PredictionWindow.first_ts >= now - period,
    )).one()
    if since is None:
        return None
    return _create(session, model=model, deployment=deployment, trigger="schedule",
                   alert_id=None, since_window=since, actor=actor, now=now)


def labelled_rows_since(session: Session, deployment: str, since_window: int) -> int:
    """Served rows with a label, in windows from `since_window` on (no file is read)."""
    total = session.exec(
        select(func.sum(WindowVersion.labelled_rows))
        .join(PredictionWindow, PredictionWindow.id == WindowVersion.window_id)
        .where(PredictionWindow.deployment == deployment,
               PredictionWindow.index >= since_window, WindowVersion.shadow == False)  # noqa: E712
    ).one()
    return int(total or 0)


def _as_trained(table: pa.Table, features: list[str], categorical: list[str]) -> pa.Table:
    """Features typed as the champion took them (a window that held two versions may have
    kept a column as text)."""
    for name in features:
        want = pa.string() if name in categorical else pa.float64()
        i = table.schema.get_field_index(name)
        if table.schema.field(i).type != want:
            table = table.set_column(i, name, table.column(name).cast(want))
    return table


def _production_rows(
    session: Session, artifacts: Any, request: RetrainRequest, features: list[str],
    categorical: list[str],
) -> tuple[pa.Table, dict[int, int]]:
    """Labelled served rows from the request's windows, oldest first, with `_window` (window
    index) and `_seq` (feedback batch) columns; and window index -> window id."""
    windows = session.exec(select(PredictionWindow).where(
        PredictionWindow.deployment == request.deployment,
        PredictionWindow.index >= request.since_window, PredictionWindow.labelled_rows > 0,
    ).order_by(PredictionWindow.index)).all()
    parts, ids = [], {}
    for window in windows:
        path = labels.label_path(artifacts, window.deployment, window.index)
        if not path.is_file():
            continue
        got = pq.read_table(path, columns=["request_id", "row", "label", "seq"])
        table = read_window(window, ["request_id", "row", "ts", "shadow", *features])
        table = table.filter(served_mask(table))
        table = _as_trained(table, features, categorical)
        joined = table.join(got, keys=["request_id", "row"], join_type="inner")
        if not joined.num_rows:
            continue
        joined = joined.append_column(
            "_window", pa.array([window.index] * joined.num_rows, pa.int64()))
        parts.append(joined.select(["ts", "request_id", "row", *features, "label", "seq",
                                    "_window"]))
        ids[window.index] = window.id
    if not parts:
        return pa.table({"label": pa.array([], pa.int64())}), {}
    table = pa.concat_tables(parts, promote_options="default")
    table = table.sort_by([("ts", "ascending"), ("request_id", "ascending"),
                           ("row", "ascending")])
    return table, ids


def _reference(session: Session, store: ArtifactStore, champion: ModelVersion,
               expected_rows: int) -> contract.Reference:
    """The champion's training data, as a retraining set is checked against it."""
    ds = session.get(Dataset, session.get(Run, champion.run_id).dataset_id)
    columns = [*champion.features, champion.label]
    profile = ds.profile
    if profile is None or ds.label != champion.label:
        # Registered before contracts, or profiled with another label column: profile it now
        # (read once per retraining set, and only the model's columns).
        profile = contract.profile(datasets.load(store, ds).select(columns), champion.label)
    return contract.Reference(f"{ds.name}:{ds.version}", contract.restrict(profile, columns),
                              expected_rows=expected_rows)


def build_dataset(
    session: Session, store: ArtifactStore, artifacts: Any, request: RetrainRequest,
    policy: Policy,
) -> Dataset:
    """Build and register the retraining set of `request` (see the module docstring).

    The dataset commits with the caller's transaction, which also records it on the request;
    an identical rebuild after a crash returns the same dataset version (content-addressed).

    Raises:
        ConflictError: no labelled production rows, or no champion to take the spec from.
    """
    champion = session.get(ModelVersion, request.champion_version_id or -1)
    if champion is None:
        raise ConflictError(f"retrain request #{request.id}: the deployment "
                            f"{request.deployment!r} has no champion version to retrain")
    features, label = list(champion.features), champion.label
    # What the window index says there is: the rows the files must give, within the contract.
    promised = labelled_rows_since(session, request.deployment, request.since_window)
    if policy.max_rows is not None:
        promised = min(promised, policy.max_rows)
    fresh, window_ids = _production_rows(session, artifacts, request, features,
                                         list(champion.categorical))
    if fresh.num_rows == 0:
        raise ConflictError(f"retrain request #{request.id}: no labelled production rows in "
                            f"windows from {request.since_window} on")
    if policy.max_rows is not None and fresh.num_rows > policy.max_rows:
        fresh = fresh.slice(fresh.num_rows - policy.max_rows)
    windows = sorted(int(w) for w in pc.unique(fresh.column("_window")).to_pylist())
    batches = sorted(int(b) for b in pc.unique(fresh.column("seq")).to_pylist())
    requests = len(pc.unique(fresh.column("request_id")))
    fresh = fresh.select([*features, "label"]).rename_columns([*features, label])
    fresh = fresh.set_column(len(features), label, fresh.column(label).cast(pa.int64()))
    previous_doc = None
    parts = []
    if policy.previous_share > 0:
        run = session.get(Run, champion.run_id)
        old_ds = session.get(Dataset, run.dataset_id)
        old = datasets.load(store, old_ds)
        take = min(old.num_rows, int(round(policy.previous_share * old.num_rows)))
        # Seeded by the request, so a rebuild after a crash draws the same rows.
        rng = np.random.default_rng([request.id or 0, 0xA11CE])
        idx = np.sort(rng.choice(old.num_rows, size=take, replace=False))
        old = old.take(pa.array(idx, pa.int64())).select([*features, label])
        parts.append(old.cast(fresh.schema))
        promised += old.num_rows
        previous_doc = {"dataset": f"{old_ds.name}:{old_ds.version}", "rows": old.num_rows,
                        "share": policy.previous_share}
    parts.append(fresh)
    table = pa.concat_tables(parts)
    lineage = {
        "retrain_request": request.id, "deployment": request.deployment,
        "since_window": request.since_window, "windows": windows,
        "window_ids": [window_ids[w] for w in windows], "feedback_batches": batches,
        "production_rows": fresh.num_rows, "requests": requests, "previous": previous_doc,
        "max_rows": policy.max_rows, "holdout_share": policy.holdout_share,
        "order": "previous rows first, then production rows oldest first",
    }
    # Checked against the champion's training data with the retraining severities (see the
    # module docstring): one with a blocking finding is registered but blocked (training.start
    # refuses it until accepted), and the loop makes the request wait for that.
    ds = datasets.add_table(session, store, table, f"{request.model_name}-retrain",
                            actor=request.created_by, source=f"retrain request #{request.id}",
                            label=label, purpose=contract.Purpose.retraining,
                            against=_reference(session, store, champion, promised))
    if not ds.lineage:
        ds.lineage = lineage
        session.add(ds)
    session.flush()
    return ds


def active(session: Session, model: str | None = None) -> list[RetrainRequest]:
    """Requests not finished yet, oldest first."""
    query = select(RetrainRequest).where(col(RetrainRequest.state).not_in(TERMINAL))
    if model:
        query = query.where(RetrainRequest.model_name == model)
    return list(session.exec(query.order_by(RetrainRequest.id)).all())


def latest(session: Session, model: str) -> RetrainRequest | None:
    return session.exec(select(RetrainRequest).where(RetrainRequest.model_name == model)
                        .order_by(col(RetrainRequest.id).desc())).first()


def move(session: Session, request: RetrainRequest, state: str, actor: str,
         **details: Any) -> None:
    """Record that `request` reached `state` (audited); the caller commits with its effects."""
    request.state, request.updated_at = state, utcnow()
    if state in TERMINAL:
        request.active_key, request.finished_at = None, request.updated_at
    session.add(request)
    audit.record(session, actor, f"retrain.{state}", "retrain", request.id,
                 {"model": request.model_name, **details})


def finish(session: Session, request: RetrainRequest, state: str, actor: str,
           reason: str | None = None) -> None:
    """End `request` in terminal `state`, keeping `reason` as its outcome."""
    if state not in TERMINAL:
        raise ValueError(f"{state!r} is not a terminal state")
    request.outcome = reason
    move(session, request, state, actor, reason=reason)
