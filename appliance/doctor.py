"""`appliance doctor`: check that a node is fit to run the appliance, and say what is not.

Each check returns a `Check`: ``ok`` (nothing to do), ``warn`` (worth a look; the node works) or
``fail`` (fix it: `doctor` exits 1). Checks never change anything: the store is not migrated,
Ray is not started or joined (its processes are read from /proc), and the only file written is
a probe in the artifact store, removed at once.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, computed_field
from sqlalchemy import make_url, text
from sqlmodel import Session

from appliance.config import Config
from appliance.governance import audit
from appliance.store.database import alembic_config, get_engine, redact

RAY_FLOOR = (2, 55)
# Free space below either limit is a warning: windows, bundles and logs keep arriving.
DISK_MIN_FREE_BYTES = 2 * 1024**3
DISK_MIN_FREE_SHARE = 0.05
CLOCK_SKEW_LIMIT_S = 5.0

OK, WARN, FAIL = "ok", "warn", "fail"


class Check(BaseModel, frozen=True):
    """One check's verdict: `name` (e.g. ``ray.ports``), `status` and what was found."""

    name: str
    status: str
    detail: str


class Report(BaseModel, frozen=True):
    """Every check that ran, in order; `ok` is False when any failed."""

    checks: list[Check]

    @computed_field
    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def findings(self) -> list[Check]:
        return [c for c in self.checks if c.status != OK]


def _check(name: str, status: str, detail: str) -> Check:
    return Check(name=name, status=status, detail=detail)


def _version(text_: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text_.split(".")[:2] if p.isdigit())


def check_ray_version() -> Check:
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return Check(name="ray.version", status=FAIL, detail="Ray is not installed")
    if _version(version) < RAY_FLOOR:
        floor = ".".join(map(str, RAY_FLOOR))
        return _check("ray.version", FAIL, f"Ray {version} is older than the floor {floor} "
                     "(token authentication and the fixes the appliance relies on)")
    return _check("ray.version", OK, f"Ray {version}")


def check_ray_head(cfg: Config) -> list[Check]:
    """Auth and listening sockets of the local head (embedded mode only)."""
    from cluster import head  # /proc only: no Ray import

    if cfg.ray_address:
        return [_check("ray.ports", OK, f"a configured cluster ({cfg.ray_address}): its bind "
                      "addresses and TLS are the cluster's ([ray] in the config)")]
    address = head.recorded_address(cfg.home)
    if address is None or not head.reachable(address):
        return [_check("ray.ports", OK, "no local Ray head is running")]
    procs = head.head_processes(address)
    checks = []
    gcs = [p for p in procs if Path(p.argv[0]).name == "gcs_server"]
    modes = set()
    for p in gcs:
        try:
            environ = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        modes |= {e.split(b"=", 1)[1].decode() for e in environ
                  if e.startswith(b"RAY_AUTH_MODE=")}
    if modes and modes != {"token"}:
        checks.append(_check("ray.auth", FAIL, f"the local head at {address} runs with "
                            f"RAY_AUTH_MODE={sorted(modes)}: anyone who reaches it may use it; "
                            "`appliance down` and deploy again"))
    elif not modes:
        checks.append(_check("ray.auth", FAIL, f"the local head at {address} runs without "
                            "RAY_AUTH_MODE=token"))
    else:
        checks.append(_check("ray.auth", OK, "token authentication"))
    wide = [s for s in head.listening(p.pid for p in procs) if not s.loopback]
    if wide:
        shown = ", ".join(f"{s.host}:{s.port} (pid {s.pid})" for s in wide[:8])
        checks.append(_check("ray.ports", FAIL, f"the local head listens beyond loopback: "
                            f"{shown}"))
    else:
        checks.append(_check("ray.ports", OK, f"the local head at {address} listens on "
                            "loopback only"))
    return checks


def check_database(cfg: Config) -> Check:
    url = redact(cfg.db_url)
    database = make_url(cfg.db_url).database if cfg.db_url.startswith("sqlite") else None
    if database and database != ":memory:" and not Path(database).is_file():
        # Connecting would create an empty one: a check must not.
        return _check("store.reachable", FAIL, f"no metadata store at {database}: run "
                      "`appliance init`")
    try:
        engine = get_engine(cfg.db_url)
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # any driver error means the same: not reachable
        return _check("store.reachable", FAIL, f"cannot reach the metadata store {url}: "
                     f"{type(exc).__name__}: {exc}".splitlines()[0])
    head_rev = ScriptDirectory.from_config(alembic_config(cfg.db_url)).get_current_head()
    if current != head_rev:
        return _check("store.migrations", FAIL, f"the metadata store {url} is at migration "
                     f"{current or 'none'}, the code expects {head_rev}: run any `appliance` "
                     "command as an admin to migrate")
    return _check("store.migrations", OK, f"{url} at migration {current}")


