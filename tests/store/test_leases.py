"""Leases in the metadata store (`appliance.store.leases`), on SQLite and PostgreSQL: one
holder at a time, taken over after expiry or at once from a dead process of this host, and held
and released by `hold`."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

from appliance.store import session_scope
from appliance.store.leases import hold, holder_id, release, try_acquire

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def _take(url, holder, at, name="monitor:credit", ttl_s=60):
    with session_scope(url) as s:
        return try_acquire(s, name, holder, ttl_s=ttl_s, now=at)


def test_one_holder_until_it_expires_and_the_holder_renews(db_url):
    other = "elsewhere:1:1"
    assert _take(db_url, "a.example:10:5", T0)
    assert not _take(db_url, other, T0 + dt.timedelta(seconds=30))
    # The holder renews for another minute from t0 + 50 s ...
    assert _take(db_url, "a.example:10:5", T0 + dt.timedelta(seconds=50))
    assert not _take(db_url, other, T0 + dt.timedelta(seconds=90))
    # ... and once that has run out, another takes it.
    assert _take(db_url, other, T0 + dt.timedelta(seconds=111))
    assert _take(db_url, "a.example:10:5", T0, name="monitor:other")
    with session_scope(db_url) as s:
        release(s, "monitor:credit", "a.example:10:5")  # not the holder: nothing happens
    assert not _take(db_url, "a.example:10:5", T0 + dt.timedelta(seconds=120))
    with session_scope(db_url) as s:
        release(s, "monitor:credit", other)
    assert _take(db_url, "a.example:10:5", T0 + dt.timedelta(seconds=120))


def test_a_dead_process_of_this_host_gives_its_lease_up_at_once(db_url):
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}:1"
    assert _take(db_url, dead, T0, ttl_s=3600)
    assert _take(db_url, holder_id(), T0 + dt.timedelta(seconds=1))
    # A live holder (this process) keeps it.
    assert not _take(db_url, dead, T0 + dt.timedelta(seconds=2))


def test_holder_id_names_this_host_and_process():
    host, pid, start = holder_id().split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert start.isdigit()


def test_hold_takes_refuses_a_second_and_releases(db_url):
    with hold(db_url, "retrain:7", holder="h:1:1", ttl_s=30) as got:
        assert got
        with hold(db_url, "retrain:7", holder="h:2:2", ttl_s=30) as second:
            assert not second
    with hold(db_url, "retrain:7", holder="h:2:2", ttl_s=30) as again:
        assert again
