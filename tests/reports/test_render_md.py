"""A report as Markdown (`appliance.reports.render_md`), every kind of block: charts become the
table of their numbers, pipes and newlines cannot break a table."""

from __future__ import annotations

import pytest
from report_blocks import DOC

from appliance.reports.document import Document, Section, Table
from appliance.reports.render_md import render

EXPECTED = """\
# Model card: credit <v2>

credit:2 & friends · generated 2026-03-04T05:06:07Z

## Summary {#summary}

Scores loans | risk.
Second line.

- **owner**: ops
- **tier**: —
- **gated**: yes

## Metrics {#metrics}

*holdout*

| metric | value |
|---|---|
| auc | 0.9123 |
| accuracy | 0.8 |

_No reviews._

| window | auc |
|---|---|
| 1 | 0.9 |

_Nothing plotted_

_No fairness check recorded._
"""


def test_every_block_renders():
    assert render(DOC) == EXPECTED


def test_a_pipe_or_newline_in_a_cell_stays_inside_it():
    doc = Document("t", "s", DOC.generated_at, [
        Section("x", "X", [Table(["a|b"], [["one\ntwo|three"]])])])
    assert "| a\\|b |\n|---|\n| one two\\|three |" in render(doc)


def test_an_unknown_block_is_a_type_error():
    doc = Document("t", "s", DOC.generated_at, [Section("x", "X", ["just a string"])])
    with pytest.raises(TypeError, match="unknown report block str"):
        render(doc)
