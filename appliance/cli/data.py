"""`appliance data`: register, list, show dataset versions and accept a failed contract."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.artifacts import ArtifactStore
from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.registry import datasets
from appliance.registry.contract import ContractStatus
from appliance.store import session_scope

app = typer.Typer(help="Content-addressed, immutable dataset versions.")


def _warn_if_blocked(doc: datasets.DatasetPublic) -> None:
    if doc.contract_status != ContractStatus.failed.value:
        return
    ref = f"{doc.name}:{doc.version}"
    err_console.print(
        f"warning: dataset {ref} fails its data contract against {doc.contract.baseline} "
        f"({len(doc.contract.blocking())} violation(s)): {doc.contract.summary()}; training "
        f"on it is refused until accepted: appliance data accept {ref} --reason '...'",
        soft_wrap=True, markup=False, highlight=False,
    )


@app.command("add")
def add(
    file: Path = typer.Argument(..., help="Parquet or CSV file."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    label: str = typer.Option(
        None, "--label",
        help="Label column whose class balance the data contract keeps (default: the previous "
             "version's, else 'label' if there is one)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(datasets.DatasetPublic),
) -> None:
    """Register FILE as the next version of dataset NAME (identical content is not re-added).

    The version is checked against the last good one; a violation registers it all the same
    (exit 0) with a warning on stderr, and blocks training on it until `data accept`.
    """
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        doc = datasets.register_file(session, user, ArtifactStore(cfg.artifacts), file, name,
                                     label=label)
    _warn_if_blocked(doc)
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "version", "rows", "contract", "digest"],
                    [[doc.name, doc.version, doc.rows, doc.contract_status, doc.digest[:16]]])


@app.command("list")
def list_(
    json_out: bool = json_option(list[datasets.DatasetPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List dataset versions."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = [datasets.to_public(d) for d in datasets.list_versions(session)]
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "version", "rows", "contract", "digest", "age"],
                    [[d.name, d.version, d.rows, d.contract_status, d.digest[:16],
                      d.created_at] for d in docs])


@app.command("show")
def show(
    ref: str = typer.Argument(..., metavar="NAME[:VERSION]", help="Dataset version (default "
                              "the latest)."),
    json_out: bool = json_option(datasets.DatasetPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Show one dataset version with its data contract status and report."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = datasets.to_public(datasets.resolve(session, ref))
    if json_out:
        emit_json(doc)
        return
    print_table(["name", "version", "rows", "label", "purpose", "contract", "baseline",
                 "digest"],
                [[doc.name, doc.version, doc.rows, doc.label or "<none>",
                  doc.contract.purpose.value if doc.contract else "<none>", doc.contract_status,
                  (doc.contract.baseline if doc.contract else None) or "<none>",
                  doc.digest[:16]]])
    if doc.contract and doc.contract.violations:
        # Severity: "block" fails the version; "warn" is drift a retraining set may show.
        print_table(["column", "check", "severity", "message"],
                    [[v.column or "<table>", v.check, v.severity.value, v.message]
                     for v in doc.contract.violations])
    if doc.contract_accepted_by:
        print_table(["accepted_by", "accepted_at", "reason"],
                    [[doc.contract_accepted_by, doc.contract_accepted_at,
                      doc.contract_accepted_reason]])


@app.command("accept")
def accept(
    ref: str = typer.Argument(..., metavar="NAME:VERSION", help="The version to accept."),
    reason: str = typer.Option(..., "--reason", help="Why its violations are acceptable."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(datasets.DatasetPublic),
) -> None:
    """Accept a version that failed its data contract, so it can be trained on (audited)."""
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        doc = datasets.to_public(datasets.accept_contract(session, user, ref, reason))
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "version", "contract", "accepted_by", "reason"],
                    [[doc.name, doc.version, doc.contract_status, doc.contract_accepted_by,
                      doc.contract_accepted_reason]])
