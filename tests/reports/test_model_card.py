"""The model card's facts and its sections, in HTML and Markdown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.errors import NotFound
from appliance.reports import build_model_card, card_sections, render
from appliance.reports.document import Section, Text
from appliance.reports.model_card import FeatureImportancePublic
from appliance.store import session_scope

GOLDEN = Path(__file__).parent / "golden"


def _card(world, version=None):
    with session_scope(world.url) as s:
        return build_model_card(s, "credit", version)


def test_card_gathers_ownership_lineage_approvals_drift_and_alerts(world):
    card = _card(world)
    assert card.version == 2 and card.aliases == ["champion"]
    m = card.model
    assert (m.owner, m.team, m.risk_tier, m.required_approvers) == ("ops", "credit", "high", 2)
    assert m.runbook_url == "https://runbooks.example/credit"
    assert m.review.interval_days == 30 and m.review.last_reviewer == "risk"
    assert not m.review.overdue
    assert card.dataset.name == "loans" and card.dataset.version == 3
    assert card.run.params == {"lr": 0.05, "epochs": 3} and card.run.seed == 7
    assert [v.version for v in card.versions] == [1, 2]
    assert [(a.version, a.status, a.requested_by, a.approved_by) for a in card.approvals] == [
        (1, "approved", "ops", ["risk", "risk2"]), (2, "approved", "root", ["risk", "risk2"])]
    assert [s.check for s in card.segments] == ["segment region=north: accuracy >= 0.6"]
    assert [(d.name, d.version, d.role) for d in card.deployments] == [("credit", 1, "primary")]
    assert [w.window for w in card.windows] == [0, 1, 2, 3]
    assert [w.accuracy for w in card.windows] == [0.82, 0.79, None, 0.66]
    assert card.windows[3].feature_drift["income"] == 0.45
    assert card.windows[3].drifted_features == ["income"]
    assert [(a.rule, a.status) for a in card.alerts] == [("income_drift", "resolved"),
                                                         ("gate_failed", "open")]
    assert card.alerts[0].resolution == "retrained on fresh data"
    # v2 has served no window yet and was registered without importance.
    assert card.importance is None and card.fairness is None
    older = _card(world, version=1)
    assert older.version == 1 and older.dataset.version == 1


def test_importance_and_fairness_come_from_the_version_and_its_windows(world):
    card = _card(world, version=1)
    assert [(f.feature, f.importance) for f in card.importance] == [
        ("income", 0.21), ("debt", 0.04), ("region", 0.0)]
    assert card.importance[0].method == "permutation, auc"
    # The latest window's gaps, the four-fifths rule held to the ratio only.
    assert [(f.metric, f.value, f.limit, f.passed, f.window) for f in card.fairness] == [
        ("demographic_parity_difference", 0.2, None, None, 3),
        ("disparate_impact_ratio", 0.6, 0.8, False, 3),
        ("equal_opportunity_difference", 0.1, None, None, 3)]
    assert {f.attribute for f in card.fairness} == {"region"}
    html, md = render(card, "html"), render(card, "md")
    assert 'data-bar="income"' in html
    assert 'data-series="v1 disparate impact ratio"' in html
    assert 'data-series="four-fifths rule"' in html
    assert 'data-series="v1 importance shift"' in html
    assert "2 of 4" in md  # windows below four-fifths
    # Live metrics per segment, from the latest window the version served.
    assert "live metrics per segment, window 3" in md
    assert "| region | north | 120 | 100 | 0.3 | 0.31 | 0.66 |" in md
    assert _html_structure(html) == (GOLDEN / "model_card_sections.txt").read_text().splitlines()


def test_unknown_model_or_version_is_not_found(world):
    with session_scope(world.url) as s:
        with pytest.raises(NotFound, match="no model named 'nope'"):
            build_model_card(s, "nope")
        with pytest.raises(NotFound, match="no version 9"):
            build_model_card(s, "credit", 9)


def _html_structure(html: str) -> list[str]:
    return [f"{sid}: {title}" for sid, title in
            re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', html)]


def _md_structure(md: str) -> list[str]:
    return [f"{sid}: {title}" for title, sid in re.findall(r"^## (.+) \{#([^}]+)\}$", md, re.M)]


def test_card_structure_matches_the_golden_file_in_html_and_markdown(world):
    card = _card(world)
    golden = (GOLDEN / "model_card_sections.txt").read_text().splitlines()
    html, md = render(card, "html"), render(card, "md")
    assert _html_structure(html) == golden
    assert _md_structure(md) == golden
    # The plots: the metric bars, the importance shift of the windows served (v1's), accuracy
    # over time, drifted share, the per-feature map.
    assert re.findall(r'data-chart="(\w+)"', html) == ["bar", "line", "line", "line", "heatmap"]
    assert 'data-series="v1 live"' in html and 'data-series="v1 estimated"' in html
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # Markdown shows the plotted numbers as tables instead.
    assert "| income | 0.02 | 0.08 | 0.31 | 0.45 |" in md


def test_sections_without_records_say_not_recorded_and_render_them_when_present(world):
    card = _card(world)
    html = render(card, "html")
    assert "Feature importance: not recorded for this version." in html
    assert "Fairness: not recorded for this version" in html
    card.importance = [FeatureImportancePublic(feature=f, importance=v,
                                                             method="permutation")
                       for f, v in [("income", 0.3), ("debt", 0.1)]]
    html = render(card, "html")
    assert "Feature importance: not recorded" not in html
    assert 'data-bar="income"' in html
    assert _html_structure(html) == (GOLDEN / "model_card_sections.txt").read_text().splitlines()


def test_a_card_section_is_one_builder_in_a_list(world):
    card = _card(world)

    def extra(c):
        return Section("extra", "Extra evidence", [Text("hello")])

    card_sections.SECTIONS.append(extra)
    try:
        md = render(card, "md")
    finally:
        card_sections.SECTIONS.remove(extra)
    assert _md_structure(md)[-1] == "extra: Extra evidence" and "hello" in md


def test_a_canary_sharing_windows_is_its_own_series_and_the_map_follows_the_main_version(
        world):
    card = _card(world)
    last = card.windows[-1]
    card.windows.append(last.model_copy(update={
        "version": 2, "rows": 20, "accuracy": 0.9, "estimated_accuracy": 0.88,
        "feature_drift": {"income": 0.0, "debt": 0.0, "region": 0.0}}))
    md = render(card, "md")
    assert "| window | v1 live | v1 estimated | v2 live | v2 estimated |" in md
    assert "| 3 | 0.66 | 0.69 | 0.9 | 0.88 |" in md and "| 0 | 0.82 | 0.8 | — | — |" in md
    assert "| income | 0.02 | 0.08 | 0.31 | 0.45 |" in md  # window 3's map: v1 served most
