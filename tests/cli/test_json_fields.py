"""``--json`` and ``--json=FIELDS`` (`appliance.cli._json_fields`): the argv rewrite before
parsing, a record's field names, the option's checks, and the document cut to the fields
asked for.

tests/cli/test_json_schemas.py holds every record's golden schema and runs one selection end
to end (`data list`, `data show`); here: the parts one by one, the names `--json=` accepts
against the schema every record declares, and `drift compute` (a command that needs no store).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing

import pytest
import typer
from json_records import json_commands
from pydantic import BaseModel, Field, TypeAdapter, computed_field
from typer.core import TyperCommand
from typer.testing import CliRunner

import appliance.cli._json_fields as jf
from appliance.cli._json_fields import META_KEY, json_option, record_fields, select, split_fields
from appliance.cli._output import emit_json
from appliance.cli.main import app
from appliance.errors import ExitCode, InvalidInput, exit_code_for
from appliance.monitor.label_delivery import FeedbackPublic


class Renamed(BaseModel):
    """A record whose JSON names are not its attribute names, and one computed."""

    source: str = Field(alias="from")
    size: int = Field(serialization_alias="bytes")
    kind: str = "file"

    @computed_field(alias="empty")
    @property
    def is_empty(self) -> bool:
        return self.size == 0


@dataclasses.dataclass
class Tally:
    name: str
    count: int


@pytest.fixture(autouse=True)
def _no_selection_left_behind():
    # The selection lives in a context variable of this thread: keep one test's out of the
    # next (as a fresh process does for the real CLI).
    yield
    jf._selected.set(None)


def choose(record, fields: tuple[str, ...] | None, value: bool = True) -> bool:
    """Run the option's callback as Click does, `fields` as the root group leaves them in the
    context's meta (None: no ``--json=`` was given)."""
    ctx = typer.Context(TyperCommand("command"))
    if fields is not None:
        ctx.meta[META_KEY] = fields
    return json_option(record).callback(ctx, value)



# --- split_fields -------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    ([], ([], None)),
    # Empty names are dropped, space around a name too.
    (["ls", "--json=,rows,, name ,"], (["ls", "--json"], ("rows", "name"))),
    (["ls", "--json=,,"], (["ls", "--json"], ())),
    # The option's value is only ever what follows `=`: here "rows" is the next argument.
    (["ls", "--json", "rows"], (["ls", "--json", "rows"], None)),
    # Options that merely start alike are someone else's.
    (["ls", "--jsonl=a", "--json-out=b"], (["ls", "--jsonl=a", "--json-out=b"], None)),
    # Before `--` taken apart, after it left as it is.
    (["ls", "--json=a", "--", "--json=b"], (["ls", "--json", "--", "--json=b"], ("a",))),
    (["ls", "--", "--"], (["ls", "--", "--"], None)),
    # Given twice, the last one wins (as a repeated option does in Click).
    (["ls", "--json=a", "x", "--json=b,c"], (["ls", "--json", "x", "--json"], ("b", "c"))),
], ids=["empty", "blanks", "only-commas", "space-not-equals", "look-alikes", "double-dash",
        "double-dash-twice", "twice"])
def test_split_fields(argv, expected):
    given = list(argv)
    assert split_fields(argv) == expected
    assert argv == given  # a new list; the caller's is not rewritten


# --- record_fields ------------------------------------------------------------------------

def test_a_records_fields_in_declaration_order():
    assert record_fields(FeedbackPublic) == ["deployment", "rows", "path"]
    assert record_fields(list[FeedbackPublic]) == ["deployment", "rows", "path"]
    assert record_fields(Tally) == ["name", "count"]
    assert record_fields(list[Tally]) == ["name", "count"]


def test_aliases_are_the_names_the_document_is_printed_with(capsys):
    assert record_fields(Renamed) == ["from", "bytes", "kind", "empty"]
    assert record_fields(Renamed) == _schema_properties(Renamed)
    record = Renamed.model_validate({"from": "a.csv", "size": 3})
    emit_json(record)
    assert json.loads(capsys.readouterr().out) == {"from": "a.csv", "bytes": 3, "kind": "file",
                                                   "empty": False}
    choose(Renamed, ("empty", "bytes", "from"))
    emit_json([record])
    assert json.loads(capsys.readouterr().out) == [{"empty": False, "bytes": 3, "from": "a.csv"}]


