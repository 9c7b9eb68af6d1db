"""The store's clock: every time it keeps is timezone-aware UTC.

Kept apart from the table classes so that code reading through SQLAlchemy Core (the token
check, `appliance status`) gets the same times without importing the ORM.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """`value` as SQLModel's UTCDateTime hands a stored time back to the ORM: a naive one
    (SQLite keeps no zone; we store UTC) marked UTC, an aware one converted to UTC, None kept.
    """
    if value is None:
        return None
    if value.utcoffset() is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
