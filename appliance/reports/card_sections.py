"""The model card's sections, in order: one builder per section from `ModelCardPublic`.

To add a section (say, a new kind of evidence), write a builder taking the card and returning
a `Section`, and put it in `SECTIONS`; both renderers pick it up.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.reports import svg
from appliance.reports.document import (
    Chart,
    Document,
    Facts,
    NotRecorded,
    Section,
    Table,
    Text,
)
from appliance.reports.model_card import ModelCardPublic, WindowPointPublic

_COUNTS = frozenset({"epochs", "restarts", "trials"})


def purpose(card: ModelCardPublic) -> Section:
    m = card.model
    review = m.review
    due = (f"overdue by {review.days_overdue} days (due {review.due_at:%Y-%m-%d})"
           if review.overdue else f"due {review.due_at:%Y-%m-%d}")
    return Section("purpose", "Purpose and ownership", [
        Text(m.description or "No description recorded (`appliance models set --description`)."),
        Facts([("Model", m.name), ("Version described", card.version),
               ("Aliases", card.aliases), ("Owner", m.owner), ("Team", m.team),
               ("Runbook", m.runbook_url), ("Risk tier", m.risk_tier),
               ("Approvers a promotion needs", m.required_approvers),
               ("Review interval (days)", review.interval_days),
               ("Last review", review.last_reviewed_at), ("Next review", due),
               ("Registered", m.created_at)]),
    ])


def lineage(card: ModelCardPublic) -> Section:
    ds = card.dataset
    contract = ds.contract
    blocks = [
        Facts([("Dataset", f"{ds.name}:{ds.version}"), ("Digest", ds.digest), ("Rows", ds.rows),
               ("Columns", ds.columns), ("Label", ds.label), ("Source", ds.source),
               ("Data contract", ds.contract_status),
               ("Contract accepted by", ds.contract_accepted_by),
               ("Acceptance reason", ds.contract_accepted_reason),
               ("Built from", ds.lineage), ("Registered by", ds.created_by),
               ("Registered at", ds.created_at)]),
    ]
    if contract is not None and contract.violations:
        blocks.append(Table(["check", "column", "severity", "message"],
                            [[v.check, v.column, v.severity.value, v.message]
                             for v in contract.violations],
                            "data contract findings"))
    blocks.append(Table(
        ["version", "aliases", "dataset", "run", "accuracy", "registered by", "registered at"],
        [[v.version, v.aliases, v.dataset, v.run, v.metrics.get("accuracy"), v.created_by,
          v.created_at] for v in card.versions],
        "versions and the data each was trained on"))
    return Section("lineage", "Data lineage", blocks)


def training(card: ModelCardPublic) -> Section:
    run = card.run
    return Section("training", "Training run", [
        Facts([("Run", run.id), ("Kind", run.kind), ("Status", run.status), ("Seed", run.seed),
               ("Code version", run.code_version), ("Environment", run.environment),
               ("Device", run.device), ("Tuning run", run.tuning_run),
               ("Started by", run.created_by), ("Started", run.started_at),
               ("Finished", run.finished_at)]),
        Table(["parameter", "value"], [[k, v] for k, v in sorted(run.params.items())],
              "training parameters"),
    ])


def evaluation(card: ModelCardPublic) -> Section:
    blocks: list = [Table(["metric", "value"], [[k, v] for k, v in sorted(card.metrics.items())],
                          "holdout metrics")]
    # Scores on one 0..1 scale side by side; counts (rows, epochs) stay in the table.
    scores = sorted((k, v) for k, v in card.metrics.items()
                    if 0.0 <= v <= 1.0 and not k.endswith("rows") and k not in _COUNTS)
    if scores:
        blocks.append(Chart(svg.bar_chart("Holdout scores", scores), "Holdout scores"))
    if card.segments:
        blocks.append(Table(["check", "measured", "limit", "passed", "judged"],
                            [[s.check, s.measured, s.limit, s.passed, s.judged]
                             for s in card.segments], "metrics per segment (promotion gate)"))
    else:
        blocks.append(NotRecorded("Per-segment metrics: not recorded (the version's gate "
                                  "has no segment checks)."))
    served = [w for w in card.windows if w.version == card.version and w.segments]
    if served:
        latest = served[-1]
        blocks.append(Table(
            ["column", "value", "rows", "labelled rows", "positive rate", "mean score",
             "accuracy"],
            [[column, value, e.get("rows"), e.get("labelled_rows"), e.get("positive_rate"),
              e.get("mean_score"), e.get("accuracy")]
             for column, values in sorted(latest.segments.items())
             for value, e in sorted(values.items())],
            f"live metrics per segment, window {latest.window} (the latest it served)"))
    return Section("evaluation", "Evaluation", blocks)


def importance(card: ModelCardPublic) -> Section:
    blocks: list = []
    if card.importance:
        bars = [(f.feature, f.importance) for f in card.importance]
        blocks.append(Chart(
            svg.bar_chart(f"Feature importance ({card.importance[0].method})", bars),
            "Permutation importance on the holdout: how much the metric drops when the "
            "feature is shuffled",
            Table(["feature", "importance"], [list(b) for b in bars])))
    else:
        blocks.append(NotRecorded("Feature importance: not recorded for this version."))
    windows = [w for w in card.windows if w.importance_shift is not None]
    if windows:
        keys, labels = _axis(windows)
        shift = _per_version(windows, keys, "importance shift", lambda w: w.importance_shift)
        blocks.append(Chart(
            svg.line_chart("Importance shift per window", labels, shift, y_min=0.0, y_max=1.0),
            "How far what the model's scores lean on moved from the holdout's, per window "
            "(0: the same; 1: entirely different)",
            Table(["window", *shift], [[label, *(vs[i] for vs in shift.values())]
                                       for i, label in enumerate(labels)])))
    return Section("feature-importance", "Feature importance", blocks)


def _gap(name: str) -> Callable[[WindowPointPublic], float | None]:
    def value(w: WindowPointPublic) -> float | None:
        doc = w.fairness or {}
        return doc.get(name) if "error" not in doc else None
    return value


def fairness(card: ModelCardPublic) -> Section:
    if not card.fairness:
        return Section("fairness", "Fairness",
                       [NotRecorded("Fairness: not recorded for this version (no protected "
                                    "attribute configured, or no window measured yet).")])
    attribute = card.fairness[0].attribute
    windows = [w for w in card.windows if w.fairness and "error" not in w.fairness]
    keys, labels = _axis(windows)
    ratio = _per_version(windows, keys, "disparate impact ratio",
                         _gap("disparate_impact_ratio"))
    ratio["four-fifths rule"] = [0.8] * len(keys)
    parity = _per_version(windows, keys, "demographic parity difference",
                          _gap("demographic_parity_difference"))
    opportunity = _per_version(windows, keys, "equal opportunity difference",
                               _gap("equal_opportunity_difference"))
    below = {f"v{v}": sum(1 for w in windows if w.version == v
                          and w.fairness.get("four_fifths") is False)
             for v in sorted({w.version for w in windows})}
    gaps = {**parity, **opportunity}
    return Section("fairness", "Fairness", [
        Table(["attribute", "metric", "value", "limit", "passed", "window"],
              [[f.attribute, f.metric, f.value, f.limit, f.passed, f.window]
               for f in card.fairness], f"fairness gaps on {attribute!r}, latest window"),
        Facts([(f"windows below four-fifths, {v}",
                f"{n} of {sum(1 for w in windows if f'v{w.version}' == v)}")
               for v, n in below.items()]),
        Chart(svg.line_chart(f"Disparate impact ratio on {attribute!r} per window", labels,
                             ratio, y_min=0.0, y_max=1.0),
              "Lowest group's positive rate over the highest's; below 0.8 fails the "
              "four-fifths rule",
              Table(["window", *ratio], [[label, *(vs[i] for vs in ratio.values())]
                                         for i, label in enumerate(labels)])),
        Chart(svg.line_chart(f"Fairness gaps on {attribute!r} per window", labels, gaps,
                             y_min=0.0),
              "Demographic parity difference (positive rates) and equal opportunity "
              "difference (true positive rates, once labels arrived): largest minus smallest "
              "group",
              Table(["window", *gaps], [[label, *(vs[i] for vs in gaps.values())]
                                        for i, label in enumerate(labels)])),
    ])


def approvals(card: ModelCardPublic) -> Section:
    return Section("approvals", "Gate and approval history", [
        Table(["request", "version", "alias", "status", "requested by", "requested at",
               "needed", "approved by", "rejected by", "decided at", "gate", "failed checks"],
              [[a.id, a.version, a.alias, a.status, a.requested_by, a.requested_at,
                a.required_approvals, a.approved_by, a.rejected_by, a.decided_at,
                "passed" if a.gate_passed else "failed",
                [c.name for c in a.gate_checks if not c.passed]] for a in card.approvals],
              "promotion requests"),
        Table(["time", "by", "version", "alias", "gate", "failed checks"],
              [[g.ts, g.actor, g.version, g.alias, "passed" if g.passed else "failed",
                g.failed_checks] for g in card.gate_runs], "gate runs"),
    ])


def deployments(card: ModelCardPublic) -> Section:
    return Section("deployments", "Deployments (what served when)", [
        Table(["deployment", "version", "role", "mode", "share", "status", "by", "from",
               "until"],
              [[d.name, d.version, d.role, d.mode, d.share, d.status, d.created_by,
                d.started_at, d.stopped_at] for d in card.deployments],
              "deployment ledger"),
    ])


def _axis(windows: list[WindowPointPublic]) -> tuple[list[tuple[str, int]], list[str]]:
    """The windows' (deployment, index) in closing order, and their x-axis labels."""
    keys = list(dict.fromkeys((w.deployment, w.window) for w in windows))
    several = len({d for d, _ in keys}) > 1
    return keys, [f"{d}/{i}" if several else str(i) for d, i in keys]


