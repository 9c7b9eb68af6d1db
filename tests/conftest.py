"""Session-wide fixtures: an isolated appliance home, one shared local Ray, and metadata stores.

Store fixtures: every test that takes `db_url` runs on SQLite and on a real PostgreSQL.
PostgreSQL comes from `APPLIANCE_TEST_PG_URL` when set (any role allowed to CREATE DATABASE),
otherwise from one server this session starts from the distribution's binaries (see
`_pg_server`); either way each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import _pg_server
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from appliance.store import dispose_all, get_engine, migrate

# Before anything imports Ray: Ray 2.59+ writes ~/.ray/auth_token for a local cluster, so the
# whole session gets a throwaway HOME and an explicit token instead.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="appliance-test-home-"))
os.environ["HOME"] = str(_SESSION_HOME)
os.environ.setdefault("APPLIANCE_HOME", str(_SESSION_HOME / ".appliance"))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) shared by every test that asks for it."""
    import ray

    from cluster import network

    # Loopback only, as the appliance's own Ray (cluster.runtime): nothing of the suite's Ray
    # is reachable from the network.
    network.keep_local()
    # A runtime_env install that fails (tests/cluster/test_serve_envs.py) is tried once, not
    # three times, each a copy of the venv.
    os.environ.setdefault("RUNTIME_ENV_RETRY_TIMES", "1")
    if not ray.is_initialized():
        from cluster.runtime import init_local

        # A Ray of this session's own, never one a stale ray_current_cluster file names.
        init_local(2, logging_level="ERROR", log_to_driver=False,
                   runtime_env=network.local_runtime_env())
    yield ray
    ray.shutdown()


PG_URL_ENV = "APPLIANCE_TEST_PG_URL"


class _PgAdmin:
    """Creates and drops per-test databases through one superuser (or CREATEDB) connection."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._url = parsed
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        self._engine: Engine = create_engine(parsed, isolation_level="AUTOCOMMIT")

    def create(self, template: str | None = None) -> str:
        """Create a database with a unique name and return its URL.

        template: database to copy (default None: the server's empty template1).
        """
        name = f"appliance_test_{uuid.uuid4().hex[:16]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with self._engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        return self._url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Drop the database `url` names, ending any session a test left open."""
        name = make_url(url).database
        with self._engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[_PgAdmin]:
    """A PostgreSQL to create test databases in: the given URL or a server started once."""
    given = os.environ.get(PG_URL_ENV)
    if given:
        admin = _PgAdmin(given)
        yield admin
        admin.close()
        return
    bindir = _pg_server.find_bindir()
    if bindir is None:
        # CI installs Debian's postgresql (.ci/run): there a missing server is a failure.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH, "
            f"and {PG_URL_ENV} is unset: install Debian's `postgresql` package"
        )
    server = _pg_server.start(bindir)
    admin = _PgAdmin(server.admin_url)
    try:
        yield admin
    finally:
        admin.close()
        _pg_server.stop(server)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file that each test copies: copying is ~20x faster than migrating."""
    path = tmp_path_factory.mktemp("store-template") / "store.db"
    url = f"sqlite:///{path}"
    migrate(url)
    # Closing the last connection checkpoints the WAL into the main file, so one file is enough.
    get_engine(url).dispose()
    assert not path.with_name("store.db-wal").exists()
    return path


@pytest.fixture(scope="session")
def _pg_template(pg_admin: _PgAdmin) -> Iterator[str]:
    """Name of a migrated PostgreSQL database that per-test databases are cloned from."""
    url = pg_admin.create()
    migrate(url)
    # CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template.
    get_engine(url).dispose()
    yield make_url(url).database
    pg_admin.drop(url)


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _database(request, tmp_path: Path, backend: str, *, migrated: bool) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "store.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        admin: _PgAdmin = request.getfixturevalue("pg_admin")
        url = admin.create(template=request.getfixturevalue("_pg_template") if migrated else None)
    try:
        if migrated:
            # The copy is at head already, so this is only the store's own check (~10 ms).
            migrate(url)
        yield url
    finally:
        # Engines cache pooled connections per URL; the next test's database is a new one.
        dispose_all()
        if backend != "sqlite":
            admin.drop(url)


@pytest.fixture(params=_BACKENDS)
def blank_db_url(request, tmp_path) -> Iterator[str]:
    """URL of an empty database (no tables at all) on each backend, of its own for this test."""
    yield from _database(request, tmp_path, request.param, migrated=False)


@pytest.fixture(params=_BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """URL of a migrated, empty database on each backend, of its own for this test."""
    yield from _database(request, tmp_path, request.param, migrated=True)


@pytest.fixture
def sqlite_url(request, tmp_path) -> Iterator[str]:
    """URL of a migrated, empty SQLite file: for what the store sets up for SQLite only."""
    yield from _database(request, tmp_path, "sqlite", migrated=True)
