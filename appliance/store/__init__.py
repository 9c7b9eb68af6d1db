"""The metadata store: SQLModel tables, engines, sessions and Alembic migrations."""

from appliance.store.database import dispose_all, get_engine, migrate, session_scope
from appliance.store.models import utcnow

__all__ = ["dispose_all", "get_engine", "migrate", "session_scope", "utcnow"]