def _per_version(windows: list[WindowPointPublic], keys: list[tuple[str, int]], name: str,
                 value: Callable[[WindowPointPublic], float | None]
                 ) -> dict[str, list[float | None]]:
    """One series per version (a canary shares windows with the champion): its value in
    each window it served, a gap elsewhere."""
    out: dict[str, list[float | None]] = {}
    for version in sorted({w.version for w in windows}):
        at = {(w.deployment, w.window): value(w) for w in windows if w.version == version}
        out[f"v{version} {name}"] = [at.get(k) for k in keys]
    return out


def performance(card: ModelCardPublic) -> Section:
    windows = card.windows
    if not windows:
        return Section("performance", "Drift and live accuracy over time",
                       [NotRecorded("No closed prediction windows yet: nothing served and "
                                    "monitored.")])
    keys, labels = _axis(windows)
    live = _per_version(windows, keys, "live", lambda w: w.accuracy)
    estimated = _per_version(windows, keys, "estimated", lambda w: w.estimated_accuracy)
    shares = _per_version(windows, keys, "drifted share", lambda w: w.drifted_share)
    accuracy_series = {k: v for pair in zip(live.items(), estimated.items(), strict=True)
                       for k, v in pair}
    blocks: list = [
        Chart(svg.line_chart("Live and estimated accuracy per window", labels,
                             accuracy_series),
              "Accuracy over time per version: live (once labels arrived) and estimated "
              "(label-free)",
              Table(["window", *accuracy_series],
                    [[label, *(vs[i] for vs in accuracy_series.values())]
                     for i, label in enumerate(labels)])),
        Chart(svg.line_chart("Share of features drifted per window", labels, shares,
                             y_min=0.0, y_max=1.0),
              "Share of features drifted per window, per version",
              Table(["window", *shares], [[label, *(vs[i] for vs in shares.values())]
                                          for i, label in enumerate(labels)])),
    ]
    # The map shows, per window, the version that served most of it.
    main: dict[tuple[str, int], WindowPointPublic] = {}
    for w in windows:
        key = (w.deployment, w.window)
        if key not in main or w.rows > main[key].rows:
            main[key] = w
    features = sorted({f for w in main.values() for f in w.feature_drift})
    statistic = next((w.drift_statistic for w in windows if w.drift_statistic), None)
    if features:
        grid = [[main[k].feature_drift.get(f) for k in keys] for f in features]
        blocks.append(Chart(
            svg.heat_map(f"Drift per feature over windows ({statistic})", features, labels,
                         grid),
            f"Drift per feature ({statistic}; darkest at 0.2, the customary shift level)",
            Table(["feature", *labels],
                  [[f, *row] for f, row in zip(features, grid, strict=True)])))
    blocks.append(Table(
        ["deployment", "window", "closed", "version", "rows", "labelled", "accuracy",
         "estimated", "drift", "drifted share", "drifted features"],
        [[w.deployment, w.window, w.closed_at, w.version, w.rows, w.labelled_rows, w.accuracy,
          w.estimated_accuracy, w.drift_status, w.drifted_share, w.drifted_features]
         for w in windows], "windows"))
    return Section("performance", "Drift and live accuracy over time", blocks)


