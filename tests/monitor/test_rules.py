"""Alert rules (`appliance.monitor.rules`): parsing, comparisons and the value each rule reads
from a window; and the configuration file that holds them. Pure logic, table-driven."""

from __future__ import annotations

import pytest

from appliance.config import load_config
from appliance.errors import InvalidInput
from appliance.monitor.rules import DEFAULT_RULES, AlertRule, parse_rule, parse_rules, window_value
from appliance.store.models import WindowVersion

ACC = {"name": "acc", "metric": "accuracy", "drop": 0.05}


@pytest.mark.parametrize(("doc", "says"), [
    ({**ACC, "thresh": 0.8}, ["alert_rules[0]", "unknown key", "'thresh'"]),
    ({"metric": "accuracy", "drop": 0.05}, ["alert_rules[0]", "'name' is required"]),
    ({**ACC, "name": "  "}, ["alert_rules[0]", "'name' is required"]),
    ({"name": "r", "metric": "accuracy", "statistic": "psi", "op": ">", "threshold": 0.2},
     ["alert_rules[0] ('r')", "'metric'", "'statistic'"]),
    ({"name": "r", "op": ">", "threshold": 0.2}, ["('r')", "'metric'", "'statistic'"]),
    ({"name": "r", "metric": "f1", "drop": 0.1}, ["('r')", "unknown metric 'f1'"]),
    ({"name": "r", "metric": "drifted_share", "op": ">="}, ["('r')", "'op'", "'threshold'"]),
    ({"name": "r", "metric": "drifted_share", "op": "==", "threshold": 0.5},
     ["('r')", "'op' must be one of"]),
    ({"name": "r", "metric": "accuracy", "op": "<", "drop": 0.05},
     ["('r')", "'op' goes with 'threshold', not with 'drop'"]),
    ({"name": "r", "metric": "accuracy", "drop": 0.05, "rise": 0.05}, ["('r')", "exactly one"]),
    ({"name": "r", "metric": "drifted_share", "drop": 0.1}, ["('r')", "'drop'/'rise'", "drift"]),
    ({"name": "r", "statistic": "psi", "rise": 0.1}, ["('r')", "'drop'/'rise'", "drift"]),
    ({"name": "r", "metric": "accuracy", "feature": "x1", "drop": 0.1}, ["('r')", "'feature'"]),
    ({"name": "r", "statistic": "psi", "feature": 3, "op": ">", "threshold": 0.1},
     ["('r')", "'feature'"]),
    ({"name": "r", "statistic": 7, "op": ">", "threshold": 0.1}, ["('r')", "'statistic'"]),
    ({"name": "r", "metric": "drifted_share", "op": ">", "threshold": "high"},
     ["('r')", "'threshold' must be a number"]),
    ({"name": "r", "metric": "drifted_share", "op": ">", "threshold": True},
     ["('r')", "'threshold' must be a number"]),
    ({"name": "r", "metric": "accuracy", "drop": -0.1}, ["('r')", "'drop' must be >= 0"]),
    ({**ACC, "severity": "loud"}, ["('acc')", "'severity'"]),
    ({**ACC, "consecutive": 0}, ["('acc')", "'consecutive'"]),
    ({**ACC, "consecutive": 1.5}, ["('acc')", "'consecutive'"]),
    ({**ACC, "consecutive": True}, ["('acc')", "'consecutive'"]),
    ({**ACC, "min_rows": -1}, ["('acc')", "'min_rows'"]),
    ({**ACC, "min_rows": "200"}, ["('acc')", "'min_rows'"]),
    ({**ACC, "cooldown_seconds": -5}, ["('acc')", "'cooldown_seconds'"]),
    ({**ACC, "models": "scorer"}, ["('acc')", "'models'"]),
    ({**ACC, "models": ["scorer", 3]}, ["('acc')", "'models'"]),
    ("accuracy < 0.8", ["alert_rules[0]", "must be a table"]),
])
def test_a_bad_rule_is_refused_naming_the_rule_and_the_key(doc, says):
    with pytest.raises(InvalidInput) as info:
        parse_rules([doc])
    for text in says:
        assert text in str(info.value)


