"""Dataset versions (`appliance.registry.datasets`): content-addressed, loaded back as written,
resolved by name:version, and files of an unknown type refused; on SQLite and PostgreSQL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from appliance.artifacts import ArtifactStore
from appliance.errors import InvalidInput, NotFound
from appliance.registry import datasets
from appliance.store import session_scope


def test_dataset_versions_are_content_addressed(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "a")
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    with session_scope(db_url) as s:
        first = datasets.add_file(s, store, csv, "d", actor="ops")
        again = datasets.add_file(s, store, csv, "d", actor="ops")
        assert (first.version, again.id) == (1, first.id)
        other = datasets.add_table(s, store, pa.table({"a": [3]}), "d", actor="ops")
        assert other.version == 2 and other.digest != first.digest
        assert datasets.load(store, first).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
        with pytest.raises(NotFound, match="'d:9'"):
            datasets.resolve(s, "d:9")
    with pytest.raises(InvalidInput, match="does not exist"):
        datasets.read_table(tmp_path / "missing.parquet")
    with pytest.raises(InvalidInput, match="unsupported type"):
        datasets.read_table(csv.rename(tmp_path / "d.txt"))
