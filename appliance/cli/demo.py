"""`appliance demo`: run the whole loop on a fresh embedded appliance."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from appliance.cli._json_fields import json_option
from appliance.cli._output import data_stream, emit_json, err_console
from appliance.demo import DemoPlan, DemoSummaryPublic, demo_config, run_demo
from appliance.errors import InvalidInput


def demo(
    home: Path = typer.Option(None, help="Folder for the demo's appliance (default: a new "
                              "temporary folder)."),
    json_out: bool = json_option(DemoSummaryPublic),
) -> None:
    """Play a world of drifting traffic and late labels; the monitor closes the loop.

    The demo sets up and deploys a first model, starts `appliance monitor` as its own
    process, and then only sends traffic, posts late labels and approves what the monitor
    asks for. Detecting drift, retraining, canary and promotion are the monitor's work.
    """
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    elif home.exists() and not home.is_dir():
        raise InvalidInput(f"demo home {str(home)!r} is not a folder; pass a new folder")
    elif home.exists() and any(home.iterdir()):
        raise InvalidInput(f"demo home {str(home)!r} is not empty; pass a new folder")
    cfg = demo_config(home)
    plan = DemoPlan()
    columns = [SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}")]
    with Progress(*columns, console=err_console, transient=False) as progress:
        # The world runs until the monitor has recovered the model: no known step count.
        task = progress.add_task("starting", total=None)
        last: list[str] = []

        def step(message: str) -> None:
            # Window steps only tick over; what the monitor did is news, not a step we took.
            if last and last[-1].startswith("monitor: "):
                progress.console.print(f"[cyan]•[/] {last[-1].removeprefix('monitor: ')}")
            elif last and not last[-1].startswith("window "):
                progress.console.print(f"[green]✓[/] {last[-1]}")
            last.append(message)
            progress.update(task, description=message)

        try:
            summary = run_demo(cfg, plan, step=step)
        finally:
            _shutdown()
        step("done")
    if json_out:
        emit_json(DemoSummaryPublic.model_validate(summary))
    else:
        _print_summary(summary)


def _shutdown() -> None:
    # The demo owns its Ray and Serve: stop them so the process exits promptly and cleanly.
    # Deferred so that `appliance --help` and every other command start without Ray.
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _print_summary(s: dict) -> None:
    # The summary is the command's output; long lines must not be broken mid-path.
    out = Console(file=data_stream(), soft_wrap=True)
    out.print()
    out.print(f"[bold]Demo finished in {s['seconds']} s[/] (appliance home: {s['home']})")
    trained = ", ".join(f"v{v['version']} by {v['created_by']}" for v in s["versions"])
    out.print(f"  versions:               {trained}; champion now v{s['champion']}")
    out.print(f"  drift detected:         window {s['drift_detected_window']} (stream drifted "
              f"from window {s['first_drifted_window']}, strength 0.3 at window "
              f"{s['ramp_reaches_0_3_window']})")
    acc = s["accuracy_alert"]
    if acc:
        out.print(f"  accuracy alert:         for window {acc['window']}, raised during window "
                  f"{acc['raised_during_window']} when its late labels landed")
    ds = s["retrain_dataset"]
    if ds:
        out.print(f"  retraining set:         {ds['dataset']}: {ds['production_rows']} logged, "
                  f"labelled production rows from windows {ds['windows']}")
    c = s["canary"]
    if c:
        out.print(f"  canary:                 {c['mode']} {c['share']}: {c['verdict']} "
                  f"({c['reason']})")
    out.print(f"  live accuracy:          before drift {_pct(s['accuracy_before_drift'])}, "
              f"drifted {_pct(s['accuracy_during_drift'])}, after recovery "
              f"{_pct(s['accuracy_after_recovery'])}; recovered "
              f"{s['seconds_to_recover']} s after the first drift alert")
    out.print(f"  predictions:            served {s['served']}, logged {s['logged']}")
    f = s["fairness"]
    if f["windows"]:
        out.print(f"  fairness ({f['attribute']}):       disparate impact ratio down to "
                  f"{f['min_disparate_impact_ratio']:.2f}; below four-fifths in "
                  f"{f['windows_below_four_fifths']} of {f['windows']} windows")
    out.print(f"  audit chain:            {s['audit']['events']} events, "
              f"{'verified' if s['audit']['verified'] else 'BROKEN'}")
    out.print(f"  explore:                APPLIANCE_HOME={s['home']} appliance canary status "
              "credit")
    out.print(f"  for auditors:           APPLIANCE_HOME={s['home']} appliance report model "
              "credit -o card.html")
    out.print(f"                          APPLIANCE_HOME={s['home']} appliance report audit "
              f"--month {dt.datetime.now(dt.timezone.utc):%Y-%m} -o audit.html")
    if s["first_request_id"]:
        out.print(f"                          APPLIANCE_HOME={s['home']} appliance predictions "
                  f"explain {s['first_request_id']}")
