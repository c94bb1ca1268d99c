"""``phase4 export``: the command function; phase4/cli.py registers it with
``app.command("export")(export_command)``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from phase4.alerts.export.core import FORMATS, ExportError, export_deployment, parse_formats


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ExportError(f"{option} {value!r} is not a date: use YYYY-MM-DD") from exc


def export_command(
    deployment: Annotated[str, typer.Option("--deployment", help="Deployment id.")],
    date_from: Annotated[
        str, typer.Option("--from", help="First day of the period (YYYY-MM-DD, UTC).")
    ],
    date_to: Annotated[
        str, typer.Option("--to", help="Last day of the period, included (YYYY-MM-DD, UTC).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder in which the export's own folder is made.")
    ],
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help=f"{'|'.join(FORMATS)}; repeat or give a comma list (default: all).",
        ),
    ] = None,
    actor: Annotated[str, typer.Option(help="Who makes the export (kept in the audit).")] = "cli",
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="PHASE4_DATABASE_URL",
            help="SQLAlchemy URL (default: SQLite in ./phase4-data/phase4.db).",
        ),
    ] = None,
) -> None:
    """Export a deployment's post-market surveillance report, incident register and audit trail.

    With PHASE4_AUDIT_KEY set, the audit trail's head and the manifest are signed.
    """
    from phase4.monitor.core.settings import Settings
    from phase4.monitor.store.audit import AuditHeadError, audit_key_from_env
    from phase4.monitor.store.db import DatabaseURLError, create_db_engine, upgrade

    err = Console(stderr=True)
    try:
        start, end = _date(date_from, "--from"), _date(date_to, "--to")
        chosen = parse_formats(formats)
        key = audit_key_from_env()
        settings = Settings(database_url=database_url) if database_url else Settings()
        url = settings.resolved_database_url()
        upgrade(url)
        engine = create_db_engine(url)
        try:
            result = export_deployment(
                engine, deployment, start, end, chosen, out, actor=actor, audit_key=key
            )
        finally:
            engine.dispose()
    except (ExportError, AuditHeadError, DatabaseURLError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console = Console()
    console.print(f"export written to {result.directory}")
    console.print(
        f"{len(result.files)} files ({', '.join(result.formats)}); manifest SHA-256 "
        f"{result.manifest_sha256}; audit entry {result.audit_seq}"
    )
    if result.audit_head is not None:
        console.print(
            f"signed audit head: entry {result.audit_head.seq}, {result.audit_head.head_hash}"
        )
    elif result.audit_head_error:
        err.print(f"[bold yellow]warning:[/] audit head not signed: {result.audit_head_error}")
    else:
        console.print("audit head not signed (set PHASE4_AUDIT_KEY to sign it)")
