"""`appliance down`: stop the local Ray head `appliance deploy` started, and all it serves."""

from __future__ import annotations

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.pipelines import lifecycle


def _say(text: str) -> None:
    # One line each, verbatim: an error text from Ray may hold brackets rich would parse.
    err_console.print(text, soft_wrap=True, markup=False, highlight=False)


def down(
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(lifecycle.DownPublic),
) -> None:
    """Shut Serve down, stop the local Ray head's processes, and close the deployment ledger.

    Never touches a cluster set by ray_address / RAY_ADDRESS. With no head running, says so
    and exits 0.
    """
    cfg, user = acting(token or token_file, "operate")
    with err_console.status("stopping the local Ray head..."):
        done = lifecycle.down(cfg, user)
    if json_out:
        emit_json(done)
    if done.address is None:
        _say("no local Ray head is recorded; nothing runs")
    else:
        how = ("after a graceful Serve shutdown" if done.serve_shutdown
               else f"without a graceful Serve shutdown ({done.serve_error})"
               if done.serve_error else "(it did not answer, so Serve was not shut down first)")
        forced = f"; {len(done.killed)} needed SIGKILL" if done.killed else ""
        _say(f"stopped the local Ray head at {done.address}: {len(done.pids)} processes "
             f"{how}{forced}")
    if done.deployments_closed:
        names = ", ".join(f"{d.name}:{d.version}" + ("" if d.role == "primary" else f" ({d.role})")
                          for d in done.deployments_closed)
        _say(f"closed {len(done.deployments_closed)} deployment(s) in the ledger: {names}")
