"""The retrain loop's orchestrator: walks each retrain request from its trigger to a promoted
challenger, one durable step at a time.

    waiting_for_labels [-> waiting_for_data_accept] -> training -> gating -> deploying_canary
        -> canary -> requesting_promotion -> awaiting_approval -> promoting -> promoted

and the ends on the way: gate_failed, canary_aborted (a regression, or no verdict in time),
rejected, failed (a step kept failing), cancelled (a rollback or an undeploy).

Each step's effect and the request's next state commit together, or the step is idempotent
and keyed by the request (a content-addressed dataset, a training run whose id is recorded
before it starts and which resumes from its checkpoint, a canary deployment that is redeployed
in place, an approval recorded with the request), so a process killed anywhere resumes at the
step it was in, and nothing is done twice. A lease per request keeps two monitors apart.

A retraining set that breaks its data contract (a blocking finding: see
`appliance.registry.contract.SEVERITY`) is not a failed step: it will not heal by retrying,
but it is not wrong to retrain either. The request waits in `waiting_for_data_accept`, its
owner is told once with the report, and the loop resumes training when someone runs
`appliance data accept` on the set (which records who and why). Drift findings the set is
expected to show are only warnings, recorded with the set and on the request's audit trail.

The challenger is trained through the same pipeline as `appliance train`: the champion's spec
and params, on the retraining set, with the newest `holdout_share` of it held out; the gate
compares it with the champion on that holdout, with the checks the champion's version stored.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable

from sqlmodel import Session, func, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.governance import approvals, gate_checks
from appliance.governance.approvals import GateResult
from appliance.monitor import alerts, canary, integrity, retrain
from appliance.monitor.policy import Policy
from appliance.monitor.policy_store import effective
from appliance.monitor.window_stats import task_of
from appliance.pipelines import deployment, promotion, training
from appliance.pipelines.spec import TrainSpec
from appliance.registry import datasets
from appliance.registry.contract import ContractStatus, Severity
from appliance.store import session_scope
from appliance.store.leases import hold, holder_id
from appliance.store.models import (
    Approval,
    ApprovalStatus,
    Dataset,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RegisteredModel,
    RetrainRequest,
    Run,
    User,
)

logger = logging.getLogger("appliance.loop")
MAX_ATTEMPTS = 3
LEASE_TTL_S = 60.0


@dataclasses.dataclass
class Step:
    """What advancing one request did."""

    request: int
    model: str
    before: str
    after: str
    note: str = ""


class _Driver:
    """Drives one request; each handler returns a note, and moves the request or not."""

    def __init__(self, cfg: Config, user: User, request_id: int) -> None:
        self.cfg, self.user, self.id = cfg, user, request_id
        self.store = ArtifactStore(cfg.artifacts)

    def _load(self, session: Session) -> tuple[RetrainRequest, Policy]:
        request = session.get(RetrainRequest, self.id)
        return request, effective(session, request.model_name, self.cfg.policy).policy

    def _notify_owner(self, session: Session, request: RetrainRequest, message: str,
                      severity: str = "warning") -> None:
        alerts.notice(session, model=request.model_name, deployment=request.deployment,
                      rule="retrain", severity=severity, message=message,
                      channels=alerts.Channels(self.cfg.alerts_log, self.cfg.alert_webhook))

    # One handler per state.

    def waiting_for_labels(self) -> str:
        # A window or dataset whose file no longer matches its digest raises a critical alert.
        with integrity.alerting(self.cfg), session_scope(self.cfg.db_url) as session:
            request, policy = self._load(session)
            have = retrain.labelled_rows_since(session, request.deployment,
                                               request.since_window)
            if have < policy.min_labelled_rows:
                return f"{have} of {policy.min_labelled_rows} labelled rows since window " \
                       f"{request.since_window}"
            ds = retrain.build_dataset(session, self.store, self.cfg.artifacts, request, policy)
            request.dataset_id = ds.id
            ref, report = f"{ds.name}:{ds.version}", datasets.report(ds)
            if ds.contract_status == ContractStatus.failed.value:
                summary = report.summary()
                retrain.move(session, request, "waiting_for_data_accept", self.user.name,
                             dataset=ref, rows=ds.rows, windows=ds.lineage.get("windows"),
                             baseline=report.baseline,
                             violations=[v.message for v in report.blocking()],
                             warnings=[v.message for v in report.warnings()])
                self._notify_owner(session, request, (
                    f"{request.model_name}: retraining set {ref} of retrain request "
                    f"#{request.id} failed its data contract against {report.baseline}: "
                    f"{summary}; the request waits; if the data are right: appliance data "
                    f"accept {ref} --reason '...'"))
                return f"retraining set {ref} failed its data contract: {summary}"
            retrain.move(session, request, "training", self.user.name,
                         dataset=ref, rows=ds.rows, windows=ds.lineage.get("windows"),
                         contract=ds.contract_status,
                         warnings=[v.message for v in report.warnings()] if report else [])
            return f"retraining set {ref} ({ds.rows} rows)" + (
                f", contract warnings: {report.summary(Severity.warn)}"
                if report and report.warnings() else "")

    def waiting_for_data_accept(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            ds = session.get(Dataset, request.dataset_id)
            ref = f"{ds.name}:{ds.version}"
            if ds.contract_status == ContractStatus.failed.value:
                return f"retraining set {ref} awaits 'appliance data accept' " \
                       f"({datasets.report(ds).summary()})"
            retrain.move(session, request, "training", self.user.name, dataset=ref,
                         contract=ds.contract_status, accepted_by=ds.contract_accepted_by,
                         reason=ds.contract_accepted_reason)
            return f"retraining set {ref} accepted by {ds.contract_accepted_by}"

    def _spec(self, session: Session, request: RetrainRequest, policy: Policy) -> TrainSpec:
        champion = session.get(ModelVersion, request.champion_version_id)
        run = session.get(Run, champion.run_id)
        ds = session.get(Dataset, request.dataset_id)
        # The challenger is judged by the gate the champion stored, not by today's defaults.
        doc = {**run.spec, "dataset": f"{ds.name}:{ds.version}",
               "holdout": policy.holdout_share, "split": "latest",
               "params": dict(run.params),
               "gate": gate_checks.from_stored(champion.gate_checks, task_of(champion)).to_dict()}
        return TrainSpec(**doc)

    def training(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, policy = self._load(session)
            spec = self._spec(session, request, policy)
            run = session.get(Run, request.run_id) if request.run_id else None
        if run is None:
            def remember(session: Session, started: Run) -> None:
                row = session.get(RetrainRequest, self.id)
                row.run_id = started.id
                session.add(row)

            run = training.start(self.cfg, self.user, spec, on_started=remember)
        outcome = training.resume(self.cfg, self.user, spec, run)
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            request.version_id = outcome.version.id
            retrain.move(session, request, "gating", self.user.name,
                         version=outcome.version.version, run=outcome.run_id)
        return f"challenger v{outcome.version.version} trained (run {outcome.run_id})"

    def gating(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            candidate = session.get(ModelVersion, request.version_id)
            champion = session.get(ModelVersion, request.champion_version_id)
        gated = promotion.run_gate(self.cfg, candidate, champion)
        result, mine, theirs = gated.result, gated.candidate, gated.incumbent
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            request.gate = {**result.to_dict(), "candidate": mine, "champion": theirs,
                            "champion_version": champion.version}
            if result.passed:
                retrain.move(session, request, "deploying_canary", self.user.name,
                             gate=request.gate)
                return (f"v{candidate.version} passed the gate against v{champion.version}: "
                        f"{len(result.checks)} checks")
            failed = approvals.describe_failures(result)
            retrain.finish(session, request, "gate_failed", self.user.name, failed)
            self._notify_owner(session, request, f"{request.model_name}: retrained v"
                               f"{candidate.version} failed the gate ({failed}); the champion "
                               f"v{champion.version} keeps serving")
            return f"gate failed: {failed}"

    def deploying_canary(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, policy = self._load(session)
            candidate = session.get(ModelVersion, request.version_id)
            live = session.exec(select(Deployment).where(
                Deployment.name == request.deployment, Deployment.role == "canary",
                Deployment.status == "active", Deployment.retrain_id == request.id,
                Deployment.version_id == candidate.id)).first()
        if live is None:
            live = deployment.deploy_canary(
                self.cfg, self.user, request.model_name, candidate.version,
                mode=policy.canary_mode, share=policy.canary_share, retrain_id=request.id)
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            last = session.exec(select(func.max(PredictionWindow.index)).where(
                PredictionWindow.deployment == request.deployment)).one()
            request.canary_deployment_id = live.id
            request.canary = {"mode": live.mode, "share": live.share,
                              "started_window": (last or 0) + 1, "version": candidate.version}
            retrain.move(session, request, "canary", self.user.name, **request.canary)
        return f"v{candidate.version} canary started ({live.mode}, share {live.share})"

    def canary(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, policy = self._load(session)
            verdict = canary.verdict(
                session, deployment=request.deployment,
                champion_version_id=request.champion_version_id,
                challenger_version_id=request.version_id, mode=request.canary["mode"],
                started_window=request.canary["started_window"], policy=policy)
            request.canary = {**request.canary, "verdict": verdict.to_dict()}
            session.add(request)
            if verdict.status == "pending":
                return verdict.reason
            if verdict.status == "passed":
                retrain.move(session, request, "requesting_promotion", self.user.name,
                             verdict=verdict.status, reason=verdict.reason)
                return f"canary passed: {verdict.reason}"
        self._abort(f"canary {verdict.status}: {verdict.reason}", "canary_aborted")
        return f"canary aborted ({verdict.status}): {verdict.reason}"

    def _abort(self, reason: str, state: str) -> None:
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            model = request.model_name
        deployment.remove_canary(self.cfg, self.user, model, outcome="aborted", reason=reason)
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            retrain.finish(session, request, state, self.user.name, reason)
            self._notify_owner(session, request, f"{model}: {reason}; back to the champion only")

    def requesting_promotion(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, policy = self._load(session)
            candidate = session.get(ModelVersion, request.version_id)
            pending = session.exec(select(Approval).where(
                Approval.version_id == candidate.id, Approval.target_alias == "champion",
                Approval.status == ApprovalStatus.pending.value)).first()
            if pending is None:
                gate = GateResult.from_dict(request.gate)
                evidence = {"canary": request.canary.get("verdict"),
                            "retrain_request": request.id, "trigger": request.trigger,
                            "dataset_id": request.dataset_id}
                pending = approvals.request_promotion(session, self.user, candidate, "champion",
                                                      gate, evidence=evidence)
            request.approval_id = pending.id
            note = f"promotion request #{pending.id} awaits an approver"
            model = session.get(RegisteredModel, request.model_name)
            # Only a low-risk model's policy approves on its own; any other waits for people.
            if policy.auto_promote and model.risk_tier == "low":
                approvals.approve_by_policy(session, pending.id, policy.to_dict(),
                                            model.risk_tier)
                note = f"promotion request #{pending.id} approved by the model's policy"
            retrain.move(session, request, "awaiting_approval", self.user.name,
                         approval=pending.id)
            return note

    def awaiting_approval(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            approval = session.get(Approval, request.approval_id)
            if approval.status == ApprovalStatus.pending.value:
                return f"promotion request #{approval.id} awaits an approver"
            if approval.status == ApprovalStatus.approved.value:
                retrain.move(session, request, "promoting", self.user.name,
                             approval=approval.id, approved_by=approval.decided_by)
                return f"approved by {approval.decided_by}"
            who = approval.decided_by
        self._abort(f"promotion request #{approval.id} was rejected by {who}", "rejected")
        return f"rejected by {who}"

    def promoting(self) -> str:
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            model = request.model_name
        dep = deployment.promote_canary(self.cfg, self.user, model)
        with session_scope(self.cfg.db_url) as session:
            request, _ = self._load(session)
            version = session.get(ModelVersion, dep.version_id).version
            retrain.finish(session, request, "promoted", self.user.name,
                           f"v{version} serves all traffic")
        return f"v{version} promoted: it serves all of {model}'s traffic"


def _drive(cfg: Config, user: User, request_id: int, budget: int) -> list[Step]:
    driver = _Driver(cfg, user, request_id)
    steps: list[Step] = []
    for _ in range(budget):
        with session_scope(cfg.db_url) as session:
            request = session.get(RetrainRequest, request_id)
            state, model = request.state, request.model_name
        if state in retrain.TERMINAL:
            break
        handler: Callable[[], str] = getattr(driver, state)
        try:
            note = handler()
        except Exception as exc:  # noqa: BLE001 - a failed step is recorded, and retried
            logger.error("retrain request #%s failed in %s: %s", request_id, state,
                         "".join(traceback.format_exception_only(exc)).strip())
            steps.append(Step(request_id, model, state, _failed(cfg, user, request_id, exc)))
            break
        with session_scope(cfg.db_url) as session:
            after = session.get(RetrainRequest, request_id).state
        steps.append(Step(request_id, model, state, after, note))
        if after == state:
            break
    return steps


def _failed(cfg: Config, user: User, request_id: int, exc: Exception) -> str:
    """Count a failed attempt; the request fails for good after `MAX_ATTEMPTS`."""
    text = f"{type(exc).__name__}: {exc}"[:2000]
    with session_scope(cfg.db_url) as session:
        request = session.get(RetrainRequest, request_id)
        request.attempts += 1
        request.error = text
        session.add(request)
        # Bad input (a spec the data no longer fits, a permission) will not heal by retrying.
        if request.attempts >= MAX_ATTEMPTS or isinstance(exc, ApplianceError):
            state = request.state
            retrain.finish(session, request, "failed", user.name, f"in {state}: {text}")
            alerts.notice(session, model=request.model_name, deployment=request.deployment,
                          rule="retrain", severity="warning",
                          message=f"{request.model_name}: retrain request #{request_id} failed "
                                  f"in {state}: {text}",
                          channels=alerts.Channels(cfg.alerts_log, cfg.alert_webhook))
        return request.state


def advance(
    cfg: Config, user: User, *, model: str | None = None, holder: str | None = None,
    budget: int = 16,
) -> list[Step]:
    """Advance every unfinished retrain request (or `model`'s) as far as it can go now.

    Args:
        cfg: the configuration.
        user: who acts (needs "operate"; promotion requests are theirs, so they cannot
            approve them).
        model: only this model's request (default all).
        holder: the lease holder id (default this process).
        budget: at most this many steps per request per call (default 16).
    """
    holder = holder or holder_id()
    with session_scope(cfg.db_url) as session:
        pending = [r.id for r in retrain.active(session, model)]
    steps: list[Step] = []
    for request_id in pending:
        with hold(cfg.db_url, f"retrain:{request_id}", holder=holder, ttl_s=LEASE_TTL_S) as got:
            if got:
                steps += _drive(cfg, user, request_id, budget)
    return steps