def alerts(card: ModelCardPublic) -> Section:
    return Section("alerts", "Alert history", [
        Table(["alert", "kind", "rule", "severity", "status", "raised", "message",
               "acknowledged by", "acknowledged at", "resolved by", "resolved at",
               "resolution"],
              [[a.id, a.kind, a.rule, a.severity, a.status, a.created_at, a.message,
                a.acknowledged_by, a.acknowledged_at, a.resolved_by, a.resolved_at,
                a.resolution] for a in card.alerts], "alerts"),
    ])


def review_history(card: ModelCardPublic) -> Section:
    return Section("reviews", "Periodic reviews", [
        Table(["reviewed at", "reviewer", "version", "notes", "next due"],
              [[r.reviewed_at, r.reviewer, r.version, r.notes, r.next_due_at]
               for r in card.reviews], "reviews"),
    ])


# The card, in reading order. Add a section here.
SECTIONS: list[Callable[[ModelCardPublic], Section]] = [
    purpose, lineage, training, evaluation, importance, fairness, approvals, deployments,
    performance, alerts, review_history,
]


def document(card: ModelCardPublic) -> Document:
    """The card as a `Document` for `render_html` / `render_md`."""
    return Document(title=f"Model card: {card.model.name} v{card.version}",
                    subtitle=f"owner {card.model.owner}, team {card.model.team}, risk tier "
                             f"{card.model.risk_tier}",
                    generated_at=card.generated_at,
                    sections=[build(card) for build in SECTIONS])
