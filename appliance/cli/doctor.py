"""`appliance doctor`: is this node fit to run the appliance? Exit 1 with the findings if not."""

from __future__ import annotations

from appliance import doctor as checks
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.config import load_config
from appliance.errors import CheckFailed


def doctor(json_out: bool = json_option(checks.Report)) -> None:
    """Check Ray (version, auth, ports), the store (reachable, migrated), artifacts (writable,
    disk), the audit chain, GPUs and clock skew; exit 1 when any check fails.

    Needs no token: it must work when the store does not, and shows health, not data.
    """
    # Not the commands' config(): that would migrate the store this checks.
    report = checks.run(load_config())
    if json_out:
        emit_json(report)
    else:
        print_table(["check", "status", "detail"],
                    [[c.name, c.status, c.detail] for c in report.checks])
    if not report.ok:
        failed = [c for c in report.checks if c.status == checks.FAIL]
        raise CheckFailed(f"{len(failed)} check(s) failed: "
                          + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    if report.findings:
        err_console.print(f"{len(report.findings)} warning(s)", markup=False)
