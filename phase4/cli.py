"""The ``phase4`` command: one entry point for the monitor, the demo and the tools around them.

Start-up cost: ``phase4 --help`` and the light commands must not wait for the heavy
dependencies of others (scipy, pandas, evidently, plotly, FastAPI, the regulatory export's
FHIR and PDF stacks): each command imports what it needs when it runs, and ``export`` is
loaded only when it is invoked or asked for its own help (``_LAZY_COMMANDS``).
bench/cli_startup.py measures it.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from phase4.monitor.core.roles import Role
from phase4.phantoms.cli import app as phantom_app
from phase4.revalidate_cli import revalidate_app

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from phase4.monitor.core.settings import Settings


def _env_prefix(title: str) -> str:
    """The environment prefix of the settings class named ``title`` ('' for any other model)."""
    settings_module = sys.modules.get("pydantic_settings")
    stack = list(settings_module.BaseSettings.__subclasses__()) if settings_module else []
    while stack:
        cls = stack.pop()
        if cls.__name__ == title:
            return str(cls.model_config.get("env_prefix", ""))
        stack.extend(cls.__subclasses__())
    return ""


def _bad_input_message(exc: Exception) -> str | None:
    """One line naming what is wrong, for the errors that bad input or a bad setting raises in
    any command; None for anything else (a bug, which keeps its traceback).

    - a setting read from the environment (pydantic-settings) that does not validate: the
      variable and the rule, never the value (it may be a secret such as PHASE4_AUDIT_KEY);
    - a file that cannot be read or written (OSError names the path);
    - a file that is not UTF-8 text;
    - a store that cannot be opened or reached (PHASE4_DATABASE_URL).
    """
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        problems = []
        for item in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in item["loc"])
            name = f"{_env_prefix(exc.title)}{field.upper()}" if _env_prefix(exc.title) else field
            problems.append(f"{name}: {item['msg']}")
        return f"invalid setting {'; '.join(problems)}"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at {exc.start})"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
        first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        return f"cannot use the store (PHASE4_DATABASE_URL): {first_line}"
    return None


class _CommandLine(typer.Typer):
    """The ``phase4`` application: bad input ends in one line on stderr and exit code 2, never a
    traceback (commands name their own input errors; this catches what they leave)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            message = _bad_input_message(exc)
            if message is None:
                raise
            _print_error(message)
            raise SystemExit(2) from None


def _export_command() -> TyperCommand:
    from phase4.alerts.export.cli import export_command

    single = typer.Typer(rich_markup_mode="rich", add_completion=False)
    single.command("export")(export_command)
    return typer.main.get_command(single)


# Commands whose module is imported only when the command runs: name → (loader, help line).
_LAZY_COMMANDS: dict[str, tuple[Any, str]] = {
    "export": (
        _export_command,
        "Export a deployment's post-market surveillance report, incident register and audit trail.",
    ),
}


class _LazyGroup(TyperGroup):
    """The root group: lists the lazy commands by their help line, loads one when used."""

    _listing = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *_LAZY_COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name not in _LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        load, help_line = _LAZY_COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=help_line, short_help=help_line)
        return load()

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = _CommandLine(
    cls=_LazyGroup,
    help="phase4: post-market quality control and drift surveillance for AI in nuclear medicine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store's schema (Alembic migrations).", no_args_is_help=True)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
deployment_app = typer.Typer(
    help="What is being watched: AI model versions at sites.", no_args_is_help=True
)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
reference_app = typer.Typer(
    help="Drift references: what 'in control' means for each stream.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(deployment_app, name="deployment")
app.add_typer(audit_app, name="audit")
app.add_typer(reference_app, name="reference")
probe_app = typer.Typer(help="Probes that run beside the AI.", no_args_is_help=True)
dicom_app = typer.Typer(help="DICOM: features of PET/SPECT series.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")
app.add_typer(dicom_app, name="dicom")
app.add_typer(phantom_app, name="phantom", help="Phantom QC: analyse flood, cylinder, NEMA IQ.")
app.add_typer(revalidate_app, name="revalidate")

# soft_wrap: an error is one line however long its path (a narrow terminal wraps it, not us).
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PHASE4_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite in ./phase4-data/phase4.db).",
    ),
]