def _schema_properties(record) -> list[str]:
    if typing.get_origin(record) is list:
        (record,) = typing.get_args(record)
    return list(TypeAdapter(record).json_schema(mode="serialization")["properties"])


def test_every_commands_fields_are_those_its_golden_schema_lists():
    # What `--json=` accepts (and lists when it refuses) is what the record's JSON schema,
    # the golden file, says the document has.
    records = {" ".join(path): record for path, record in json_commands().items()}
    assert len(records) > 30
    differ = {path: (record_fields(record), _schema_properties(record))
              for path, record in records.items()
              if record is not None and record_fields(record) != _schema_properties(record)}
    assert not differ


# --- the option's callback and select -------------------------------------------------------

DOC = {"deployment": "credit", "rows": 2, "path": "/a/b.parquet"}


def test_plain_json_prints_the_whole_document():
    assert choose(FeedbackPublic, None) is True
    assert select(DOC) is DOC
    assert choose(FeedbackPublic, None, value=False) is False
    assert select([DOC]) == [DOC]


def test_fields_are_kept_in_the_order_asked_for_a_record_and_a_list_of_them():
    assert choose(FeedbackPublic, ("rows", "deployment")) is True
    assert list(select(DOC).items()) == [("rows", 2), ("deployment", "credit")]
    other = {**DOC, "deployment": "fraud", "rows": 5}
    assert select([DOC, other]) == [{"rows": 2, "deployment": "credit"},
                                    {"rows": 5, "deployment": "fraud"}]
    assert select([]) == []


def test_a_field_the_record_has_but_the_document_leaves_out_is_null():
    choose(FeedbackPublic, ("deployment", "path"))
    assert select({"deployment": "credit", "rows": 1}) == {"deployment": "credit", "path": None}


def test_a_selection_does_not_outlive_its_command():
    choose(FeedbackPublic, ("rows",))
    assert select(DOC) == {"rows": 2}
    choose(FeedbackPublic, None)  # the next command, plain --json
    assert select(DOC) == DOC


@pytest.mark.parametrize(("fields", "says"), [
    ((), "--json= names no field; available fields: deployment, rows, path"),
    (("rows", "nope", "worse"), "--json: unknown field 'nope'; available fields: deployment, "
                                "rows, path"),
    (("Rows",), "unknown field 'Rows'"),  # names are matched exactly
])
def test_a_field_list_the_record_cannot_serve_is_refused_listing_what_it_has(fields, says):
    with pytest.raises(InvalidInput) as caught:
        choose(FeedbackPublic, fields)
    assert says in str(caught.value)
    assert exit_code_for(caught.value) == ExitCode.USAGE


# --- through the real CLI: `drift compute`, which needs no store -----------------------------

@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift-windows")
    (folder / "reference.csv").write_text("x,k\n" + "".join(
        f"{i % 7},{'ab'[i % 2]}\n" for i in range(40)))
    (folder / "current.csv").write_text("x,k\n" + "".join(
        f"{i % 7 + 3},{'ab'[i % 3 == 0]}\n" for i in range(40)))
    return ["drift", "compute", "--reference", str(folder / "reference.csv"),
            "--current", str(folder / "current.csv")]


def test_a_field_the_document_omits_prints_as_null(windows):
    # No PCA asked for: the report has no "multivariate", though the record declares it.
    res = CliRunner().invoke(app, [*windows, "--stats", "ks,chi2", "--json=multivariate,rows"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout) == {"multivariate": None,
                                      "rows": {"reference": 40, "current": 40}}


def test_an_unknown_field_stops_the_command_before_it_runs(windows):
    res = CliRunner().invoke(app, [*windows, "--json=rows,drift"])
    assert isinstance(res.exception, InvalidInput), (res.output, res.exception)
    assert "unknown field 'drift'; available fields: rows, features, drifted_share, " \
           "dataset_drifted, multivariate" in str(res.exception)
    assert res.stdout == ""


def test_the_console_script_exits_2_with_one_line_naming_the_fields(windows, tmp_path):
    res = subprocess.run([sys.executable, "-m", "appliance.cli", *windows, "--json="],
                         capture_output=True, text=True, timeout=120,
                         env={**_env(), "APPLIANCE_HOME": str(tmp_path)})
    assert res.returncode == ExitCode.USAGE and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert line == ("error: --json= names no field; available fields: rows, features, "
                    "drifted_share, dataset_drifted, multivariate")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
