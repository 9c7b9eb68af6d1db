"""Ground-truth labels in the feedback log format (`appliance.monitor.feedback`): one Parquet
file per delivery, named by time, never seen half-written, never outside its folder."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.errors import InvalidInput
from appliance.monitor.feedback import FEEDBACK_SCHEMA, write_feedback

NOW_NS = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z


def test_one_file_per_delivery_with_one_id_for_all_rows(tmp_path):
    path = write_feedback(tmp_path, "credit", "req-1", [0, 1, 2], np.array([1, 0, 1]),
                          clock=lambda: NOW_NS)
    assert path.parent == tmp_path / "feedback" / "credit"
    assert path.name.startswith(f"{NOW_NS:020d}-") and path.suffix == ".parquet"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    table = pq.read_table(path)
    assert table.schema == FEEDBACK_SCHEMA
    assert table["request_id"].to_pylist() == ["req-1"] * 3
    assert table["label"].to_pylist() == [1, 0, 1] and table["row"].to_pylist() == [0, 1, 2]
    # Microseconds, truncated.
    assert table["ts"][0].as_py() == dt.datetime(2026, 1, 1, 0, 0, 0, 123456,
                                                 tzinfo=dt.timezone.utc)


def test_arrow_columns_are_cast_to_the_log_types(tmp_path):
    path = write_feedback(tmp_path, "credit", pa.chunked_array([["a", "b"]]),
                          pa.array([3, 4], pa.int64()), pa.array([1, 2], pa.int8()))
    table = pq.read_table(path)
    assert table.schema == FEEDBACK_SCHEMA
    assert table.to_pydict()["request_id"] == ["a", "b"]
    assert table.to_pydict()["label"] == [1, 2]
    # A second delivery is a second file.
    write_feedback(tmp_path, "credit", "c", [0], [1])
    assert len(list(path.parent.glob("*.parquet"))) == 2


@pytest.mark.parametrize("deployment", ["../escape", "a/b", ""])
def test_a_deployment_name_cannot_leave_the_feedback_folder(tmp_path, deployment):
    with pytest.raises(InvalidInput, match="deployment name"):
        write_feedback(tmp_path, deployment, "r", [0], [1])
    assert not (tmp_path / "escape").exists()
