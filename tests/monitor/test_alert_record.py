"""The fields of an alert every face shows (`appliance.monitor.alert_record`): taken from the
row, its `model_name` read as `model`, and nothing internal (windows, channels) let out."""

from __future__ import annotations

import datetime as dt

from appliance.monitor.alert_record import AlertFields, alert_fields
from appliance.store.models import Alert

T = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)


def test_an_alert_row_becomes_its_public_fields():
    row = Alert(id=7, kind="metric", rule="auc_floor", severity="critical", model_name="credit",
                deployment="credit-prod", version=2, window_id=11, last_window_id=12, value=0.61,
                threshold=0.7, occurrences=3, message="AUC 0.61 < 0.7", owner="ops",
                team="credit", notified=["ops-mail"], created_at=T, acknowledged_by="ops",
                acknowledged_at=T)
    values = alert_fields(row)
    assert values["model"] == "credit" and "model_name" not in values
    assert not {"window_id", "last_window_id", "notified"} & set(values)
    fields = AlertFields(**values)
    assert (fields.id, fields.rule, fields.severity, fields.status) == (
        7, "auc_floor", "critical", "open")
    assert (fields.value, fields.threshold, fields.occurrences) == (0.61, 0.7, 3)
    assert fields.acknowledged_by == "ops" and fields.resolved_at is None
    assert set(values) == set(AlertFields.model_fields)
