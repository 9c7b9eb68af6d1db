"""The metadata store: SQLModel tables, engines, sessions and Alembic migrations.

Importing the package loads SQLAlchemy Core but not the ORM or the table classes (they load
with `appliance.store.models`), so a command that only counts rows starts faster.
"""

from appliance.store.clock import utcnow
from appliance.store.database import dispose_all, get_engine, migrate, session_scope

__all__ = ["dispose_all", "get_engine", "migrate", "session_scope", "utcnow"]
