"""A small world of the monitor tests' own (not the credit stream): a store with one deployed
model whose "model" is a fixed logistic rule, traffic logged through the real prediction log,
and labels delivered through the real feedback writer.

Features: x1, x2 ~ N(shift, spread) and c in {a, b}; the truth is
y ~ Bernoulli(sigmoid(3 * (w . x))) with w turning from (1, -1) (rule 0) towards (-1, -1) as
`concept` goes from 0 to 1. The deployed model scores sigmoid(3 * (x1 - x2)), the rule-0 truth,
so it is calibrated without drift, loses accuracy under concept drift, and keeps it (and its
calibration) under a shift of the inputs alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.governance.users import create_user
from appliance.monitor import windows
from appliance.monitor.drift import fit_reference
from appliance.monitor.estimate import check_calibration
from appliance.monitor.feedback import write_feedback
from appliance.monitor.metrics import binary_metrics
from appliance.monitor.rules import DEFAULT_RULES
from appliance.registry import datasets, models
from appliance.store import migrate, session_scope
from appliance.store.models import (
    Dataset,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RequestIndex,
    Run,
    User,
)

FEATURES = ["x1", "x2", "c"]
CATEGORICAL = ["c"]
PROTECTED = "group"
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, tzinfo=UTC)


def draw(n: int, seed: int, *, shift: float = 0.0, concept: float = 0.0,
         spread: float = 1.0) -> dict[str, np.ndarray]:
    """`n` rows of the world: features, the true label `y`, and the model's score.

    `spread` scales the inputs' standard deviation: below 1 it crowds them near the decision
    boundary, a covariate shift that lowers accuracy while the scores stay calibrated.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, spread, n)
    x2 = rng.normal(shift, spread, n)
    c = np.where(rng.random(n) < 0.5 + 0.4 * min(abs(shift), 1.0), "b", "a").astype(object)
    angle = concept * np.pi / 2
    w1, w2 = np.cos(angle) - np.sin(angle), -np.cos(angle) - np.sin(angle)
    truth = 1 / (1 + np.exp(-3 * (w1 * x1 + w2 * x2) / np.sqrt(2)))
    y = (rng.random(n) < truth).astype(np.int64)
    score = (1 / (1 + np.exp(-3 * (x1 - x2) / np.sqrt(2)))).astype(np.float32)
    # The protected attribute, drawn last (the other columns stay as they were): group "b"
    # leans to high x1, so the model (which never sees it) says 1 more often for it.
    group = np.where(rng.random(n) < 0.3 + 0.4 * (x1 > 0), "b", "a").astype(object)
    return {"x1": x1, "x2": x2, "c": c, "y": y, "score": score, "group": group}


@dataclasses.dataclass
class World:
    """A store with model `model` v1 deployed as `deployment`, and the people around it."""

    cfg: Config
    model: str
    deployment: str
    ops: User
    risk: User
    version: ModelVersion
    clock: itertools.count

    def log(self, rows: dict[str, np.ndarray], request_id: str, *, version: int | None = None,
            at: dt.datetime | None = None, shadow: bool = False) -> None:
        """Log one served request through the real prediction log."""
        from cluster.serve._prediction_log import PredictionLog

        when = at or T0 + dt.timedelta(seconds=next(self.clock))
        ns = int(when.timestamp() * 1e9)
        # The group is logged beside the features, as serving's log_columns logs it.
        log = PredictionLog(self.cfg.artifacts, deployment=self.deployment, model=self.model,
                            version=str(version or self.version.version), features=FEATURES,
                            categorical=CATEGORICAL, extra=[PROTECTED], clock=lambda: ns)
        columns = {f: rows[f] for f in [*FEATURES, PROTECTED] if f in rows}
        log.write(request_id, columns, (rows["score"] >= 0.5).astype(np.int64), rows["score"],
                  shadow=shadow)

    def serve(self, prefix: str, requests: int, rows_per_request: int, seed: int, *,
              version: int | None = None, at: dt.datetime | None = None,
              **drift: float) -> list[tuple[str, np.ndarray]]:
        """Log `requests` requests (the r-th at `at` + r seconds when `at` is given, else on the
        world's clock); return (request id, true labels) for each."""
        truth = []
        for r in range(requests):
            rows = draw(rows_per_request, seed * 1000 + r, **drift)
            request_id = f"{prefix}-r{r:03d}"
            when = at + dt.timedelta(seconds=r) if at is not None else None
            self.log(rows, request_id, version=version, at=when)
            truth.append((request_id, rows["y"]))
        return truth

    def label(self, truth: list[tuple[str, np.ndarray]]) -> None:
        """Deliver the true labels of these requests through the real feedback writer."""
        for request_id, y in truth:
            write_feedback(self.cfg.artifacts, self.deployment, request_id,
                           np.arange(len(y)), y)


