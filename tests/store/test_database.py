"""Engines and sessions: URL handling, SQLite's settings for shared use, transaction scope."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from appliance.errors import InvalidInput
from appliance.ports import free_port
from appliance.store import get_engine, migrate, session_scope
from appliance.store.models import AuditEvent, User


def _pragma(url: str, name: str):
    with get_engine(url).connect() as conn:
        return conn.execute(text(f"PRAGMA {name}")).scalar()


def test_sqlite_file_uses_wal(sqlite_url):
    assert _pragma(sqlite_url, "journal_mode") == "wal"


def test_sqlite_waits_for_locks(sqlite_url):
    assert _pragma(sqlite_url, "busy_timeout") >= 5000


def test_sqlite_folder_is_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'store.db'}"
    migrate(url)
    assert (tmp_path / "a" / "b" / "store.db").is_file()


@pytest.mark.parametrize("url", ["not a url", "", "://nothing"])
def test_malformed_url_is_invalid_input(url):
    with pytest.raises(InvalidInput, match="database URL"):
        get_engine(url)


def test_unknown_dialect_is_invalid_input():
    with pytest.raises(InvalidInput, match="sqllite"):
        get_engine("sqllite:///store.db")


def test_sqlite_folder_that_cannot_exist_is_invalid_input(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match="file"):
        get_engine(f"sqlite:///{tmp_path / 'file' / 'sub' / 'store.db'}")


def test_unreachable_server_is_invalid_input():
    # A free port: nothing listens there, so the connection is refused at once, never hangs.
    with pytest.raises(InvalidInput, match="cannot open the metadata store"):
        migrate(f"postgresql://nobody@127.0.0.1:{free_port()}/store")


def test_error_does_not_leak_password():
    with pytest.raises(InvalidInput) as info:
        migrate(f"postgresql://nobody:s3cret@127.0.0.1:{free_port()}/store")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["postgres://u@db.example/store", "postgresql://u@db.example/store"],
    ids=["postgres", "postgresql"],
)
def test_postgres_urls_use_psycopg3(url):
    # Engines connect lazily, so no server is needed to see which driver was chosen.
    engine = get_engine(url)
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.url.host == "db.example"
    assert engine.url.database == "store"


def test_explicit_driver_is_kept():
    assert get_engine("sqlite+pysqlite:///:memory:").url.drivername == "sqlite+pysqlite"


def test_engines_are_cached(db_url):
    assert get_engine(db_url) is get_engine(db_url)


def test_session_scope_commits(db_url):
    with session_scope(db_url) as session:
        session.add(User(name="kept"))
    with Session(get_engine(db_url)) as session:
        assert session.exec(select(User.name)).all() == ["kept"]


def test_session_scope_rolls_back_on_error(db_url):
    with pytest.raises(RuntimeError, match="boom"), session_scope(db_url) as session:
        session.add(User(name="lost"))
        session.flush()  # the row reached the database: only the rollback removes it
        raise RuntimeError("boom")
    with Session(get_engine(db_url)) as session:
        assert session.exec(select(User)).all() == []


def test_session_scope_objects_survive_commit(db_url):
    # expire_on_commit=False: callers read ids and fields after the scope closed.
    with session_scope(db_url) as session:
        user = User(name="after")
        session.add(user)
    assert user.id is not None
    assert user.name == "after"


def test_concurrent_writers_on_sqlite(sqlite_url):
    """Two threads write (read-then-insert, as the audit chain does) while the other holds the
    write lock; neither may fail with 'database is locked'."""
    per_thread = 25
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(who: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with session_scope(sqlite_url) as session:
                    session.add(
                        AuditEvent(
                            actor=who,
                            action="test",
                            object_type="t",
                            object_id=str(i),
                            prev_hash=f"{who}-{i}-prev",
                            hash=f"{who}-{i}",
                        )
                    )
                    session.flush()  # takes the write lock
                    # Read inside the write transaction, then write again: lock held meanwhile.
                    session.exec(select(func.count()).select_from(AuditEvent)).one()
                    session.add(User(name=f"{who}-{i}"))
        except BaseException as exc:  # noqa: BLE001  (collected, re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(who,)) for who in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with Session(get_engine(sqlite_url)) as session:
        assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 2 * per_thread
        assert session.exec(select(func.count()).select_from(User)).one() == 2 * per_thread


def test_concurrent_engines_on_one_sqlite_file(sqlite_url):
    """A second engine on the same file (another process's view: monitor vs CLI) also waits."""
    from sqlalchemy import create_engine, event

    from appliance.store.database import _sqlite_pragmas

    other = create_engine(sqlite_url, connect_args={"check_same_thread": False})
    event.listen(other, "connect", _sqlite_pragmas)
    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with Session(other) as session:
            session.add(User(name="holder"))
            session.flush()
            locked.set()
            release.wait(10)
            session.commit()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        # Let go shortly after our write starts waiting on the lock.
        threading.Timer(0.5, release.set).start()
        with session_scope(sqlite_url) as session:
            session.add(User(name="waiter"))
    finally:
        release.set()
        holder.join(10)
        other.dispose()
    with Session(get_engine(sqlite_url)) as session:
        assert sorted(session.exec(select(User.name)).all()) == ["holder", "waiter"]
