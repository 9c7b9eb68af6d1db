"""`appliance demo`: run the whole loop on a fresh embedded appliance."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from appliance.cli._output import data_stream, emit_json, err_console
from appliance.demo import DemoPlan, demo_config, run_demo, step_count
from appliance.errors import InvalidInput


def demo(
    home: Path = typer.Option(None, help="Folder for the demo's appliance (default: a new "
                              "temporary folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary document."),
) -> None:
    """Train, govern, deploy, watch drift, retrain and promote: the whole loop in minutes."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    elif home.exists() and any(home.iterdir()):
        raise InvalidInput(f"demo home {str(home)!r} is not empty; pass a new folder")
    cfg = demo_config(home)
    plan = DemoPlan()
    columns = [SpinnerColumn(), BarColumn(bar_width=24), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}")]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("starting", total=step_count(plan))
        last: list[str] = []

        def step(message: str) -> None:
            if last:
                progress.console.print(f"[green]✓[/] {last[-1]}")
                progress.advance(task)
            last.append(message)
            progress.update(task, description=message)

        try:
            summary = run_demo(cfg, plan, step=step)
        finally:
            _shutdown()
        step("done")
    if json_out:
        emit_json(summary)
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
    out.print(f"  versions trained:       {', '.join(str(v['version']) for v in s['versions'])}"
              f"; champion now v{s['champion']}")
    out.print(f"  drift detected:         window {s['drift_detected_window']} "
              f"(stream drifted from window {s['first_drifted_window']})")
    out.print(f"  alerts to the owner:    {len(s['alerts'])} "
              f"({', '.join(sorted({a['kind'] for a in s['alerts']})) or 'none'})")
    out.print(f"  live accuracy:          before drift {_pct(s['accuracy_before_drift'])}, "
              f"during drift {_pct(s['accuracy_during_drift'])}, after retraining "
              f"{_pct(s['accuracy_after_recovery'])}")
    out.print(f"  predictions:            served {s['served']}, logged {s['logged']}")
    out.print(f"  audit chain:            {s['audit']['events']} events, "
              f"{'verified' if s['audit']['verified'] else 'BROKEN'}")
    out.print(f"  explore:                APPLIANCE_HOME={s['home']} appliance lineage "
              "credit@champion")
