"""The root command's commands: one row per command, in the order `appliance --help` lists them.

A row names where the command lives and carries the one-line summary that help shows, so
``appliance --help`` imports no command module (`appliance.cli._lazy`). To add a command, write
its module (one file per command or command group) and add its row here; the summary is the
first paragraph of its docstring (or its Typer's ``help``), which
tests/cli/test_commands.py checks.
"""

from __future__ import annotations

from appliance.cli._json_fields import META_KEY, split_fields
from appliance.cli._lazy import Command, LazyGroup

COMMANDS: tuple[Command, ...] = (
    Command("init", "appliance.cli.init:init",
            "Create the metadata store, the first admin user and its token (saved under home, "
            "0600)."),
    Command("status", "appliance.cli.status:status",
            "Counts of datasets, models and versions, open approvals and alerts, deployments, "
            "and\nthe local Ray head with its Serve applications."),
    Command("train", "appliance.cli.train:train",
            "Train the model SPEC describes on Ray Train and register it as a new version."),
    Command("tune", "appliance.cli.tune:tune",
            "Search the [tune] space of SPEC with Ray Tune (ASHA), then register the best."),
    Command("lineage", "appliance.cli.models:lineage",
            "Where a model version came from: dataset, run, params, code, and who approved it."),
    Command("promote", "appliance.cli.promote:promote",
            "Gate MODEL:VERSION against the alias holder and request approval to move the "
            "alias."),
    Command("approve", "appliance.cli.promote:approve",
            "Approve a promotion request (not your own); the alias moves once enough approvers "
            "did."),
    Command("reject", "appliance.cli.promote:reject", "Reject a promotion request."),
    Command("approvals", "appliance.cli.promote:approvals_list",
            "List approval requests (a pending one past its expiry shows as expired)."),
    Command("rollback", "appliance.cli.promote:rollback",
            "Put MODEL's previous champion back: alias and serving in one step."),
    Command("deploy", "appliance.cli.deploy:deploy",
            "Serve MODEL@ALIAS over the Open Inference Protocol v2 on Ray Serve."),
    Command("undeploy", "appliance.cli.deploy:undeploy", "Stop serving MODEL."),
    Command("down", "appliance.cli.down:down",
            "Shut Serve down, stop the local Ray head's processes, and close the deployment "
            "ledger."),
    Command("doctor", "appliance.cli.doctor:doctor",
            "Check Ray (version, auth, ports), the store (reachable, migrated), artifacts "
            "(writable,\ndisk), the audit chain, GPUs and clock skew; exit 1 when any check "
            "fails."),
    Command("monitor", "appliance.cli.monitor:monitor",
            "Run the monitor service: windows, drift, live metrics, alerts and the retrain "
            "loop."),
    Command("demo", "appliance.cli.demo:demo",
            "Play a world of drifting traffic and late labels; the monitor closes the loop."),
    Command("review", "appliance.cli.review:review",
            "Record that you reviewed MODEL (approver role; audited); the next review is due "
            "one\nreview interval later."),
    # Groups of subcommands (a `typer.Typer` each), listed after the single commands.
    Command("data", "appliance.cli.data:app", "Content-addressed, immutable dataset versions."),
    Command("runs", "appliance.cli.runs:app",
            "Training runs: what each recorded, side by side, and reruns."),
    Command("models", "appliance.cli.models:app", "Registered models and their versions."),
    Command("feedback", "appliance.cli.feedback:app",
            "Ground-truth labels for served predictions."),
    Command("alerts", "appliance.cli.alerts:app",
            "Alerts raised by the monitor: list, acknowledge, resolve."),
    Command("policy", "appliance.cli.policy:app",
            "Each model's monitoring policy: windows, retraining, canary, promotion."),
    Command("predictions", "appliance.cli.predictions:app",
            "Logged predictions: what the model saw and said, and why."),
    Command("canary", "appliance.cli.canary:app",
            "Challengers behind a model's route: canary or shadow."),
    Command("drift", "appliance.cli.drift:app",
            "Data and prediction drift between a reference and a current window."),
    Command("audit", "appliance.cli.audit:app",
            "The append-only, HMAC-chained audit log and its checkpoints."),
    Command("report", "appliance.cli.report:app",
            "Model cards and monthly audit reports (HTML, Markdown or JSON)."),
    Command("users", "appliance.cli.users:app",
            "Manage users and roles (viewer, operator, approver, admin)."),
    Command("tokens", "appliance.cli.tokens:app", "Issue, list and revoke API tokens."),
)


class RootGroup(LazyGroup):
    """The `appliance` group: `COMMANDS`, each imported when it runs."""

    COMMANDS = COMMANDS

    def parse_args(self, ctx, args):
        # ``--json=FIELDS`` anywhere below the root: `appliance.cli._json_fields`.
        args, fields = split_fields(args)
        if fields is not None:
            ctx.meta[META_KEY] = fields
        return super().parse_args(ctx, args)
