"""The report's hand-written SVG: escaped, sized to fit, gaps left where values are missing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import appliance.reports as reports
from appliance.reports import svg

NS = "{http://www.w3.org/2000/svg}"


def test_exports_are_sorted_and_resolve():
    assert reports.__all__ == sorted(reports.__all__)
    assert all(getattr(reports, name) is not None for name in reports.__all__)


def test_charts_are_well_formed_and_escape_what_they_quote():
    evil = '<script>alert("x")</script>&'
    for chart in (svg.line_chart(evil, ["1", evil], {evil: [0.5, None]}),
                  svg.bar_chart(evil, [(evil, 0.3), ("b", -0.1)]),
                  svg.heat_map(evil, [evil], ["w1", "w2"], [[0.1, None]])):
        root = ET.fromstring(chart)  # raises on anything not well-formed
        assert root.tag == f"{NS}svg" and "<script>" not in chart
        assert root.find(f"{NS}title").text == evil


def test_a_line_has_a_gap_where_a_value_is_missing():
    root = ET.fromstring(svg.line_chart("t", ["1", "2", "3"], {"a": [0.1, None, 0.3],
                                                               "b": [0.2, 0.4, 0.6]}))
    lines = {p.get("data-series"): p.get("points").split() for p in root.iter(f"{NS}polyline")}
    assert len(lines["a"]) == 2 and len(lines["b"]) == 3


def test_a_heat_map_of_many_windows_narrows_its_cells_to_fit():
    root = ET.fromstring(svg.heat_map("t", ["f"], [str(i) for i in range(200)],
                                      [[0.1] * 200], max_width=960))
    assert int(root.get("width")) <= 160 + 6 * 200 + 16
    narrow = ET.fromstring(svg.heat_map("t", ["f"], [str(i) for i in range(50)], [[0.1] * 50]))
    assert int(narrow.get("width")) <= 960