def check_artifacts(cfg: Config) -> list[Check]:
    root = Path(cfg.artifacts)
    checks = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
            pass
        checks.append(_check("artifacts.writable", OK, str(root)))
    except OSError as exc:
        checks.append(_check("artifacts.writable", FAIL, f"cannot write in {root}: {exc}"))
        return checks
    usage = shutil.disk_usage(root)
    share = usage.free / usage.total if usage.total else 0.0
    detail = f"{usage.free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB"
    low = usage.free < DISK_MIN_FREE_BYTES or share < DISK_MIN_FREE_SHARE
    checks.append(_check("artifacts.disk", WARN if low else OK,
                        f"{detail} ({share:.0%}){': nearly full' if low else ''}"))
    return checks


def check_audit(cfg: Config) -> Check:
    try:
        with Session(get_engine(cfg.db_url)) as session:
            result = audit.health(session, cfg)
    except Exception as exc:  # a key refused (mode), or the store check's reason
        return _check("audit.chain", FAIL, f"could not check the audit log: "
                      f"{type(exc).__name__}: {exc}".splitlines()[0])
    if not result.ok:
        where = f"at event {result.broken_at}" if result.broken_at else "against its checkpoint"
        return _check("audit.chain", FAIL, f"the audit chain is broken {where}: {result.reason}")
    lag = f"; {'; '.join(result.findings)}" if result.findings else ""
    return _check("audit.chain", WARN if result.findings else OK,
                  f"{result.events} events, head {result.head[:16]}, checkpoint of "
                  f"{result.checkpoint_events} events{lag}")


def _gpus_expected(cfg: Config) -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return bool(cfg.serving.num_gpus) or bool(visible and visible not in ("-1", "")) or any(
        Path("/dev").glob("nvidia[0-9]*"))


def check_gpus(cfg: Config) -> Check:
    if not _gpus_expected(cfg):
        return _check("gpu.nvml", OK, "no GPU expected (no /dev/nvidia*, serving num_gpus = 0)")
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVMLError and friends: the driver is not usable
        return _check("gpu.nvml", FAIL, f"GPUs are expected but NVML does not answer: {exc}")
    if count == 0:
        return _check("gpu.nvml", FAIL, "GPUs are expected but NVML sees none")
    driver = driver.decode() if isinstance(driver, bytes) else driver
    return _check("gpu.nvml", OK, f"{count} GPU(s), driver {driver}")


def check_clock(cfg: Config) -> Check:
    engine = get_engine(cfg.db_url)
    if engine.dialect.name != "postgresql":
        return _check("clock.skew", OK, "embedded store: the database shares this clock")
    try:
        with engine.connect() as conn:
            before = time.time()
            db_now = conn.execute(text("SELECT now()")).scalar_one()
            after = time.time()
    except Exception as exc:  # the store check names why
        return _check("clock.skew", WARN, f"could not read the database's clock: "
                     f"{type(exc).__name__}")
    local = dt.datetime.fromtimestamp((before + after) / 2, dt.timezone.utc)
    skew = abs((db_now - local).total_seconds()) - (after - before) / 2
    if skew > CLOCK_SKEW_LIMIT_S:
        return _check("clock.skew", FAIL, f"this node's clock is {skew:.1f} s off the "
                     f"database's (limit {CLOCK_SKEW_LIMIT_S:g} s): windows, expiries and "
                     "the audit log's times depend on it; fix NTP")
    return _check("clock.skew", OK, f"{max(skew, 0.0):.2f} s off the database's clock")


def run(cfg: Config) -> Report:
    """Run every check against `cfg`'s node and store."""
    checks: list[Check] = [check_ray_version(), *check_ray_head(cfg)]
    store = check_database(cfg)
    checks.append(store)
    checks += check_artifacts(cfg)
    later: list[Callable[[Config], Check]] = [check_gpus]
    if store.status == OK:
        later = [check_audit, check_clock, *later]
    checks += [fn(cfg) for fn in later]
    return Report(checks=checks)
