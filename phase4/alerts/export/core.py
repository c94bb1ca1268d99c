"""One regulatory export of one deployment over one period: report, registers, audit, manifest.

The export is written into a hidden temporary folder beside its destination and renamed into
place only when every file and the manifest are written and the export is in the audit trail;
on any error nothing is left behind (and the audit entry is rolled back).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from phase4.alerts.export.fhir import audit_bundle
from phase4.alerts.export.manifest import build_manifest, write_manifest
from phase4.alerts.export.report import Period, build_report
from phase4.alerts.export.tables import tables, write_csv
from phase4.monitor.store.audit import (
    AuditHeadError,
    SignedHead,
    check_audit_key,
    record_action,
    sign_head,
)
from phase4.monitor.store.models import Deployment

FORMATS: tuple[str, ...] = ("json", "csv", "pdf", "fhir")
REPORT_JSON = "report.json"
REPORT_PDF = "report.pdf"
AUDIT_FHIR = "audit_fhir.json"
CSV_DIR = "csv"


class ExportError(ValueError):
    """The export cannot be made as asked; the message says what is wrong."""


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    files: tuple[str, ...]  # paths relative to ``directory``, manifest.json included
    formats: tuple[str, ...]
    manifest_sha256: str
    audit_seq: int  # the export's own entry in the audit trail
    audit_head: SignedHead | None
    audit_head_error: str | None = None  # why a key was given but no head could be signed


def parse_formats(values: Iterable[str] | None) -> set[str]:
    """Formats from repeated options and/or comma lists (``["json,csv", "pdf"]``); none = all.

    Raises ExportError naming any unknown format.
    """
    chosen: set[str] = set()
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip().lower()
            if part:
                chosen.add(part)
    if not chosen:
        return set(FORMATS)
    unknown = sorted(chosen - set(FORMATS))
    if unknown:
        raise ExportError(
            f"unknown export format {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(FORMATS)}"
        )
    return chosen


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text)


def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output folder {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ExportError(f"output folder {out_dir} is not writable")
    return out_dir


def _unknown_deployment(session: Session, deployment_id: str) -> ExportError:
    known = list(session.exec(select(Deployment.id).order_by(col(Deployment.id)).limit(11)))
    listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
    return ExportError(
        f"no deployment {deployment_id!r}" + (f" (known: {listed})" if known else " (none yet)")
    )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_files(tmp: Path, report: dict[str, Any], formats: set[str]) -> None:
    if "json" in formats:
        _write_json(tmp / REPORT_JSON, report)
    if "csv" in formats:
        (tmp / CSV_DIR).mkdir()
        for stem, (columns, rows) in tables(report).items():
            write_csv(tmp / CSV_DIR / f"{stem}.csv", columns, rows)
    if "pdf" in formats:
        from phase4.alerts.export.pdf import render_pdf

        (tmp / REPORT_PDF).write_bytes(render_pdf(report))
    if "fhir" in formats:
        bundle = audit_bundle(
            report["audit"]["entries"],
            observer=report["deployment"]["site_id"],
            timestamp=report["generated_at"],
            bundle_id=f"phase4-audit-{report['generated_at'][:10]}",
        )
        _write_json(tmp / AUDIT_FHIR, bundle)


def export_deployment(
    engine: Engine,
    deployment_id: str,
    start: date,
    end: date,
    formats: set[str],
    out_dir: Path,
    *,
    actor: str,
    audit_key: bytes | None = None,
    as_of: date | None = None,
    now: datetime | None = None,
) -> ExportResult:
    """Export one deployment's surveillance data for the whole UTC days ``start`` to ``end``.

    Writes ``<out_dir>/phase4-export_<deployment>_<start>_<end>_<UTC time>/`` with the chosen
    ``formats`` (json, csv, pdf, fhir) and manifest.json, and records the export in the audit
    trail. ``audit_key`` (normally ``PHASE4_AUDIT_KEY``) signs the audit head and the manifest.
    Reporting clocks are evaluated on ``as_of`` (default: today, UTC).
    """
    formats = parse_formats(formats)
    if start > end:
        raise ExportError(f"the period is empty: from {start} is after to {end}")
    actor = (actor or "").strip()
    if not actor:
        raise ExportError("an actor is required: say who makes the export (kept in the audit)")
    if audit_key is not None:
        try:
            check_audit_key(audit_key)
        except AuditHeadError as exc:
            raise ExportError(str(exc)) from exc
    out_dir = _prepare_out_dir(out_dir)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ExportError("now must carry a time zone")
    as_of = as_of or now.astimezone(UTC).date()
    period = Period(start, end)

    with Session(engine, expire_on_commit=False) as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            raise _unknown_deployment(session, deployment_id)
        report = build_report(
            session, deployment, period, generated_at=now, generated_by=actor, as_of=as_of
        )
        head: SignedHead | None = None
        head_error: str | None = None
        if audit_key is not None:
            try:
                head = sign_head(session, audit_key)
            except AuditHeadError as exc:
                head_error = str(exc)

        name = f"phase4-export_{_slug(deployment_id)}_{start}_{end}_{now:%Y%m%dT%H%M%SZ}"
        final = out_dir / name
        suffix = 1
        while final.exists():
            suffix += 1
            final = out_dir / f"{name}-{suffix}"
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".phase4-export-", dir=out_dir))
        except OSError as exc:
            raise ExportError(f"output folder {out_dir} is not writable: {exc}") from exc
        renamed = False
        try:
            _write_files(tmp, report, formats)
            meta: dict[str, Any] = {
                "deployment": deployment_id,
                "period": {"from": start.isoformat(), "to": end.isoformat()},
                "generated_at": report["generated_at"],
                "generated_by": actor,
                "formats": sorted(formats),
                "audit_chain": report["audit"]["chain"],
                "audit_head": head.to_dict() if head else None,
            }
            if head_error:
                meta["audit_head_error"] = head_error
            manifest_sha = write_manifest(tmp, build_manifest(tmp, meta), audit_key)
            files = tuple(
                sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            )
            entry = record_action(
                session,
                actor=actor,
                action="export",
                entity_type="deployment",
                entity_id=deployment_id,
                reason=f"post-market surveillance export {start} to {end}",
                new_value={
                    "period": {"from": start.isoformat(), "to": end.isoformat()},
                    "formats": sorted(formats),
                    "files": len(files),
                    "folder": final.name,
                    "manifest_sha256": manifest_sha,
                    "audit_head_seq": head.seq if head else None,
                },
            )
            tmp.rename(final)
            renamed = True
            session.commit()
        except BaseException as exc:
            session.rollback()
            shutil.rmtree(final if renamed else tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ExportError(f"writing the export in {out_dir} failed: {exc}") from exc
            raise
    return ExportResult(
        directory=final,
        files=files,
        formats=tuple(f for f in FORMATS if f in formats),
        manifest_sha256=manifest_sha,
        audit_seq=entry.seq,
        audit_head=head,
        audit_head_error=head_error,
    )
