"""A hand-built report `Document` holding every kind of block, for the renderers' tests."""

from __future__ import annotations

import datetime as dt

from appliance.reports.document import Chart, Document, Facts, NotRecorded, Section, Table, Text

SVG = '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'

DOC = Document(
    title="Model card: credit <v2>",
    subtitle="credit:2 & friends",
    generated_at=dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc),
    sections=[
        Section("summary", "Summary", [
            Text("Scores loans | risk.\nSecond line."),
            Facts([("owner", "ops"), ("tier", None), ("gated", True)]),
        ]),
        Section("metrics", "Metrics", [
            Table(["metric", "value"], [["auc", 0.912345], ["accuracy", 0.8]], caption="holdout"),
            Table(["when"], [], caption="reviews"),
            Chart(SVG, "AUC per window", Table(["window", "auc"], [[1, 0.9]])),
            Chart(SVG, "Nothing plotted"),
            NotRecorded("No fairness check recorded."),
        ]),
    ],
)