def create_db_engine(url: str) -> Engine:
    """phase4.monitor.store.db's engine, imported when a command first needs the store."""
    from phase4.monitor.store.db import create_db_engine as create

    return create(url)


def session_scope(engine: Engine) -> AbstractContextManager[Session]:
    """phase4.monitor.store.db's transaction scope, imported when a command first needs the
    store."""
    from phase4.monitor.store.db import session_scope as scope

    return scope(engine)


def _settings(database_url: str | None) -> Settings:
    from phase4.monitor.core.settings import Settings

    return Settings(database_url=database_url) if database_url else Settings()


def _print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")


def _fail(message: str, code: int = 2) -> typer.Exit:
    _print_error(message)
    return typer.Exit(code)


def _not_text(path: Path, exc: UnicodeDecodeError) -> str:
    return f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def _upgraded_url(database_url: str | None) -> str:
    from phase4.monitor.store.db import DatabaseURLError, upgrade

    url = _settings(database_url).resolved_database_url()
    try:
        upgrade(url)
    except DatabaseURLError as exc:
        raise _fail(str(exc)) from exc
    return url


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOpt = None) -> None:
    """Create or migrate the store's schema to the newest revision (safe to repeat)."""
    url = _upgraded_url(database_url)
    out.print(f"schema up to date at {create_db_engine(url).url.render_as_string(True)}")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind. Keep 127.0.0.1 unless a reverse proxy fronts it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    database_url: DatabaseOpt = None,
) -> None:
    """Run the monitor's API, /metrics and UI (migrates the schema first)."""
    import uvicorn

    from phase4.monitor.core.settings import Settings
    from phase4.service import create_app

    url = _upgraded_url(database_url)
    out.print(
        f"phase4 monitor on http://{host}:{port}  "
        f"(store: {create_db_engine(url).url.render_as_string(True)})"
    )
    uvicorn.run(create_app(Settings(database_url=url)), host=host, port=port, log_level="info")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what holds the token, e.g. 'probe-site-a'.")],
    role: Annotated[
        Role,
        typer.Option(
            help="probe: writes for its site; viewer: reads; reviewer: a named person who "
            "acknowledges and resolves alerts and signs off QC; admin: all."
        ),
    ],
    site: Annotated[
        str | None, typer.Option(help="The site a probe writes for (or a reviewer reviews).")
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(help="Refuse the token this many days from now.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Refuse the token from this time (ISO 8601 with zone).")
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from phase4.monitor.store.auth import TokenError, create_token, token_expiry

    try:
        expiry = token_expiry(expires_in_days=expires_in_days, expires_at=expires_at)
    except TokenError as exc:
        raise _fail(str(exc)) from exc
    engine = create_db_engine(_upgraded_url(database_url))
    try:
        with session_scope(engine) as session:
            raw = create_token(
                session, name=name, role=role, site_id=site, actor="cli", expires_at=expiry
            )
    except TokenError as exc:
        raise _fail(str(exc)) from exc
    err.print("[dim]Store this token now: it is not shown again.[/]")
    print(raw)


@token_app.command("list")
def token_list(database_url: DatabaseOpt = None) -> None:
    """Every token: id, name, role, site, created, expires, revoked, last used, state.

    Never a secret nor its hash. Last use is recorded to the minute."""
    from datetime import datetime

    from phase4.monitor.store.auth import list_tokens
    from phase4.monitor.store.models import utcnow

    engine = create_db_engine(_upgraded_url(database_url))
    with session_scope(engine) as session:
        tokens = list_tokens(session)
    now = utcnow()

    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"

    header = ("id", "name", "role", "site", "created", "expires", "revoked", "last used", "state")
    rows = [header] + [
        (
            str(t.id),
            t.name,
            t.role,
            t.site_id or "*",
            when(t.created_at),
            when(t.expires_at),
            when(t.revoked_at),
            when(t.last_used_at),
            t.state(now),
        )
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="The token's id (a number) or its name.")],
    reason: Annotated[str, typer.Option(help="Why it is revoked (kept in the audit trail).")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke a token: the API and the dashboard refuse it from the next request (audited)."""
    from phase4.monitor.store.auth import TokenError, revoke_token

    engine = create_db_engine(_upgraded_url(database_url))
    try:
        with session_scope(engine) as session:
            info = revoke_token(session, token, reason=reason, actor="cli")
    except TokenError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"revoked token {info.id} ({info.name}, {info.role})")


@deployment_app.command("create")
def deployment_create(
    deployment_id: Annotated[str, typer.Argument(help="Id, e.g. lesion-ai@site-a")],
    site: Annotated[str, typer.Option(help="Site id.")],
    model: Annotated[str, typer.Option(help="AI model name.")],
    version: Annotated[str, typer.Option(help="AI model version.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    monitoring: Annotated[
        str | None,
        typer.Option(
            help="Its monitoring configuration (docs/CONFIGURATION.md): a JSON file, or the "
            "JSON itself when it starts with '{'. Checked before anything is written.",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Register an AI model version in use at a site."""
    from phase4.monitor.core.monitoring import MonitoringConfigError, parse_monitoring
    from phase4.monitor.domain.registry import RegistryError, create_deployment

    config = None
    if monitoring is not None:
        try:
            config = parse_monitoring(_read_json(monitoring))
        except MonitoringConfigError as exc:
            raise _fail(str(exc)) from None
    engine = create_db_engine(_upgraded_url(database_url))
    try:
        with session_scope(engine) as session:
            create_deployment(
                session,
                deployment_id=deployment_id,
                site_id=site,
                model_name=model,
                model_version=version,
                actor="cli",
                reason=reason,
                monitoring=config,
            )
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"deployment {deployment_id} ready")


