"""The Core clauses the ORM-free reads use name real tables and columns of the models."""

from __future__ import annotations

import pytest
from sqlmodel import SQLModel

import appliance.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from appliance.store import core_tables


@pytest.mark.parametrize("clause", core_tables.ALL, ids=lambda c: c.name)
def test_every_clause_is_a_table_of_the_models_with_the_same_column_types(clause):
    assert clause.name in SQLModel.metadata.tables, clause.name
    model = SQLModel.metadata.tables[clause.name]
    for col in clause.columns:
        assert col.name in model.c, f"{clause.name}.{col.name} is not a column of the models"
        there = model.c[col.name].type
        # SQLModel wraps its types (AutoString, UTCDateTime): compare with what they wrap.
        there = getattr(there, "impl_instance", there)
        assert type(col.type) is type(there), f"{clause.name}.{col.name}: {col.type!r}, {there!r}"
        assert getattr(col.type, "timezone", None) == getattr(there, "timezone", None)


def test_the_clauses_cover_every_table_they_are_named_after():
    # Guards the test above: an empty ALL would pass it vacuously.
    assert {c.name for c in core_tables.ALL} == {
        "apitoken", "users", "dataset", "registeredmodel", "modelversion", "approval", "alert",
        "deployment"}
