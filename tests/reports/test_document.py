"""How values read in a report (`appliance.reports.document.cell`)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.reports.document import cell

PARIS = dt.timezone(dt.timedelta(hours=1))

CASES = [
    (None, "—"),
    (True, "yes"),
    (False, "no"),
    (3, "3"),
    (0.123456789, "0.1235"),
    (1234567.0, "1.235e+06"),
    ("credit", "credit"),
    (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=PARIS), "2026-01-02T02:04:05Z"),
    (dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive: stored as UTC
    ([0.5, None, "x"], "0.5, —, x"),
    ([], "—"),
    ({"lr": 0.1, "epochs": 3}, "lr=0.1, epochs=3"),
    ({}, "—"),
]


@pytest.mark.parametrize(("value", "text"), CASES, ids=[repr(v) for v, _ in CASES])
def test_cell(value, text):
    assert cell(value) == text