def config(home: Path, **changes) -> Config:
    home = Path(home)
    base = Config(home=home, db_url=f"sqlite:///{home / 'store.db'}", artifacts=home / "art",
                  alert_rules=DEFAULT_RULES)
    return dataclasses.replace(base, **changes)


def make_world(home: Path, *, model: str = "scorer", **config_changes) -> World:
    """A migrated store with users, model v1 (profile, calibration, metrics) and a deployment."""
    cfg = config(home, **config_changes)
    migrate(cfg.db_url)
    store = ArtifactStore(cfg.artifacts)
    ref = draw(5000, seed=1)
    hold = draw(3000, seed=2)
    cols = {f: ref[f] for f in FEATURES}
    profile = store.put_bytes(fit_reference(cols, CATEGORICAL, ref["score"],
                                            (ref["score"] >= 0.5).astype(np.int64)))
    metrics = binary_metrics(hold["y"], (hold["score"] >= 0.5).astype(np.int64), hold["score"])
    calibration = {**check_calibration(hold["score"].astype(np.float64), hold["y"]).to_dict(),
                   "threshold": 0.5}
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name, team="risk-models")
        risk = create_user(session, "risk", "approver", actor=admin.name)
        table = pa.table({**cols, "y": ref["y"]})
        ds = datasets.add_table(session, store, table, f"{model}-train", actor=ops.name)
        models.ensure_model(session, model, owner=ops.name, team=ops.team)
        run = models.start_run(session, model=model, dataset=ds,
                               spec={"model": model, "dataset": ds.name, "label": "y"},
                               params={}, seed=0, actor=ops.name)
        models.finish_run(session, run, metrics=metrics, device="cpu")
        version = models.register_version(
            session, run=run, digest=store.put_bytes(b"not a real bundle"),
            profile_digest=profile, metrics=metrics, features=FEATURES,
            categorical=CATEGORICAL, label="y", actor=ops.name, calibration=calibration)
        session.add(Deployment(name=model, model_name=model, version_id=version.id,
                               url="http://127.0.0.1:1", created_by=ops.name, started_at=T0))
    return World(cfg, model, model, ops, risk, version, itertools.count())


def log_rows(artifacts: Path, deployment: str, request_id: str, n: int, *, at: dt.datetime,
             version: int | str = 1, shadow: bool = False, seed: int = 0, model: str = "scorer",
             **drift: float) -> dict[str, np.ndarray]:
    """Log one request of `n` rows at `at` through the real prediction log; return its rows."""
    from cluster.serve._prediction_log import PredictionLog

    rows = draw(n, seed, **drift)
    ns = int(at.timestamp() * 1e9)
    log = PredictionLog(artifacts, deployment=deployment, model=model, version=str(version),
                        features=FEATURES, categorical=CATEGORICAL, clock=lambda: ns)
    log.write(request_id, {f: rows[f] for f in FEATURES},
              (rows["score"] >= 0.5).astype(np.int64), rows["score"], shadow=shadow)
    return rows


def log_segment(artifacts: Path, deployment: str, requests: list[tuple[str, int, bool]], *,
                at: dt.datetime, version: int | str = 1, seed: int = 0,
                model: str = "scorer") -> None:
    """Log `requests`, (request id, rows, shadow) each, through a real replica buffer into one
    journal segment, as a replica does between two publishes (each a millisecond after the
    last, from `at`)."""
    from cluster.serve._log_buffer import PredictionLogBuffer
    from cluster.serve._prediction_log import PredictionLog

    start = int(at.timestamp() * 1e9)
    ticks = iter(range(start, start + 10**6 * (len(requests) + 1), 10**6))
    log = PredictionLog(artifacts, deployment=deployment, model=model, version=str(version),
                        features=FEATURES, categorical=CATEGORICAL, clock=lambda: next(ticks))
    with PredictionLogBuffer(log, flush_interval_s=3600.0, max_file_rows=10**6) as buffer:
        for i, (request_id, n, shadow) in enumerate(requests):
            rows = draw(n, seed + i)
            buffer.append(request_id, {f: rows[f] for f in FEATURES},
                          (rows["score"] >= 0.5).astype(np.int64), rows["score"], shadow=shadow)


