"""The model card's sections (`appliance.reports.card_sections`) for a version fresh from
training: every section in order, what the registry holds shown, and each part nothing has
measured yet said as not recorded, never left out. A lived-in card: test_model_card.py."""

from __future__ import annotations

import governance_world as gw

from appliance.reports import card_sections
from appliance.reports.document import NotRecorded, Table
from appliance.reports.model_card import build_model_card
from appliance.store import session_scope


def test_a_fresh_version_shows_its_lineage_and_says_what_is_not_recorded(sqlite_url, tmp_path):
    gw.people(sqlite_url)
    gw.registered_version(sqlite_url, tmp_path)
    with session_scope(sqlite_url) as s:
        card = build_model_card(s, "credit")
    doc = card_sections.document(card)
    assert doc.title == "Model card: credit v1"
    assert doc.subtitle == "owner ops, team credit, risk tier medium"
    sections = {s.id: s for s in doc.sections}
    assert list(sections) == [build(card).id for build in card_sections.SECTIONS]
    assert list(sections)[:3] == ["purpose", "lineage", "training"]

    facts = dict(sections["lineage"].blocks[0].pairs)
    assert (facts["Dataset"], facts["Rows"]) == ("loans:1", 10)
    params = sections["training"].blocks[1]
    assert isinstance(params, Table) and params.rows == [["lr", 0.1]]
    assert sections["evaluation"].blocks[0].rows == [["accuracy", 0.9]]

    missing = {sid: [b.what for b in s.blocks if isinstance(b, NotRecorded)]
               for sid, s in sections.items()}
    assert missing["feature-importance"] == ["Feature importance: not recorded for this version."]
    assert missing["fairness"][0].startswith("Fairness: not recorded")
    assert missing["performance"] == ["No closed prediction windows yet: nothing served and "
                                      "monitored."]
    for sid in ("approvals", "deployments", "alerts", "reviews"):
        assert all(isinstance(b, Table) and b.rows == [] for b in sections[sid].blocks), sid