def _proportion(text: str | None, option: str) -> dict[str, Any] | None:
    """``0.92/412`` or ``92%/412``: a validated proportion and its n."""
    if text is None:
        return None
    value, _, n = text.partition("/")
    try:
        share = float(value.rstrip("% ")) / (100 if value.strip().endswith("%") else 1)
        cases = int(n)
    except ValueError:
        raise _fail(
            f"{option} {text!r}: give the value and its n, e.g. 0.92/412 or 92%/412"
        ) from None
    return {"value": share, "n": cases}


@deployment_app.command("identity")
def deployment_identity(
    deployment_id: Annotated[str, typer.Argument(help="Deployment id, e.g. lesion-ai@site-a")],
    identity: Annotated[
        str | None,
        typer.Option(
            help="The whole identity (docs/EXPORTS.md): a JSON file, or the JSON itself when "
            "it starts with '{'. It replaces the stored one; the options below are laid over it.",
        ),
    ] = None,
    manufacturer: Annotated[str | None, typer.Option(help="Legal manufacturer.")] = None,
    device_name: Annotated[str | None, typer.Option(help="Device (trade) name and model.")] = None,
    basic_udi_di: Annotated[str | None, typer.Option(help="Basic UDI-DI (MDR Art. 27).")] = None,
    mdr_class: Annotated[
        str | None, typer.Option(help="MDR risk class: I, Is, Im, Ir, IIa, IIb or III.")
    ] = None,
    classification_rule: Annotated[
        str | None, typer.Option(help="e.g. 'Annex VIII Rule 11'.")
    ] = None,
    ai_act_high_risk: Annotated[
        bool | None,
        typer.Option(
            "--ai-act-high-risk/--not-ai-act-high-risk",
            help="A high-risk AI system under AI Act Art. 6(1).",
        ),
    ] = None,
    notified_body_name: Annotated[str | None, typer.Option(help="Notified body's name.")] = None,
    notified_body_number: Annotated[
        str | None, typer.Option(help="Its four-digit number (NANDO).")
    ] = None,
    certificate: Annotated[str | None, typer.Option(help="The certificate's number.")] = None,
    intended_use: Annotated[str | None, typer.Option(help="Intended use (MDR Art. 2(12)).")] = None,
    pms_plan_id: Annotated[str | None, typer.Option(help="PMS plan document id.")] = None,
    pms_plan_version: Annotated[str | None, typer.Option(help="PMS plan version.")] = None,
    baseline_sensitivity: Annotated[
        str | None, typer.Option(help="Validated sensitivity and its n: 0.92/412 or 92%/412.")
    ] = None,
    baseline_specificity: Annotated[
        str | None, typer.Option(help="Validated specificity and its n.")
    ] = None,
    baseline_ppv: Annotated[str | None, typer.Option(help="Validated PPV and its n.")] = None,
    baseline_source: Annotated[
        str | None, typer.Option(help="The validation study (document, section, population).")
    ] = None,
    baseline_margin: Annotated[
        float | None,
        typer.Option(help="Shortfall the PMS plan tolerates, absolute (0.05 = 5 points)."),
    ] = None,
    accepted_on: Annotated[
        str | None, typer.Option(help="Accepted for clinical use on (YYYY-MM-DD).")
    ] = None,
    accepted_by: Annotated[str | None, typer.Option(help="Accepted by (name, role).")] = None,
    acceptance_reference: Annotated[
        str | None, typer.Option(help="The acceptance record's reference.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    actor: Annotated[str, typer.Option(help="Who makes the change (kept in the audit).")] = "cli",
    database_url: DatabaseOpt = None,
) -> None:
    """Show or set a deployment's device identity, intended use, PMS plan and validated baseline
    (what the post-market surveillance report names the device by). Without options it shows
    the stored identity; each change is audited."""
    import json

    from phase4.monitor.core.device_identity import (
        DeviceIdentityError,
        merge_identity,
        parse_identity,
    )
    from phase4.monitor.domain.device_identity import (
        IdentityRefused,
        device_identity,
        identity_record,
        set_device_identity,
    )

    changes: dict[str, Any] = {
        "manufacturer": manufacturer,
        "device_name": device_name,
        "basic_udi_di": basic_udi_di,
        "mdr_class": mdr_class,
        "classification_rule": classification_rule,
        "ai_act_high_risk": ai_act_high_risk,
        "intended_use": intended_use,
        "notified_body": {
            "name": notified_body_name,
            "number": notified_body_number,
            "certificate": certificate,
        },
        "pms_plan": {"document_id": pms_plan_id, "version": pms_plan_version},
        "validated_baseline": {
            "sensitivity": _proportion(baseline_sensitivity, "--baseline-sensitivity"),
            "specificity": _proportion(baseline_specificity, "--baseline-specificity"),
            "ppv": _proportion(baseline_ppv, "--baseline-ppv"),
            "source": baseline_source,
            "margin": baseline_margin,
        },
        "clinical_acceptance": {
            "accepted_on": accepted_on,
            "accepted_by": accepted_by,
            "reference": acceptance_reference,
        },
    }
    # None is "not given" on the command line: only what was given changes.
    changes = {
        k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
        for k, v in changes.items()
    }
    changes = {k: v for k, v in changes.items() if v not in (None, {})}
    document = None if identity is None else _read_json(identity, "--identity")
    engine = create_db_engine(_upgraded_url(database_url))
    try:
        with session_scope(engine) as session:
            if document is None and not changes:
                row = identity_record(session, deployment_id)
                if row is None:
                    raise _fail(f"no device identity recorded for {deployment_id!r}", code=1)
                out.print_json(
                    json.dumps(
                        {
                            "deployment_id": deployment_id,
                            "identity": row.identity,
                            "updated_by": row.updated_by,
                            "updated_at": row.updated_at.isoformat(),
                        }
                    )
                )
                return
            base = parse_identity(document) if document is not None else None
            if base is None:
                base = device_identity(session, deployment_id)
            new = merge_identity(base, changes)
            set_device_identity(session, deployment_id, new, actor=actor, reason=reason)
    except (DeviceIdentityError, IdentityRefused) as exc:
        raise _fail(str(exc)) from exc
    out.print(f"device identity of {deployment_id} recorded")


def _read_json(text_or_path: str, option: str = "--monitoring") -> Any:
    """The JSON given inline (text starting with '{') or in the file it names; a document that
    is not JSON ends the command with one line saying where."""
    import json

    inline = text_or_path.lstrip().startswith("{")
    where = option if inline else text_or_path
    text = text_or_path if inline else Path(text_or_path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        Path | None,
        typer.Option(
            "--head",
            help="A signed chain head (phase4 audit sign-head) to check the trail against: "
            "also catches deleted last entries. Needs PHASE4_AUDIT_KEY.",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Recompute the audit trail's hash chain and name the first entry that was altered."""
    from phase4.monitor.store.audit import AuditHeadError, read_head, verify_chain

    engine = create_db_engine(_upgraded_url(database_url))
    try:
        with session_scope(engine) as session:
            verdict = verify_chain(session, head=read_head(head) if head else None)
    except AuditHeadError as exc:
        raise _fail(str(exc)) from exc
    if verdict.ok:
        out.print(
            f"audit trail intact: {verdict.entries_checked} entries, head {verdict.head_hash}"
        )
        if verdict.head_verified and head is not None:
            out.print(f"signed head verified ({head})")
        return
    raise _fail(
        f"audit trail broken at entry {verdict.first_broken_seq}: {verdict.problem} "
        f"({verdict.entries_checked} entries before it verified)",
        code=1,
    )


@audit_app.command("sign-head")
def audit_sign_head(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the signed head JSON.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Sign the audit trail's current head with PHASE4_AUDIT_KEY (HMAC-SHA256); keep the file
    away from the database so that a later `audit verify --head` can detect truncation."""
    from phase4.monitor.store.audit import AuditHeadError, audit_key_from_env, sign_head, write_head

    try:
        key = audit_key_from_env()
        if key is None:
            raise _fail("set PHASE4_AUDIT_KEY (at least 16 bytes) to sign the audit head")
        engine = create_db_engine(_upgraded_url(database_url))
        with session_scope(engine) as session:
            signed = sign_head(session, key)
        write_head(out_path, signed)
    except AuditHeadError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"signed head of entry {signed.seq} written to {out_path}")


@reference_app.command("reset")
def reference_reset(
    deployment: Annotated[str, typer.Option(help="Deployment id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    actor: Annotated[str, typer.Option(help="Who (kept in the audit trail).")] = "cli",
    database_url: DatabaseOpt = None,
) -> None:
    """Discard the references and detector state; the next records form a new reference."""
    from phase4.monitor.surveillance.detection import reset_reference

    engine = create_db_engine(_upgraded_url(database_url))
    try:
        reset_reference(engine, deployment, actor=actor, reason=reason)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"{deployment}: reference discarded; the next records form a new one")


@reference_app.command("declare")
def reference_declare(
    deployment: Annotated[str, typer.Option(help="Deployment id.")],
    stream: Annotated[str, typer.Option(help="The binary stream, e.g. outputs.artifact.")],
    events: Annotated[int, typer.Option(min=0, help="Events in the validation study.")],
    cases: Annotated[int, typer.Option(min=1, help="Cases in the validation study.")],
    source: Annotated[str, typer.Option(help="Where the numbers come from (study, dates).")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    actor: Annotated[str, typer.Option(help="Who (kept in the audit trail).")] = "cli",
    database_url: DatabaseOpt = None,
) -> None:
    """Declare a binary stream's baseline rate from the validation study (events in cases):
    it becomes that stream's reference, audited like an upload, and does not grow."""
    from phase4.monitor.surveillance.detection import declare_baseline

    engine = create_db_engine(_upgraded_url(database_url))
    try:
        change = declare_baseline(
            engine,
            deployment,
            stream,
            cases=cases,
            events=events,
            source=source,
            actor=actor,
            reason=reason,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    out.print(
        f"{deployment} {stream}: baseline {events} events in {cases} cases ({source}); chart "
        f"designed on p0 = {change['p0']:.2%}, to detect p1 = {change['p1']:.2%}",
        markup=False,
        highlight=False,
    )


@reference_app.command("upload")
def reference_upload(
    file: Annotated[Path, typer.Argument(help="CSV with columns like features.liver_suvmean.")],
    deployment: Annotated[str, typer.Option(help="Deployment id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    actor: Annotated[str, typer.Option(help="Who (kept in the audit trail).")] = "cli",
    database_url: DatabaseOpt = None,
) -> None:
    """Set the references from a file (e.g. the validation study) instead of the first records."""
    from phase4.monitor.surveillance.detection import upload_reference
    from phase4.monitor.surveillance.replay import ReplayError, convert_value, infer_kind

    engine = create_db_engine(_upgraded_url(database_url))
    try:
        if not file.exists():
            raise ReplayError(f"{file}: no such file")
        with file.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ReplayError(f"{file}: no data rows")
        kinds = {c: infer_kind([r.get(c) or "" for r in rows]) for c in rows[0] if c != "timestamp"}
        typed = [{c: convert_value(k, r.get(c) or "") for c, k in kinds.items()} for r in rows]
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        summary = upload_reference(
            engine,
            deployment,
            typed,
            actor=actor,
            reason=reason,
            source=f"{file.name} sha256:{digest}",
        )
    except UnicodeDecodeError as exc:
        raise _fail(_not_text(file, exc)) from None
    except csv.Error as exc:
        raise _fail(f"{file}: not a readable CSV ({exc})") from None
    except (ValueError, ReplayError) as exc:
        raise _fail(str(exc)) from exc
    for stream, ref in summary.items():
        out.print(f"{stream}: {ref}")


@probe_app.command("dicom-listen")
def dicom_listen(
    deployment: Annotated[str, typer.Option(help="Deployment the records belong to.")],
    url: Annotated[str, typer.Option(help="The monitor's base URL.")] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(envvar="PHASE4_TOKEN", help="Probe token (or PHASE4_TOKEN).")
    ] = None,
    ae_title: Annotated[str, typer.Option(help="The listener's AE title.")] = "PHASE4",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port for DICOM associations.")] = 11112,
    idle_s: Annotated[
        float, typer.Option(help="A study is complete after this quiet time.")
    ] = 10.0,
    spool: Annotated[Path | None, typer.Option(help="The probe's spool file.")] = None,
) -> None:
    """Receive copies of what the AI is sent and returns (C-STORE), and record each study's
    features and outputs through the probe. Pixels and identifiers never leave: only features
    and the keyed pseudonym (PHASE4_SITE_SECRET) are sent."""
    import signal

    from phase4.probes import Probe
    from phase4.probes.listener.extract import extract_study_record
    from phase4.probes.listener.scp import DicomListener

    if not token:
        raise _fail("a probe token is needed: --token or PHASE4_TOKEN")
    try:
        probe = Probe(url=url, token=token, deployment=deployment, spool_path=spool)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    try:  # settings from PHASE4_LISTENER_* and PHASE4_SITE_SECRET, TLS files, the port
        listener = DicomListener(
            probe=probe,
            extract=extract_study_record,
            ae_title=ae_title,
            host=host,
            port=port,
            idle_s=idle_s,
        ).start()
    except (ValueError, OSError) as exc:  # pydantic's ValidationError is a ValueError
        probe.close()
        message = _bad_input_message(exc) or str(exc).strip().splitlines()[0]
        raise _fail(f"the DICOM listener cannot start: {message}") from None
    out.print(f"listening as {ae_title} on {host}:{listener.port}; Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        probe.close()
        out.print(f"stopped: {listener.stats}")


@dicom_app.command("features")
def dicom_features(
    path: Annotated[Path, typer.Argument(help="A DICOM file, or a folder of one study or series.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Print the features and artifact flags of the PET/NM series found at PATH, or a clear
    error per file that cannot be used."""
    from phase4.probes.listener.extract import describe_path

    code, text = describe_path(path, as_json=as_json)
    print(text)
    raise typer.Exit(code)


@app.command()
def replay(
    events: Annotated[
        Path, typer.Argument(help="CSV with a 'timestamp' column and one column per feature.")
    ],
    out: Annotated[Path, typer.Option(help="Where to write one JSON object per alarm or notice.")],
    reference_size: Annotated[
        int, typer.Option(min=30, help="Rows (per stream) forming the reference.")
    ] = 500,
    studies_per_day: Annotated[float, typer.Option(help="Rows per day, for the budget.")] = 20.0,
    false_alarms_per_year: Annotated[float, typer.Option(help="The false-alarm budget.")] = 1.0,
    numeric: Annotated[str | None, typer.Option(help="Comma-separated numeric columns.")] = None,
    categorical: Annotated[
        str | None, typer.Option(help="Comma-separated categorical columns.")
    ] = None,
    binary: Annotated[
        str | None, typer.Option(help="Comma-separated binary (0/1, true/false) columns.")
    ] = None,
    reference_events_target: Annotated[
        int,
        typer.Option(
            min=0,
            help="Events a binary reference grows toward in audited steps (0: no growth; "
            "growth over-spends the budget in control, docs/STATISTICS.md).",
        ),
    ] = 0,
    reference_events_min: Annotated[
        int,
        typer.Option(min=0, help="Events a binary reference waits for before monitoring starts."),
    ] = 0,
) -> None:
    """Backtest: run last year's logs through the drift engine (the service's own code path).

    Without --numeric/--categorical/--binary every column is monitored, its type inferred.
    """
    from phase4.monitor.surveillance.replay import ReplayError
    from phase4.monitor.surveillance.replay import replay as run_replay

    try:
        summary = run_replay(
            events,
            out,
            reference_size=reference_size,
            studies_per_day=studies_per_day,
            false_alarms_per_year=false_alarms_per_year,
            numeric=numeric,
            categorical=categorical,
            binary=binary,
            reference_events_target=reference_events_target,
            reference_events_min=reference_events_min,
        )
    except UnicodeDecodeError as exc:
        raise _fail(_not_text(events, exc)) from None
    except csv.Error as exc:
        raise _fail(f"{events}: not a readable CSV ({exc})") from None
    except ReplayError as exc:
        raise _fail(str(exc)) from exc
    kinds = ", ".join(f"{c} ({k})" for c, k in summary.streams.items())
    out.parent.mkdir(parents=True, exist_ok=True)
    err.print(
        f"{summary.rows:,} rows; streams: {kinds}\n"
        f"{summary.alarms} alarms and {summary.notices} notices written to {summary.out}"
    )
    # The reference each stream actually used: a binary stream's may have grown past
    # --reference-size (to hold enough events) into the rows the backtest judges.
    for ref in summary.references:
        err.print(ref.sentence(), markup=False, highlight=False)
        for line in ref.growth_sentences():
            err.print(line, markup=False, highlight=False)
    if summary.references_out is not None:
        err.print(f"references written to {summary.references_out}")


@app.command()
def detect(
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    database_url: DatabaseOpt = None,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Keep analysing what arrives, a pass every --interval-s; any number of such "
            "workers can share one PostgreSQL store (each deployment claimed by one at a time).",
        ),
    ] = False,
    interval_s: Annotated[
        float, typer.Option(min=0.0, help="With --loop: seconds between passes when idle.")
    ] = 5.0,
    stop_when_idle: Annotated[
        bool, typer.Option(help="With --loop: stop after a pass that found nothing to do.")
    ] = False,
) -> None:
    """Run the drift engine over everything stored and not yet analysed (the service does this
    continuously); print the alerts it opened."""
    from phase4.monitor.surveillance.detection import ConfigError, detect_all, detect_deployment

    engine = create_db_engine(_upgraded_url(database_url))
    if loop:
        from phase4.monitor.surveillance.detection import PassResult
        from phase4.service import run_detection_loop

        def said(results: list[PassResult]) -> None:
            done = [r for r in results if r.records or r.feedback]
            if done:
                out.print(f"pass: {sum(r.records for r in done):,} records analysed")

        try:
            run_detection_loop(engine, interval_s, stop_when_idle=stop_when_idle, on_pass=said)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        return
    try:
        results = [detect_deployment(engine, deployment)] if deployment else detect_all(engine)
    except (ValueError, ConfigError) as exc:
        raise _fail(str(exc)) from exc
    for r in results:
        out.print(
            f"{r.deployment}: {r.records:,} records and {r.feedback:,} labelled outcomes analysed, "
            f"{len(r.alarms)} alarms, {len(r.alerts_opened)} new alerts"
        )


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's store and spool go (recreated).")
    ] = Path("phase4-data/demo"),
    days: Annotated[int, typer.Option(min=30, help="Simulated days of clinical use.")] = 365,
    studies_per_day: Annotated[
        float, typer.Option(min=1, help="Mean FDG-PET studies per site per day.")
    ] = 20.0,
    seed: Annotated[
        int, typer.Option(help="Random seed (the same seed tells the same story).")
    ] = 7,
    serve: Annotated[
        bool, typer.Option(help="Keep the monitor and its dashboard running until Ctrl-C.")
    ] = False,
    port: Annotated[
        int, typer.Option(help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)
    ] = 0,
) -> None:
    """Simulate a year of an FDG-PET lesion AI at two sites: real probe, API and store, phantom
    QC, alerts by email, exports; ends with the dashboard's URL."""
    from phase4.demo.run import run_demo

    run_demo(
        data_dir=data_dir,
        days=days,
        studies_per_day=studies_per_day,
        seed=seed,
        console=out,
        serve=serve,
        port=port,
    )


if __name__ == "__main__":
    app()