def test_rules_are_refused_unless_an_array_of_tables_with_unique_names():
    with pytest.raises(InvalidInput, match=r"array of tables"):
        parse_rules({"name": "acc"})
    with pytest.raises(InvalidInput, match=r"\['acc'\] appear more than once") as info:
        parse_rules([ACC, {"name": "drift", "metric": "drifted_share", "op": ">",
                           "threshold": 0.5}, {**ACC, "drop": 0.1}], where="cfg alert_rules")
    assert str(info.value).startswith("cfg alert_rules")
    with pytest.raises(InvalidInput, match=r"alert_rules\[1\] \('acc'\)"):
        parse_rules([ACC, {**ACC, "severity": "loud"}])


def test_without_configured_rules_the_defaults_apply():
    assert parse_rules(None) is DEFAULT_RULES
    assert [(r.name, r.kind, r.severity) for r in DEFAULT_RULES] == [
        ("drift", "drift", "warning"), ("accuracy", "accuracy", "critical"),
        ("estimated_accuracy", "estimated_accuracy", "warning")]
    # An empty list is a choice: no rules at all.
    assert parse_rules([]) == ()


def test_a_parsed_rule_keeps_every_field():
    rule = parse_rule({"name": " psi-x1 ", "statistic": "psi", "feature": "x1", "op": ">",
                       "threshold": 1, "consecutive": 3, "severity": "critical",
                       "cooldown_seconds": 60, "min_rows": 100, "models": ["scorer"]}, "r")
    assert rule == AlertRule(name="psi-x1", statistic="psi", feature="x1", op=">",
                             threshold=1.0, consecutive=3, severity="critical",
                             cooldown_seconds=60.0, min_rows=100, models=("scorer",))
    assert parse_rule(ACC, "r") == AlertRule(name="acc", metric="accuracy", drop=0.05)


@pytest.mark.parametrize(("rule", "kind", "reference"), [
    (AlertRule("a", metric="drifted_share", op=">=", threshold=0.5), "drift", None),
    (AlertRule("a", statistic="psi", op=">", threshold=0.2), "drift", None),
    (AlertRule("a", metric="accuracy", drop=0.05), "accuracy", "accuracy"),
    (AlertRule("a", metric="log_loss", rise=0.1), "accuracy", "log_loss"),
    (AlertRule("a", metric="mae", op=">", threshold=3), "accuracy", "mae"),
    (AlertRule("a", metric="estimated_accuracy", drop=0.05), "estimated_accuracy", "accuracy"),
    (AlertRule("a", metric="estimated_auc", op="<", threshold=0.7), "estimated_accuracy",
     "auc"),
])
def test_each_rule_has_a_kind_and_the_evaluation_metric_it_compares_with(rule, kind, reference):
    assert (rule.kind, rule.reference_metric) == (kind, reference)


GE = AlertRule("drift", metric="drifted_share", op=">=", threshold=0.5)
GT = AlertRule("drift", metric="drifted_share", op=">", threshold=0.5)
LE = AlertRule("acc", metric="accuracy", op="<=", threshold=0.8)
LT = AlertRule("acc", metric="accuracy", op="<", threshold=0.8)
DROP = AlertRule("acc", metric="accuracy", drop=0.1)
RISE = AlertRule("ll", metric="log_loss", rise=0.25)
PSI = AlertRule("psi", statistic="psi", feature="x1", op=">", threshold=0.2)
LARGEST = AlertRule("psi", statistic="psi", op=">", threshold=0.2)


