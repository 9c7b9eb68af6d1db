"""The monitor service: `appliance monitor`, the one process that closes the loop.

Two threads share it. The monitor thread runs a pass (`appliance.monitor.service.run_once`:
windows, drift, late labels, alerts, retrain requests, notifications) every `interval`
seconds. The loop thread advances retrain requests (`appliance.pipelines.loop.advance`:
retraining set, training on Ray, gate, canary, promotion request, promotion), so a training
run of minutes never delays a window or an alert. Both are crash-safe: the service can be
killed at any point, with SIGKILL too, and a new one continues from the store.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.config import Config
from appliance.errors import PermissionDenied
from appliance.governance.users import require
from appliance.monitor import retrain, service
from appliance.pipelines import loop
from appliance.store import session_scope
from appliance.store.leases import holder_id
from appliance.store.models import User

logger = logging.getLogger("appliance.monitor")


@dataclasses.dataclass
class Round:
    """One round of the service: the monitor pass and the loop's steps."""

    passes: list[service.DeploymentPass]
    steps: list[loop.Step]


def may_retrain(user: User) -> bool:
    """Whether the service's principal may train and deploy (the "operate" permission)."""
    try:
        require(user, "operate")
    except PermissionDenied:
        return False
    return True


def _work_waiting(cfg: Config, deployment: str | None) -> bool:
    with session_scope(cfg.db_url) as session:
        return bool(retrain.active(session, deployment))


def _join_ray(cfg: Config) -> None:
    # Deferred: only acting on retrain requests needs Ray. The service joins the Ray that
    # serves its deployments (the persistent local head, or the configured cluster), and only
    # once there is a request to act on.
    from cluster import runtime

    runtime.ensure_ray(cfg, persistent=True)


def _check(cfg: Config, deployment: str | None) -> None:
    if deployment is not None:
        with session_scope(cfg.db_url) as session:
            service.check_deployment(session, deployment)


def run_round(cfg: Config, user: User, *, deployment: str | None = None,
              holder: str | None = None) -> Round:
    """One monitor pass, then the loop's steps, then the notifications they caused.

    Raises:
        NotFound: `deployment` names no deployment the store has ever recorded.
    """
    _check(cfg, deployment)
    holder = holder or holder_id()
    passes = service.run_once(cfg, deployment, actor=user.name, holder=holder)
    steps = []
    if may_retrain(user) and _work_waiting(cfg, deployment):
        _join_ray(cfg)
        steps = loop.advance(cfg, user, model=deployment, holder=holder)
        service.deliver(cfg, holder)
    return Round(passes, steps)


def run_forever(
    cfg: Config, user: User, *, interval: float, deployment: str | None = None,
    on_round: Callable[[Round], Any] = lambda _r: None, stop: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set).

    Args:
        cfg: the configuration.
        user: the service's principal; with "operate" it also retrains, canaries and
            requests promotions (as itself, so it can never approve them).
        interval: seconds between monitor passes.
        deployment: only this deployment (default all).
        on_round: called with what each monitor pass (and the loop steps since) did.
        stop: an event that ends the service when set (default: a new one, set by signals).

    Raises:
        NotFound: `deployment` names no deployment the store has ever recorded (checked
            before the service starts).
    """
    _check(cfg, deployment)
    stop = stop or threading.Event()
    holder = holder_id()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    steps: list[loop.Step] = []
    lock = threading.Lock()

    def drive() -> None:
        joined = False
        while not stop.is_set():
            try:
                if not _work_waiting(cfg, deployment):
                    stop.wait(min(interval, 2.0))
                    continue
                if not joined:
                    _join_ray(cfg)
                    joined = True
                done = loop.advance(cfg, user, model=deployment, holder=holder)
            except Exception:  # noqa: BLE001 - a bug in one round must not end the service
                logger.exception("retrain loop round failed")
                done = []
            with lock:
                steps.extend(done)
            # Busy while a request moves; otherwise check again soon (labels, approvals).
            stop.wait(0.2 if any(s.after != s.before for s in done) else min(interval, 2.0))

    driver = None
    if may_retrain(user):
        driver = threading.Thread(target=drive, name="retrain-loop", daemon=True)
        driver.start()
    else:
        logger.warning("user %r may not operate: monitoring only, no retraining", user.name)
    while not stop.is_set():
        started = time.monotonic()
        try:
            passes = service.run_once(cfg, deployment, actor=user.name, holder=holder)
        except Exception:  # noqa: BLE001 - a bug in one pass must not end the service
            logger.exception("monitor pass failed")
            passes = []
        with lock:
            done, steps[:] = list(steps), []
        on_round(Round(passes, done))
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    if driver is not None:
        # A step in flight is left to the next start: every step resumes where it stopped.
        driver.join(timeout=1.0)
