"""`appliance feedback add` (appliance/cli/feedback.py) against a deployment whose predictions
were logged through the real prediction log (`loop_world`): the `FeedbackPublic` document,
the file it writes in the feedback log format, labels the monitor's next pass joins to the
served rows, and the refusals of a file that is not a labels file (nothing written then)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import loop_world as lw
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_home import invoke, one_error_line, refusal, run_cli, use_home

from appliance.governance.users import issue_token
from appliance.monitor import service
from appliance.monitor.feedback import FEEDBACK_SCHEMA
from appliance.monitor.label_delivery import FeedbackPublic
from appliance.store import dispose_all, session_scope


@pytest.fixture(scope="module")
def world(tmp_path_factory, _sqlite_template):
    """`loop_world`'s deployment "scorer" with three requests of four rows logged, their true
    labels, and the tokens of its operator and approver."""
    home = tmp_path_factory.mktemp("feedback-cli")
    shutil.copyfile(_sqlite_template, home / "store.db")
    w = lw.make_world(home)
    truth = w.serve("req", requests=3, rows_per_request=4, seed=5)
    with session_scope(w.cfg.db_url) as s:
        tokens = {name: issue_token(s, name, "app", actor="admin") for name in ("ops", "risk")}
    dispose_all()
    return w, truth, tokens


@pytest.fixture
def as_ops(world, monkeypatch):
    w, _, tokens = world
    use_home(monkeypatch, w.cfg, token=tokens["ops"])
    return w


def _files(w) -> list[Path]:
    return sorted((w.cfg.artifacts / "feedback" / w.deployment).glob("*.parquet"))


def test_labels_land_in_the_log_and_the_monitor_joins_them(world, as_ops, tmp_path):
    w, truth, _ = world
    labels = tmp_path / "labels.csv"
    lines = [f"{rid},{row},{y}" for rid, ys in truth for row, y in enumerate(ys)]
    labels.write_text("\n".join(["request_id,row,label", *lines]) + "\n")
    res = invoke(["feedback", "add", labels, "--deployment", "scorer", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = FeedbackPublic.model_validate_json(res.stdout)
    assert (doc.deployment, doc.rows) == ("scorer", 12)
    written = pq.read_table(doc.path)
    assert written.schema == FEEDBACK_SCHEMA and _files(w) == [Path(doc.path)]
    assert written.column("label").to_pylist() == [int(y) for _, ys in truth for y in ys]
    # The monitor closes the window of the logged requests and joins every label to its row:
    # live accuracy is the served answers' agreement with the labels delivered.
    served = np.concatenate([lw.draw(4, 5 * 1000 + r)["score"] >= 0.5 for r in range(3)])
    (done,) = service.run_once(w.cfg, "scorer", deliver=False)
    dispose_all()
    assert done.error is None and done.labelled_rows == 12
    (window,) = done.relabelled
    assert window.labelled_rows == 12
    assert window.accuracy == pytest.approx(np.mean(served == np.concatenate(
        [ys for _, ys in truth])))


def test_without_a_row_column_each_label_is_its_requests_first_row(world, as_ops, tmp_path):
    w, truth, _ = world
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"request_id": ["req-r001"], "label": [1]}), labels)
    res = invoke(["feedback", "add", labels, "--deployment", "scorer", "--json=rows,path"])
    assert res.exit_code == 0 and res.stderr == "", (res.output, res.exception)
    doc = json.loads(res.stdout)
    assert list(doc) == ["rows", "path"] and doc["rows"] == 1
    # Without --json there is no document: nothing on stdout, the labels written all the same.
    before = _files(w)
    res = invoke(["feedback", "add", labels, "--deployment", "scorer"])
    assert (res.exit_code, res.stdout) == (0, "") and len(_files(w)) == len(before) + 1
    assert pq.read_table(doc["path"]).select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": "req-r001", "row": 0, "label": 1}]


@pytest.mark.parametrize(("content", "says"), [
    ("request_id,row\nreq-r000,0\n", "lacks column(s) ['label']"),
    ("row,label\n0,1\n", "lacks column(s) ['request_id']"),
    ("request_id,row,label\nreq-r000,0,yes\n", "'label' must be integers"),
    ("request_id,row,label\nreq-r000,0,0.5\n", "'label' must be integers"),
    ("request_id,row,label\nreq-r000,first,1\n", "'row' must be integers"),
    ("request_id,row,label\nreq-r000,-1,1\n", "'row' must be non-negative"),
    ("request_id,row,label\nreq-r000,0,\nreq-r000,1,1\n", "'label' has 1 empty value(s)"),
    ("request_id,row,label\nreq-r000,,1\n", "'row' has 1 empty value(s)"),
])
def test_a_file_that_is_no_labels_file_is_refused_and_nothing_written(
        world, as_ops, tmp_path, content, says):
    w = world[0]
    before = _files(w)
    labels = tmp_path / "labels.csv"
    labels.write_text(content)
    message = refusal(invoke(["feedback", "add", labels, "--deployment", "scorer"]))
    assert message.startswith(f"feedback file {str(labels)!r}") and says in message
    assert _files(w) == before


def test_a_missing_file_or_option_exits_2_with_one_line(world, as_ops, tmp_path):
    w, _, tokens = world
    line = one_error_line(run_cli(["feedback", "add", tmp_path / "none.csv", "--deployment",
                                   "scorer"], w.cfg, token=tokens["ops"]))
    assert f"feedback file {str(tmp_path / 'none.csv')!r} does not exist or is not a file" in line
    (tmp_path / "labels.txt").write_text("request_id,label\nr,1\n")
    res = invoke(["feedback", "add", tmp_path / "labels.txt", "--deployment", "scorer"])
    assert "has an unsupported type; accepted:" in refusal(res)
    res = invoke(["feedback", "add", tmp_path / "labels.txt"])
    assert res.exit_code == 2 and "Missing option '--deployment'" in res.output
