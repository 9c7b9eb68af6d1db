"""A report as one self-contained HTML page (`appliance.reports.render_html`): every value
escaped, sections linked from the navigation by their ids, charts inline, nothing fetched."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from report_blocks import DOC, SVG

from appliance.reports.render_html import render


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_the_page_escapes_every_value_and_links_each_section():
    page = render(DOC)
    assert page.startswith("<!DOCTYPE html>\n")
    assert "<title>Model card: credit &lt;v2&gt;</title>" in page
    assert "credit:2 &amp; friends · generated <time>2026-03-04T05:06:07Z</time>" in page
    tags = _tags(page)
    assert [a["href"] for t, a in tags if t == "a"] == ["#summary", "#metrics"]
    assert [a["id"] for t, a in tags if t == "section"] == ["summary", "metrics"]
    assert "<dt>tier</dt><dd>—</dd>" in page and "<td>0.9123</td>" in page
    assert "<caption>holdout</caption>" in page


def test_charts_are_inline_and_empty_or_missing_parts_are_said():
    page = render(DOC)
    assert page.count(SVG) == 2
    assert "<figcaption>AUC per window</figcaption>" in page
    assert '<p class="not-recorded">No reviews.</p>' in page
    assert '<p class="not-recorded" data-missing="true">No fairness check recorded.</p>' in page


def test_nothing_is_fetched_from_elsewhere():
    page = render(DOC)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert not any(t in ("script", "link", "img") for t, _ in _tags(page))
