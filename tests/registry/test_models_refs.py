"""Model references (`appliance.registry.models.resolve`): name, name:version and name@alias,
and the errors for each kind of bad reference; on SQLite and PostgreSQL."""

from __future__ import annotations

import governance_world as gw
import pytest

from appliance.errors import InvalidInput, NotFound
from appliance.registry import models
from appliance.store import session_scope


def test_model_refs(db_url, tmp_path):
    gw.people(db_url)
    mv = gw.registered_version(db_url, tmp_path)
    with session_scope(db_url) as s:
        assert models.resolve(s, "credit").id == mv.id
        assert models.resolve(s, "credit:1").id == mv.id
        with pytest.raises(NotFound, match="no 'champion' alias"):
            models.resolve(s, "credit@champion")
        with pytest.raises(NotFound, match="no model named 'nope'"):
            models.resolve(s, "nope")
        with pytest.raises(InvalidInput, match="must be a number"):
            models.resolve(s, "credit:x")
        with pytest.raises(InvalidInput, match="model name"):
            models.ensure_model(s, "Bad Name", owner="ops", team="t")
