"""SQLAlchemy Core handles on the few tables read without the ORM.

The token check and `appliance status` run on every CLI read; building the ORM and its ~20 table
classes for them would cost a quarter second of start-up, so they query through these
lightweight clauses instead. Each names only the columns those reads use; the schema itself
stays in `appliance.store.models` (tests/store/test_core_tables.py checks that every name here
is one of its tables and columns, with the same kind of type).
"""

from __future__ import annotations

from sqlalchemy import DateTime, Integer, String, column, table


def _time(name: str):
    # Timezone-aware, like the models' UTCDateTime; `clock.as_utc` finishes the job on SQLite.
    return column(name, DateTime(timezone=True))


api_token = table(
    "apitoken",
    column("id", Integer), column("user_id", Integer), column("name", String),
    column("token_hash", String), _time("revoked_at"), _time("expires_at"),
)
users = table(
    "users",
    column("id", Integer), column("name", String), column("role", String),
    _time("disabled_at"),
)
dataset = table("dataset", column("id", Integer))
registered_model = table("registeredmodel", column("name", String))
model_version = table("modelversion", column("id", Integer), column("version", Integer))
approval = table("approval", column("id", Integer), column("status", String))
alert = table("alert", column("id", Integer), column("status", String))
deployment = table(
    "deployment",
    column("id", Integer), column("name", String), column("version_id", Integer),
    column("url", String), column("status", String), _time("started_at"),
)

ALL = (api_token, users, dataset, registered_model, model_version, approval, alert, deployment)
