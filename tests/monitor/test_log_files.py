"""Prediction log files (`appliance.monitor.log_files`): journal segments and Parquet files read
alike, dot files never seen, and segments a dead writer left open published cut at their last
whole message, while a live writer's stays put. Real files and real `flock`s."""

from __future__ import annotations

import fcntl
import os

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from appliance.monitor.log_files import (
    OPEN_PREFIX,
    complete_prefix,
    read_log,
    read_schema,
    recover_segments,
    visible,
    write_synced,
)

ROWS = pa.table({"request_id": ["a", "b"], "score": [0.1, 0.9]})


def _stream(*tables: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, ROWS.schema) as writer:
        for table in tables:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_segments_and_parquet_files_read_alike_and_dot_files_stay_hidden(tmp_path):
    segment = tmp_path / "00000000000000000001-w1-00000001.arrows"
    segment.write_bytes(_stream(ROWS))
    single = tmp_path / "00000000000000000002-req.parquet"
    pq.write_table(ROWS, single)
    (tmp_path / f"{OPEN_PREFIX}00000000000000000003-w2-00000001.arrows").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a log")
    assert visible(tmp_path) == [segment, single]
    assert visible(tmp_path / "absent") == []
    for path in (segment, single):
        assert read_log(path).equals(ROWS)
        assert read_log(path, ["score"]).column_names == ["score"]
        assert read_schema(path) == ROWS.schema


def test_complete_prefix_stops_at_a_torn_message():
    whole = _stream(ROWS, ROWS)
    # The 8-byte end-of-stream marker is no message: a replica's segment never has one.
    assert complete_prefix(whole) == (len(whole) - 8, 2)
    one = _stream(ROWS)
    torn = whole[: len(one) + 20]  # cut inside the second batch
    end, batches = complete_prefix(torn)
    assert batches == 1 and end <= len(one)
    assert complete_prefix(b"\x00garbage") == (0, 0)
    assert complete_prefix(b"") == (0, 0)


def test_a_dead_writers_segment_is_published_cut_and_an_empty_one_removed(tmp_path):
    name = "00000000000000000005-w1-00000002.arrows"
    torn = _stream(ROWS, ROWS)[:-30]
    (tmp_path / f"{OPEN_PREFIX}{name}").write_bytes(torn)
    (tmp_path / f"{OPEN_PREFIX}00000000000000000006-w9-00000001.arrows").write_bytes(b"\x00" * 8)
    assert recover_segments(tmp_path) == [tmp_path / name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert read_log(tmp_path / name).equals(ROWS)
    assert recover_segments(tmp_path) == []  # nothing left to do, and safe to run again
    assert recover_segments(tmp_path / "absent") == []


def test_a_live_writers_segment_is_left_alone(tmp_path):
    path = tmp_path / f"{OPEN_PREFIX}00000000000000000007-w3-00000001.arrows"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write_synced(fd, _stream(ROWS))
        assert recover_segments(tmp_path) == []
        assert path.exists()
    finally:
        os.close(fd)  # the writer dies: its lock goes with it
    assert [p.name for p in recover_segments(tmp_path)] == [path.name[len(OPEN_PREFIX):]]


@pytest.mark.parametrize("size", [1, 70_000])
def test_write_synced_writes_everything(tmp_path, size):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_synced(fd, memoryview(b"x" * size))
    finally:
        os.close(fd)
    assert path.stat().st_size == size
