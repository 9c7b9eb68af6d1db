"""`appliance.cli._output`: how commands write.

One JSON document per `emit_json` (indented, or one line each for a stream of them), typed
records and times encoded the same way everywhere; `fail` writes one line on stderr with URL
passwords and API token secrets masked (`redact_secrets`); and once stdout is reserved, only
the command's data reaches it (a process of its own: it moves the process's fd 1).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.cli._output import data_stream, emit_json, fail, redact_secrets
from appliance.governance.users import UserPublic

SECRET = "apl_" + "Ab3_-" * 8 + "xyz"  # the shape of a real one: apl_ + token_urlsafe(32)


def test_one_document_with_records_times_paths_and_arrays(capsys):
    # Nothing reserved stdout in this process: the data stream is sys.stdout itself.
    assert data_stream() is sys.stdout
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    user = UserPublic(name="ops", role="operator", team="credit", created_at=created,
                      disabled_at=None)
    emit_json({
        "user": user,
        "naive": dt.datetime(2026, 1, 2, 3, 4, 5),  # read back from a store that drops the zone
        "path": Path("/srv/a"),
        "scores": np.array([0.5, 0.25]),
    })
    out, err = capsys.readouterr()
    assert err == ""
    assert out.endswith("}\n") and out.count("\n") > 1  # indented for a human to read
    assert json.loads(out) == {
        "user": {"name": "ops", "role": "operator", "team": "credit",
                 "created_at": "2026-01-02T03:04:05Z", "disabled_at": None},
        "naive": "2026-01-02T03:04:05+00:00",
        "path": "/srv/a",
        "scores": [0.5, 0.25],
    }


def test_line_mode_prints_one_document_per_line(capsys):
    for n in range(3):
        emit_json({"round": n, "closed": [{"window": n}]}, line=True)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"round": n, "closed": [{"window": n}]} for n in range(3)]


def test_a_value_json_cannot_hold_is_refused_by_name(capsys):
    with pytest.raises(TypeError, match="cannot encode set as JSON"):
        emit_json({"tags": {"a"}})
    assert capsys.readouterr().out == ""  # nothing half-written


@pytest.mark.parametrize(("text", "shown"), [
    ("cannot connect to postgresql://app:hunter2@db:5432/appliance",
     "cannot connect to postgresql://app:***@db:5432/appliance"),
    ("postgresql+psycopg://app:p%40ss:w0rd@db/x and redis://:pw@cache:6379",
     "postgresql+psycopg://app:***@db/x and redis://:***@cache:6379"),
    (f"token {SECRET} is unknown", "token apl_*** is unknown"),
    (f"Authorization: Bearer {SECRET}.", "Authorization: Bearer apl_***."),
    # Nothing secret: left as it is.
    ("serving at http://127.0.0.1:8000/v2 for ops@bank.example",
     "serving at http://127.0.0.1:8000/v2 for ops@bank.example"),
    ("postgresql://db/appliance", "postgresql://db/appliance"),
    ("token apl_short is a name, not a secret", "token apl_short is a name, not a secret"),
])
def test_redact_secrets(text, shown):
    assert redact_secrets(text) == shown


def test_fail_writes_one_line_on_stderr_with_secrets_masked(capsys):
    fail(f"cannot open the metadata store\n  postgresql://app:hunter2@db/x\n  (token {SECRET})")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("error: cannot open the metadata store postgresql://app:***@db/x "
                   "(token apl_***)\n")
    fail(ValueError("not a string"))
    assert capsys.readouterr().err == "error: not a string\n"


_RESERVED = """
import os, sys
from appliance.cli._output import data_stream, emit_json, reserve_stdout
reserve_stdout()
reserve_stdout()  # a second call changes nothing
print("a library's print")
sys.stdout.flush()
os.write(1, b"native code writing to fd 1\\n")
emit_json({"model": "credit"}, line=True)
data_stream().write("more data\\n")
"""


def test_once_reserved_stdout_carries_only_the_data():
    proc = subprocess.run([sys.executable, "-c", _RESERVED], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{"model": "credit"}\nmore data\n'
    assert proc.stderr.splitlines() == ["a library's print", "native code writing to fd 1"]
