"""The store's clock: aware UTC times, and times read through Core made so."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.store.clock import as_utc, utcnow

UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def test_utcnow_is_aware_utc():
    assert utcnow().utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(("stored", "read"), [
    (None, None),
    # SQLite keeps no zone: a naive time is the UTC it was stored as.
    (dt.datetime(2026, 1, 2, 3, 4, 5, 6), dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
    (dt.datetime(2026, 1, 2, 5, 4, 5, tzinfo=PLUS2), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
])
def test_as_utc_reads_times_as_the_models_do(stored, read):
    got = as_utc(stored)
    assert got == read
    assert got is None or got.tzinfo == UTC
