"""`appliance data`: register and list dataset versions."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.registry import datasets
from appliance.store import session_scope
from appliance.store.models import Dataset

app = typer.Typer(help="Content-addressed, immutable dataset versions.")


def _public(ds: Dataset) -> dict:
    return {"name": ds.name, "version": ds.version, "digest": ds.digest, "rows": ds.rows,
            "columns": ds.columns, "source": ds.source, "created_by": ds.created_by,
            "created_at": ds.created_at}


@app.command("add")
def add(
    file: Path = typer.Argument(..., help="Parquet or CSV file."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Register FILE as the next version of dataset NAME (identical content is not re-added)."""
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        ds = datasets.add_file(session, ArtifactStore(cfg.artifacts), file, name, actor=user.name)
    if json_out:
        emit_json(_public(ds))
    else:
        print_table(["name", "version", "rows", "digest"],
                    [[ds.name, ds.version, ds.rows, ds.digest[:16]]])


@app.command("list")
def list_(
    json_out: bool = typer.Option(False, "--json"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List dataset versions."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        rows = session.exec(select(Dataset).order_by(Dataset.name, Dataset.version)).all()
    if json_out:
        emit_json([_public(d) for d in rows])
    else:
        print_table(["name", "version", "rows", "digest", "age"],
                    [[d.name, d.version, d.rows, d.digest[:16], d.created_at] for d in rows])
