"""Engines, sessions and schema migration for the metadata store.

SQLite (embedded) gets WAL, foreign keys and a busy timeout so the monitor, the CLI and the
console can share one file; PostgreSQL is used as is. The schema is only ever created by Alembic
migrations, so an embedded store and a cluster's PostgreSQL always have the same tables.

Every command calls `migrate`; when the store is already at the newest revision it answers from
one SELECT of ``alembic_version`` and the revision lines of the migration files, without
importing Alembic (a tenth of a second of every CLI command's start-up). Nor does this module
import the ORM before a session is asked for: `appliance status` reads through Core alone.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from appliance.errors import InvalidInput

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlmodel import Session

_MIGRATIONS = Path(__file__).with_name("migrations")
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _normalise(url: str) -> str:
    # psycopg 3 is the driver we ship; a bare postgresql:// would ask for psycopg2.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _sqlite_begin); this
    # is also what makes SAVEPOINTs work under pysqlite.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def redact(url: str) -> str:
    """`url` safe to print: the password masked, even when the URL does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _sqlite_begin(conn) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer committed in between (WAL snapshot upgrade); IMMEDIATE takes
    # the write lock up front, so concurrent writers wait (busy_timeout) instead of failing.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """Return the (cached) engine for `url`, creating the SQLite file's folder if needed."""
    url = _normalise(url)
    with _lock:
        if url in _engines:
            return _engines[url]
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise InvalidInput(
                f"database URL {redact(url)!r} is not a valid SQLAlchemy URL"
            ) from exc
        try:
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    folder = Path(parsed.database).expanduser().parent
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise InvalidInput(
                            f"cannot create the folder {str(folder)!r} for the SQLite store: "
                            f"{exc.strerror}"
                        ) from exc
                engine = create_engine(url, connect_args={"check_same_thread": False})
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "begin", _sqlite_begin)
            else:
                engine = create_engine(url, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise InvalidInput(
                f"database URL {redact(url)!r} names an unknown or uninstalled driver "
                f"{parsed.drivername!r}; use sqlite:///PATH or postgresql://USER@HOST/DB"
            ) from exc
        _engines[url] = engine
        return engine


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic config pointing at our migrations and `url` (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", _normalise(url).replace("%", "%%"))
    return cfg


_REVISION = re.compile(r"""^revision\b[^=\n]*=\s*["']([^"']+)["']\s*$""", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.M)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@functools.cache
def script_heads() -> frozenset[str] | None:
    """The newest revisions of our migrations, read from the files' ``revision`` and
    ``down_revision`` lines; None when a file does not state them plainly on one line each
    (then only Alembic can tell)."""
    files = sorted((_MIGRATIONS / "versions").glob("*.py"))
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in files:
        text = path.read_text()
        revision, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        parents.update(_QUOTED.findall(down[0]))
    if not files or len(revisions) != len(files):
        return None
    return frozenset(revisions - parents)


def _stored_heads(engine: Engine) -> frozenset[str] | None:
    """The revisions the database records, or None before Alembic ever ran on it.

    A cursor of the pooled DB-API connection, not a SQLAlchemy transaction: on SQLite every
    such transaction begins IMMEDIATE (`_sqlite_begin`), the write lock, which a read must not
    take. Connecting goes through the engine, so a store that cannot be reached raises
    SQLAlchemy's OperationalError as any other use of it does.
    """
    dbapi = getattr(engine.dialect, "loaded_dbapi", None) or engine.dialect.dbapi
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute("SELECT version_num FROM alembic_version")
            return frozenset(row[0] for row in cursor.fetchall())
        except dbapi.Error:
            return None
        finally:
            cursor.close()


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (nothing to do, and Alembic not
    imported, when it is there already).

    Raises:
        InvalidInput: the store cannot be opened.
    """
    engine = get_engine(url)
    try:
        heads = script_heads()
        if heads is not None and _stored_heads(engine) == heads:
            return
        from alembic import command  # deferred: only a store behind the code needs Alembic

        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise InvalidInput(
            f"cannot open the metadata store {redact(url)!r}: {exc.orig}"
        ) from exc


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    # Deferred: the ORM costs a quarter second of start-up, which a command reading through
    # SQLAlchemy Core alone (`appliance status`) does not pay.
    from sqlmodel import Session

    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def dispose_all() -> None:
    """Close every cached engine (tests, and before a process forks)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
