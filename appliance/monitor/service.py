"""One monitor pass over every active deployment.

For each deployment, under its lease (so two monitors never work on one deployment at once):

1. close every window its policy says is due; for each, in one transaction: the window, its
   request index, each version's drift against its own profile and its label-free estimate,
   the drift and estimated-accuracy alerts, and a retrain request if one of them triggers it;
2. merge the labels that arrived into their windows, recompute those windows' live metrics,
   and evaluate the accuracy rules on them (late labels raise their alerts when they land);
3. open a retrain request when the schedule is due, or when a triggering alert is still open
   after an earlier retrain ended without a promotion (after the policy's cooldown).

Once per pass, whatever is deployed, models whose periodic review is overdue get a "review"
alert (`appliance.monitor.review_alerts`).

Then pending alert notifications are delivered. A deployment that fails (an unreadable window
file, say) is reported in its result and skipped; the others go on. Acting on retrain
requests (training, canary, promotion) is the orchestrator's job: the core never imports Ray.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from sqlmodel import Session, col, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import ArtifactIntegrityError, NotFound
from appliance.monitor import (
    alerts,
    integrity,
    labels,
    notify,
    retrain,
    review_alerts,
    window_stats,
    windows,
)
from appliance.monitor.policy import Policy
from appliance.monitor.policy_store import effective
from appliance.store import session_scope
from appliance.store.leases import hold, holder_id
from appliance.store.models import (
    Deployment,
    ModelVersion,
    PredictionWindow,
    WindowVersion,
    utcnow,
)

logger = logging.getLogger("appliance.monitor")
CLOSE_KINDS = ("drift", "estimated_accuracy", "fairness", "segment", "importance")
# Fairness and segment rules read labelled values too (equal opportunity, segment accuracy).
LABEL_KINDS = ("accuracy", "fairness", "segment")
LEASE_TTL_S = 120.0


@dataclasses.dataclass
class WindowSummary:
    """A window closed in this pass, or one whose labels changed."""

    window: int
    rows: int
    closed_by: str | None
    versions: list[dict[str, Any]]
    accuracy: float | None = None
    labelled_rows: int = 0


@dataclasses.dataclass
class DeploymentPass:
    """What one monitor pass did for one deployment."""

    deployment: str
    model: str
    closed: list[WindowSummary] = dataclasses.field(default_factory=list)
    relabelled: list[WindowSummary] = dataclasses.field(default_factory=list)
    labelled_rows: int = 0
    alerts_raised: list[int] = dataclasses.field(default_factory=list)
    alerts_resolved: list[int] = dataclasses.field(default_factory=list)
    retrain_requested: int | None = None
    quarantined: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None
    error: str | None = None


def _summary(session: Session, window: PredictionWindow, closed_by: str | None
             ) -> WindowSummary:
    rows = session.exec(select(WindowVersion).where(WindowVersion.window_id == window.id)
                        .order_by(WindowVersion.version, WindowVersion.shadow)).all()
    return WindowSummary(
        window=window.index, rows=window.rows, closed_by=closed_by,
        accuracy=window.accuracy, labelled_rows=window.labelled_rows,
        versions=[{"version": r.version, "shadow": r.shadow, "rows": r.rows,
                   "drift": r.drift_status, "drifted_share": r.drifted_share,
                   "labelled_rows": r.labelled_rows, "metrics": r.metrics,
                   "estimated": r.estimated} for r in rows],
    )


class _Deployment:
    """The parts of one deployment's pass, sharing its settings."""

    def __init__(self, cfg: Config, name: str, model: str, policy: Policy, actor: str,
                 now: dt.datetime, result: DeploymentPass) -> None:
        self.cfg, self.name, self.model, self.policy = cfg, name, model, policy
        self.actor, self.now, self.result = actor, now, result
        self.store = ArtifactStore(cfg.artifacts)
        self.channels = alerts.Channels(cfg.alerts_log, cfg.alert_webhook)

    def _versions(self, session: Session) -> list[ModelVersion]:
        return list(session.exec(
            select(ModelVersion).where(ModelVersion.model_name == self.model)).all())

    def _record(self, session: Session, changes: alerts.Changes) -> None:
        self.result.alerts_raised += [a.id for a in changes.raised]
        self.result.alerts_resolved += [a.id for a in changes.resolved]
        request = retrain.on_alerts(session, self.policy, changes.raised, actor=self.actor,
                                    now=self.now)
        if request is not None:
            self.result.retrain_requested = request.id

    def close_windows(self) -> None:
        policy = windows.WindowPolicy(self.policy.window_rows, self.policy.window_seconds)
        seen: dict = {}
        while True:
            with session_scope(self.cfg.db_url) as session:
                try:
                    closed = windows.close_next(session, self.cfg.predictions_dir, self.name,
                                                policy, self.now, seen)
                except windows.CorruptLog as exc:
                    moved = windows.quarantine(exc.path, self.cfg.predictions_dir, self.name)
                    logger.error("%s; moved to %s", exc, moved)
                    self.result.quarantined.append(str(moved))
                    continue
                if closed is None:
                    return
                window, table = closed
                by_number = {str(v.version): v for v in self._versions(session)}
                window_stats.close_stats(session, self.store, window, table, by_number,
                                         min_drift_rows=self.policy.min_drift_rows,
                                         segmenting=window_stats.Segmenting.of(self.policy))
                self._record(session, alerts.evaluate(
                    session, self.cfg.alert_rules, window, kinds=CLOSE_KINDS,
                    channels=self.channels, now=self.now))
                self.result.closed.append(_summary(session, window, window.closed_by))
                index = window.index
            windows.finish_close(self.cfg.predictions_dir, self.name, index)

    def apply_labels(self) -> None:
        with session_scope(self.cfg.db_url) as session:
            _, moved = labels.ingest(session, self.cfg.feedback_dir, self.name, now=self.now)
            for path in moved:
                logger.error("feedback file %s is unreadable; moved aside", path)
                self.result.quarantined.append(str(path))
            open_batches = labels.open_batch_ids(session, self.name)
            touched, matched = labels.apply(session, self.cfg.artifacts, self.name, now=self.now)
            self.result.labelled_rows = matched
            by_id = {v.id: v for v in self._versions(session)}
            changed = session.exec(select(PredictionWindow).where(
                col(PredictionWindow.id).in_(touched)).order_by(PredictionWindow.index)).all()
            for window in changed:
                try:
                    # Its own savepoint: one unreadable window must not hold back the labels
                    # of the others (its batches still count as applied; its metrics wait).
                    with session.begin_nested():
                        window_stats.refresh_metrics(
                            session, self.cfg.artifacts, window, by_id,
                            window_stats.Segmenting.of(self.policy))
                except Exception as exc:  # noqa: BLE001 - reported, and the pass goes on
                    logger.exception("window %s of %r: live metrics failed", window.index,
                                     self.name)
                    if isinstance(exc, ArtifactIntegrityError):
                        integrity.raise_integrity_alert(session, exc, channels=self.channels,
                                                        now=self.now)
                    self.result.error = f"window {window.index}: {type(exc).__name__}: {exc}"
                    alerts.notice(session, model=self.model, deployment=self.name,
                                  rule="monitor", severity="critical", channels=self.channels,
                                  message=f"{self.name}: window {window.index}'s live metrics "
                                          f"could not be computed from its new labels: "
                                          f"{self.result.error}", now=self.now)
                    continue
                self.result.relabelled.append(_summary(session, window, None))
            for window in self._to_judge(session, changed):
                self._record(session, alerts.evaluate(
                    session, self.cfg.alert_rules, window, kinds=LABEL_KINDS,
                    channels=self.channels, now=self.now))
        with session_scope(self.cfg.db_url) as session:
            labels.archive(session, self.name, open_batches)

    def _to_judge(self, session: Session, changed: list[PredictionWindow]
                  ) -> list[PredictionWindow]:
        """The windows whose labels changed, and the ones after each that a run of
        `consecutive` breaches may now complete (labels need not land in order)."""
        reach = max((r.consecutive for r in self.cfg.alert_rules if r.kind in LABEL_KINDS),
                    default=1) - 1
        indices = {w.index + k for w in changed for k in range(reach + 1)}
        if not indices:
            return []
        return list(session.exec(select(PredictionWindow).where(
            PredictionWindow.deployment == self.name,
            col(PredictionWindow.index).in_(sorted(indices)),
        ).order_by(PredictionWindow.index)).all())

    def retrain_triggers(self) -> None:
        """A schedule that is due, or an alert still open after an earlier retrain ended
        without a promotion (once the policy's cooldown allows), opens a retrain request."""
        with session_scope(self.cfg.db_url) as session:
            request = retrain.on_schedule(session, self.policy, self.model, self.name,
                                          actor=self.actor, now=self.now)
            if request is None:
                request = retrain.on_open_alerts(session, self.policy, self.model, self.name,
                                                 actor=self.actor, now=self.now)
            if request is not None:
                self.result.retrain_requested = request.id