def add_version(world: World, *, shift: float = 0.0, seed: int = 3) -> ModelVersion:
    """Register the next version of the world's model, with a reference profile of its own
    fitted on inputs shifted by `shift` (the same rule, metrics and calibration as v1)."""
    store = ArtifactStore(world.cfg.artifacts)
    ref = draw(5000, seed, shift=shift)
    profile = store.put_bytes(fit_reference({f: ref[f] for f in FEATURES}, CATEGORICAL,
                                            ref["score"], (ref["score"] >= 0.5).astype(np.int64)))
    with session_scope(world.cfg.db_url) as session:
        first = session.get(ModelVersion, world.version.id)
        run = session.get(Run, first.run_id)
        ds = session.get(Dataset, run.dataset_id)
        again = models.start_run(session, model=world.model, dataset=ds, spec=run.spec, params={},
                                 seed=seed, actor=world.ops.name)
        models.finish_run(session, again, metrics=first.metrics, device="cpu")
        return models.register_version(
            session, run=again, digest=store.put_bytes(f"bundle {seed}".encode()),
            profile_digest=profile, metrics=first.metrics, features=FEATURES,
            categorical=CATEGORICAL, label="y", actor=world.ops.name,
            calibration=first.calibration)


def add_deployment(world: World, name: str) -> World:
    """A second deployment of the world's model v1, logging into its own folder."""
    with session_scope(world.cfg.db_url) as session:
        session.add(Deployment(name=name, model_name=world.model, version_id=world.version.id,
                               url="http://127.0.0.1:2", created_by=world.ops.name,
                               started_at=T0))
    return dataclasses.replace(world, deployment=name)


def close_all(db_url: str, predictions_root: Path, deployment: str,
              policy: windows.WindowPolicy, now: dt.datetime) -> list[PredictionWindow]:
    """Close every window that is due, as the monitor does (each committed, then cleaned up)."""
    closed = []
    while True:
        with session_scope(db_url) as session:
            got = windows.close_next(session, predictions_root, deployment, policy, now)
            if got is None:
                return closed
            closed.append(got[0])
        windows.finish_close(predictions_root, deployment, got[0].index)


def window_requests(db_url: str, deployment: str) -> dict[int, list[str]]:
    """Window index -> the request ids the request index holds for it, sorted."""
    with session_scope(db_url) as session:
        rows = session.exec(
            select(PredictionWindow.index, RequestIndex.request_id)
            .join(RequestIndex, RequestIndex.window_id == PredictionWindow.id)
            .where(PredictionWindow.deployment == deployment)
        ).all()
    out: dict[int, list[str]] = {}
    for index, request_id in rows:
        out.setdefault(index, []).append(request_id)
    return {k: sorted(v) for k, v in sorted(out.items())}


def monitor_until(cfg: Config, stop: str, ready: str, now: dt.datetime) -> dict[str, Any]:
    """Run monitor passes until the file `stop` exists, then one more (a process of its own:
    started with the spawn context). Touches `ready` once its first pass is done."""
    from appliance.monitor import service

    closed, skipped, errors, passes = 0, 0, [], 0
    while True:
        last = Path(stop).exists()
        for result in service.run_once(cfg, now=now, deliver=False):
            closed += len(result.closed)
            skipped += result.skipped is not None
            if result.error:
                errors.append(result.error)
        passes += 1
        Path(ready).touch()
        if last:
            return {"closed": closed, "skipped": skipped, "errors": errors, "passes": passes}


def tree_world(home: Path, db_url: str) -> tuple[World, Any]:
    """`make_world` with its model v1 backed by a real XGBoost bundle (8 rounds), and two
    requests logged: "first" (4 rows) in a closed window, "second" (2 rows) still pending.
    Returns the world and the bundle."""
    import xgboost  # deferred: only the explanation tests need trees

    from cluster.bundle import ModelBundle, Preprocessor

    w = make_world(home, db_url=db_url)
    train = draw(400, seed=1)
    cols = {f: train[f] for f in FEATURES}
    pre = Preprocessor.fit(cols, CATEGORICAL)
    booster = xgboost.train({"max_depth": 2, "objective": "binary:logistic", "nthread": 1,
                             "seed": 0}, xgboost.DMatrix(pre.transform(cols), label=train["y"]),
                            num_boost_round=8)
    bundle = ModelBundle(pre, booster, 0, 0, "y", kind="xgboost")
    digest = ArtifactStore(w.cfg.artifacts).put_bytes(bundle.to_bytes())
    with session_scope(w.cfg.db_url) as s:
        version = s.get(ModelVersion, w.version.id)
        version.digest = digest
        s.add(version)
    w.log(draw(4, 11), "first", at=T0)
    w.log(draw(2, 12), "second", at=T0 + dt.timedelta(seconds=1))
    close_all(w.cfg.db_url, w.cfg.predictions_dir, w.deployment,
              windows.WindowPolicy(rows=4, seconds=None), T0 + dt.timedelta(seconds=2))
    return w, bundle
