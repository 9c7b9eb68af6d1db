"""Times given on the command line: a duration (``90s``, ``30m``, ``12h``, ``7d``) or an ISO 8601
time with a zone. One parser for every option that takes one (``--since``, ``--expires``...)."""

from __future__ import annotations

import datetime as dt
import re

from appliance.errors import InvalidInput
from appliance.store.models import utcnow

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EXAMPLES = "90s, 30m, 12h, 7d"


def duration(value: str, option: str) -> dt.timedelta:
    """A positive duration such as ``48h``; InvalidInput naming `option` otherwise."""
    match = _DURATION.fullmatch(value)
    if not match or int(match[1]) == 0:
        raise InvalidInput(f"{option} {value!r} must be a positive duration ({_EXAMPLES})")
    return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def point(value: str | None, option: str, *, ago: bool) -> dt.datetime | None:
    """The time `value` names (None for None): a duration back from now (`ago`) or ahead of
    now, or an ISO 8601 time with a zone; InvalidInput naming `option` otherwise."""
    if value is None:
        return None
    if _DURATION.fullmatch(value):
        span = duration(value, option)
        return utcnow() - span if ago else utcnow() + span
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r} is neither a duration ({_EXAMPLES}) nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        raise InvalidInput(f"{option} {value!r} has no time zone; add Z or +00:00")
    return when