def active_deployments(session: Session, name: str | None = None) -> list[tuple[str, str]]:
    """(deployment, model) of every deployment with an active primary."""
    query = select(Deployment.name, Deployment.model_name).where(
        Deployment.status == "active", Deployment.role == "primary").distinct()
    if name:
        query = query.where(Deployment.name == name)
    return sorted(session.exec(query).all())


def check_deployment(session: Session, name: str) -> None:
    """Refuse a deployment name the store has never recorded: watching a typo watches nothing.

    A deployment stopped for now is accepted (its windows and labels may still be due).

    Raises:
        NotFound: no deployment was ever named `name`; the message lists those there are.
    """
    if session.exec(select(Deployment.id).where(Deployment.name == name)).first() is None:
        known = sorted(set(session.exec(select(Deployment.name)).all()))
        raise NotFound(f"no deployment named {name!r}; deployments: "
                       f"{', '.join(known) or 'none yet'}")


def run_once(
    cfg: Config, deployment: str | None = None, *, actor: str = "monitor",
    holder: str | None = None, now: dt.datetime | None = None, deliver: bool = True,
) -> list[DeploymentPass]:
    """Monitor every active deployment (or only `deployment`) once.

    Args:
        cfg: the configuration (store, artifacts, alert rules, policy defaults, webhook).
        deployment: only this deployment (default all active ones).
        actor: the principal retrain requests are recorded as asked by (default "monitor").
        holder: the lease holder id (default: this process, `holder_id()`).
        now: the current time for window limits, cooldowns and schedules (default now).
        deliver: send pending alert notifications afterwards (default True).
    """
    holder = holder or holder_id()
    with session_scope(cfg.db_url) as session:
        targets = active_deployments(session, deployment)
    results = []
    for name, model in targets:
        result = DeploymentPass(deployment=name, model=model)
        results.append(result)
        with hold(cfg.db_url, f"monitor:{name}", holder=holder, ttl_s=LEASE_TTL_S) as got:
            if not got:
                result.skipped = "another monitor holds this deployment's lease"
                continue
            try:
                with session_scope(cfg.db_url) as session:
                    policy = effective(session, model, cfg.policy).policy
                part = _Deployment(cfg, name, model, policy, actor, now or utcnow(), result)
                part.close_windows()
                part.apply_labels()
                part.retrain_triggers()
            except Exception as exc:  # noqa: BLE001 - one bad deployment must not stop the rest
                logger.exception("monitor pass failed for deployment %r", name)
                result.error = f"{type(exc).__name__}: {exc}"
    _reviews(cfg, holder, now or utcnow())
    if deliver:
        globals()["deliver"](cfg, holder)
    return results


def _reviews(cfg: Config, holder: str, now: dt.datetime) -> None:
    """Raise and resolve the overdue-review alerts, whether or not anything is deployed."""
    with hold(cfg.db_url, "monitor:reviews", holder=holder, ttl_s=LEASE_TTL_S) as got:
        if not got:
            return
        try:
            with session_scope(cfg.db_url) as session:
                review_alerts.check(session, alerts.Channels(cfg.alerts_log, cfg.alert_webhook),
                                    now)
        except Exception:  # noqa: BLE001 - the deployments' pass must not fail for this
            logger.exception("monitor pass failed to check model reviews")


def deliver(cfg: Config, holder: str | None = None) -> notify.DeliveryStats:
    """Send the alert notifications that are due (see `appliance.monitor.notify`)."""
    return notify.deliver_pending(cfg.db_url, holder=holder or holder_id())