@pytest.mark.parametrize(("rule", "value", "reference", "breached", "limit"), [
    (GE, 0.5, None, True, 0.5),
    (GE, 0.49, None, False, 0.5),
    (GE, 0.6, 0.9, True, 0.5),  # an absolute rule ignores the reference
    (GT, 0.5, None, False, 0.5),
    (GT, 0.51, None, True, 0.5),
    (LE, 0.8, None, True, 0.8),
    (LE, 0.81, None, False, 0.8),
    (LT, 0.8, None, False, 0.8),
    (LT, 0.79, None, True, 0.8),
    (DROP, 0.79, 0.9, True, 0.8),
    (DROP, 0.81, 0.9, False, 0.8),
    (DROP, 0.5, None, None, None),  # relative, and nothing to be relative to
    (RISE, 0.61, 0.35, True, 0.6),
    (RISE, 0.59, 0.35, False, 0.6),
    (RISE, 0.9, None, None, None),
])
def test_breached_and_limit(rule, value, reference, breached, limit):
    assert rule.breached(value, reference) is breached
    got = rule.limit(reference)
    assert got is None if limit is None else got == pytest.approx(limit)


@pytest.mark.parametrize(("rule", "reference", "text"), [
    (GE, None, "drifted_share >= 0.5"),
    (LT, 0.9, "accuracy < 0.8"),
    (DROP, 0.9, "accuracy < 0.8 (evaluation 0.9 - 0.1)"),
    (DROP, None, "accuracy < evaluation - 0.1"),
    (RISE, 0.35, "log_loss > 0.6 (evaluation 0.35 + 0.25)"),
    (RISE, None, "log_loss > evaluation + 0.25"),
    (PSI, None, "psi of x1 > 0.2"),
    (LARGEST, None, "largest psi > 0.2"),
])
def test_describe_says_the_condition_in_words(rule, reference, text):
    assert rule.describe(reference) == text


def test_a_rule_applies_to_its_models_or_to_all():
    assert GE.applies_to("anything")
    only = AlertRule("a", metric="accuracy", drop=0.1, models=("scorer",))
    assert only.applies_to("scorer") and not only.applies_to("credit")


def stats(**fields) -> WindowVersion:
    base = {"window_id": 1, "version_id": 1, "version": 1, "rows": 1000}
    return WindowVersion(**{**base, **fields})


REPORT = {"features": {
    "x1": {"kind": "numerical", "psi": {"value": 0.3, "drifted": True},
           "ks": {"statistic": 0.12, "pvalue": 0.001, "drifted": True}},
    "x2": {"kind": "numerical", "psi": {"value": 0.5, "drifted": True},
           "ks": {"statistic": 0.02, "pvalue": 0.4, "drifted": False}},
    "c": {"kind": "categorical", "chi2": {"statistic": 9.0, "pvalue": 0.01}},
}}
EST = AlertRule("est", metric="estimated_accuracy", drop=0.05, min_rows=500)
ACC_RULE = AlertRule("acc", metric="accuracy", drop=0.05, min_rows=200)


@pytest.mark.parametrize(("rule", "row", "report", "value"), [
    (GE, stats(drift_status="drifted", drifted_share=0.6), None, 0.6),
    (GE, stats(drift_status="ok", drifted_share=0.2), None, 0.2),
    (GE, stats(drift_status="insufficient", rows=100), None, None),
    (GE, stats(drift_status="no_profile"), None, None),
    (PSI, stats(drift_status="drifted"), REPORT, 0.3),
    (LARGEST, stats(drift_status="drifted"), REPORT, 0.5),
    (AlertRule("ks", statistic="ks", op=">", threshold=0.1), stats(drift_status="ok"), REPORT,
     0.12),
    (AlertRule("ks", statistic="ks", feature="x2", op=">", threshold=0.1),
     stats(drift_status="ok"), REPORT, 0.02),
    (AlertRule("chi", statistic="chi2", op=">", threshold=1), stats(drift_status="ok"), REPORT,
     9.0),
    (AlertRule("p", statistic="psi", feature="nope", op=">", threshold=0.1),
     stats(drift_status="ok"), REPORT, None),
    (PSI, stats(drift_status="drifted"), None, None),
    (PSI, stats(drift_status="insufficient"), REPORT, None),
    (ACC_RULE, stats(labelled_rows=199, metrics={"accuracy": 0.7}), None, None),
    (ACC_RULE, stats(labelled_rows=200, metrics={"accuracy": 0.7}), None, 0.7),
    (AlertRule("acc", metric="accuracy", drop=0.05), stats(labelled_rows=0, metrics={}), None,
     None),
    (AlertRule("auc", metric="auc", drop=0.05),
     stats(labelled_rows=50, metrics={"accuracy": 1.0, "auc": None}), None, None),
    (EST, stats(rows=499, estimated={"accuracy": 0.8}), None, None),
    (EST, stats(rows=500, estimated={"accuracy": 0.8}), None, 0.8),
    (EST, stats(rows=900, estimated={}), None, None),
])
def test_window_value_reads_what_the_rule_names_or_none(rule, row, report, value):
    assert window_value(rule, row, report) == value


