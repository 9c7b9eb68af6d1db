"""A throwaway PostgreSQL server for the store tests, started from the distribution's binaries.

pytest-postgresql's process fixture runs `pg_ctl` as the current user, and PostgreSQL refuses to
run as root, which is how CI runs the suite; so this module starts the server itself: `initdb`
into a temporary folder (in /dev/shm when it has room) owned by the `postgres` user, `pg_ctl
start` through `runuser` when we are root, TCP on a free port of 127.0.0.1 with trust
authentication, and the unix socket inside the temporary folder so it never clashes with a
system cluster.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from appliance.ports import free_port

# Durability costs time and a test database is thrown away anyway.
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


@dataclasses.dataclass
class PgServer:
    """A running server: `admin_url` reaches its `postgres` database as superuser."""

    bindir: Path
    root: Path
    port: int
    run_as: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def find_bindir() -> Path | None:
    """The newest folder holding `initdb` and `pg_ctl`: Debian's layout first, then PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _scratch_dir() -> str | None:
    """Shared memory when there is room: CREATE DATABASE copies a template per test, and on a
    busy disk each copy waits on writeback (1-3 s instead of 50 ms); else the default temp dir."""
    shm = "/dev/shm"
    usable = os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)
    return shm if usable and shutil.disk_usage(shm).free > 512 * 2**20 else None


def _run(cmd: list[str], root: Path, timeout: float) -> None:
    # PG* variables from the caller's shell (PGPORT, PGDATA...) would override our arguments.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    proc = subprocess.run(
        cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"{' '.join(cmd)!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}{tail}"
        )


def start(bindir: Path, *, timeout: float = 30.0) -> PgServer:
    """initdb and start a server from `bindir`; raises RuntimeError with the server log on failure.

    timeout: seconds allowed for each of initdb and start (default 30).
    """
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="appliance-pg-", dir=_scratch_dir()))
    data, log = root / "data", root / "server.log"
    try:
        if os.geteuid() == 0:
            run_as = ["runuser", "-u", "postgres", "--"]
            os.chown(root, *_postgres_ids())
        initdb = "-U postgres -A trust -E UTF8 --no-locale --no-sync --no-instructions"
        _run([*run_as, str(bindir / "initdb"), "-D", str(data), *initdb.split()], root, timeout)
        last: Exception | None = None
        # A free port can be taken between probing and binding; another try covers that race.
        for _ in range(3):
            port = free_port()
            options = [f"-p {port} -c listen_addresses=127.0.0.1"]
            options += [f"-c {s}" for s in (f"unix_socket_directories={root}", *_FAST_SETTINGS)]
            pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
            pg_ctl += ["-t", str(int(timeout)), "-o", " ".join(options), "start"]
            try:
                _run([*run_as, *pg_ctl], root, timeout + 5)
            except RuntimeError as exc:
                last = exc
                continue
            server = PgServer(bindir=bindir, root=root, port=port, run_as=run_as)
            try:
                _wait_ready(server, timeout)
            except BaseException:
                stop(server)
                raise
            return server
        raise RuntimeError(f"PostgreSQL did not start: {last}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _postgres_ids() -> tuple[int, int]:
    # PostgreSQL refuses to run as root; Debian's package creates this user to run it as.
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, but there is no 'postgres' user to run PostgreSQL as: "
            "install Debian's `postgresql` package, or set APPLIANCE_TEST_PG_URL"
        ) from None
    return owner.pw_uid, owner.pw_gid


def _wait_ready(server: PgServer, timeout: float) -> None:
    # pg_ctl -w already waits; this confirms TCP (not just the socket) accepts a login.
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=server.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(server: PgServer) -> None:
    """Stop the server (fast shutdown: ends open sessions) and delete its folder."""
    pg_ctl = [str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "fast"]
    try:
        _run([*server.run_as, *pg_ctl, "-w", "stop"], server.root, 60)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
