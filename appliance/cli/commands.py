"""Registers each command module on the root app (one file per command)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from appliance.cli import (
        alerts,
        audit,
        canary,
        data,
        demo,
        deploy,
        doctor,
        down,
        drift,
        init,
        models,
        monitor,
        policy,
        predictions,
        promote,
        report,
        review,
        runs,
        status,
        train,
        tune,
        users,
    )

    app.command("init")(init.init)
    app.command("status")(status.status)
    app.add_typer(data.app, name="data")
    app.command("train")(train.train)
    app.add_typer(runs.app, name="runs")
    app.command("tune")(tune.tune)
    app.add_typer(models.app, name="models")
    app.command("lineage")(models.lineage)
    app.command("promote")(promote.promote)
    app.command("approve")(promote.approve)
    app.command("reject")(promote.reject)
    app.command("approvals")(promote.approvals_list)
    app.command("rollback")(promote.rollback)
    app.command("deploy")(deploy.deploy)
    app.command("undeploy")(deploy.undeploy)
    app.command("down")(down.down)
    app.command("doctor")(doctor.doctor)
    app.add_typer(monitor.feedback_app, name="feedback")
    app.command("monitor")(monitor.monitor)
    app.add_typer(alerts.app, name="alerts")
    app.add_typer(policy.app, name="policy")
    app.add_typer(predictions.app, name="predictions")
    app.add_typer(canary.app, name="canary")
    app.add_typer(drift.app, name="drift")
    app.add_typer(audit.app, name="audit")
    app.add_typer(report.app, name="report")
    app.command("review")(review.review)
    app.add_typer(users.users_app, name="users")
    app.add_typer(users.tokens_app, name="tokens")
    app.command("demo")(demo.demo)
