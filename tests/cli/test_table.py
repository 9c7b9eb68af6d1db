"""`appliance.cli._table.print_table`: the tables read commands print for humans.

One resource per row under upper-cased headers, on the data stream (stdout); empty cells show
``<none>``, times RFC 3339 to the second, floats four significant digits; off a terminal no
row is cut to a width, and a value is printed as written (never read as rich markup).
"""

from __future__ import annotations

import datetime as dt

from appliance.cli._table import print_table


def _lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def test_headers_are_upper_cased_and_columns_line_up(capsys):
    print_table(["name", "version", "stage"], [["credit", 12, "champion"], ["fraud", 3, "staging"]])
    header, *rows = _lines(capsys)
    assert header.split() == ["NAME", "VERSION", "STAGE"]
    assert [r.split() for r in rows] == [["credit", "12", "champion"], ["fraud", "3", "staging"]]
    # Each column starts where its header does.
    for title, values in (("VERSION", ("12", "3")), ("STAGE", ("champion", "staging"))):
        at = header.index(title)
        assert [r[at:].split()[0] for r in rows] == list(values)


def test_empty_cells_times_and_floats(capsys):
    aware = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    print_table(["name", "owner", "team", "score", "created"],
                [["credit", None, "", 0.912345678, aware],
                 ["fraud", "ops", "risk", 12345.678, None]])
    _, first, second = _lines(capsys)
    assert first.split() == ["credit", "<none>", "<none>", "0.9123", "2026-01-02T03:04:05+00:00"]
    assert second.split() == ["fraud", "ops", "risk", "1.235e+04", "<none>"]


def test_no_rows_prints_the_headers_only(capsys):
    print_table(["name", "rows"], [])
    assert [line.split() for line in _lines(capsys)] == [["NAME", "ROWS"]]


def test_off_a_terminal_a_long_row_is_printed_whole(capsys):
    # A pipe into grep or a file must get every cell whole, however long the line.
    path = "/srv/appliance/artifacts/" + "ab" * 150
    digest = "d" * 64
    print_table(["name", "path", "digest"], [["loans", path, digest]])
    _, row = _lines(capsys)
    assert row.split() == ["loans", path, digest]
    assert "…" not in row


def test_a_value_is_printed_as_written_not_as_markup(capsys):
    messages = ["drift in [income] and [age]", "[bold]not bold", "closes nothing [/]"]
    print_table(["message"], [[m] for m in messages])
    _, *rows = _lines(capsys)
    assert [r.rstrip() for r in rows] == messages