def test_a_drift_rule_gives_no_value_below_its_min_rows():
    # "min_rows: labelled rows (realised metrics) or rows, below: no value" (rules docstring).
    rule = AlertRule("drift", metric="drifted_share", op=">=", threshold=0.5, min_rows=1000)
    assert window_value(rule, stats(rows=600, drift_status="drifted", drifted_share=0.8),
                        None) is None
    assert window_value(rule, stats(rows=1000, drift_status="drifted", drifted_share=0.8),
                        None) == 0.8


TOML = """
db_url = "sqlite:///{home}/store.db"

[policy]
window_rows = 500
triggers = ["drift", "schedule"]
schedule_seconds = 86400

[[alert_rules]]
name = "psi-x1"
statistic = "psi"
feature = "x1"
op = ">"
threshold = 0.2
severity = "critical"

[[alert_rules]]
name = "acc"
metric = "accuracy"
drop = 0.03
min_rows = 100
consecutive = 2
models = ["scorer"]
"""


def test_the_configuration_file_holds_alert_rules_and_policy_defaults(tmp_path):
    (tmp_path / "appliance.toml").write_text(TOML.format(home=tmp_path))
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert cfg.policy == {"window_rows": 500, "triggers": ("drift", "schedule"),
                          "schedule_seconds": 86400.0}
    assert cfg.alert_rules == (
        AlertRule(name="psi-x1", statistic="psi", feature="x1", op=">", threshold=0.2,
                  severity="critical"),
        AlertRule(name="acc", metric="accuracy", drop=0.03, min_rows=100, consecutive=2,
                  models=("scorer",)),
    )
    (tmp_path / "appliance.toml").write_text(f'db_url = "sqlite:///{tmp_path}/store.db"\n')
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert (cfg.alert_rules, cfg.policy) == (DEFAULT_RULES, {})


@pytest.mark.parametrize(("text", "says"), [
    ('[[alert_rules]]\nname = "acc"\nmetric = "f1"\ndrop = 0.1\n',
     ["alert_rules[0] ('acc')", "unknown metric 'f1'"]),
    ('[[alert_rules]]\nname = "acc"\nmetric = "accuracy"\nop = "<"\n',
     ["alert_rules[0] ('acc')", "'threshold'"]),
    ('alert_rules = "accuracy < 0.8"\n', ["alert_rules", "array of tables"]),
    ("[policy]\nwindow_rows = 0\n", ["[policy]", "'window_rows'"]),
    ('[policy]\ntriggers = ["drift", "weather"]\n', ["[policy]", "'weather'"]),
    ("[policy]\nwindows = 3\n", ["[policy]", "unknown policy key 'windows'"]),
])
def test_a_bad_rule_or_policy_in_the_configuration_file_names_the_file(tmp_path, text, says):
    path = tmp_path / "elsewhere.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_config({"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_CONFIG": str(path)})
    assert str(path) in str(info.value)
    for piece in says:
        assert piece in str(info.value)
