"""Times given on the command line (`appliance.cli._times`): durations and ISO 8601 times with
a zone, and one-line refusals naming the option."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.cli._times import duration, point
from appliance.errors import InvalidInput
from appliance.store.models import utcnow


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200),
                                               ("7d", 604800)])
def test_durations(text, seconds):
    assert duration(text, "--since") == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0h", "5", "h", "1.5h", "-3d", "2w", " 3h"])
def test_a_bad_duration_names_the_option(text):
    with pytest.raises(InvalidInput, match=rf"^--expires '{text}' must be a positive duration"):
        duration(text, "--expires")


def test_a_point_is_a_duration_back_or_ahead_or_a_zoned_time():
    assert point(None, "--since", ago=True) is None
    before = utcnow()
    back = point("2h", "--since", ago=True)
    ahead = point("2h", "--expires", ago=False)
    after = utcnow()
    span = dt.timedelta(hours=2)
    assert before - span <= back <= after - span
    assert before + span <= ahead <= after + span
    when = point("2026-03-01T12:00:00+01:00", "--since", ago=True)
    assert when == dt.datetime(2026, 3, 1, 11, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(("text", "says"), [
    ("2026-03-01T12:00:00", "has no time zone; add Z or +00:00"),
    ("yesterday", "is neither a duration (90s, 30m, 12h, 7d) nor an ISO 8601 time"),
])
def test_a_bad_point_names_the_option(text, says):
    with pytest.raises(InvalidInput, match=rf"^--since '{text}' .*{says[:20]}"):
        point(text, "--since", ago=True)
