"""``phase4 revalidate``: the revalidation gate of a new model version from the command line
(docs/REVALIDATION.md): open, declare-criteria, attach-validation-set, attach-shadow, evaluate,
decide, show, list. The same domain functions as the API, so the same order is enforced and
every step is audited under the ``--by`` name; bad input is one line naming it and exit 2.

The statistics are Tango's (1998) score interval, McNemar's (1947) exact test and the paired
bootstrap (Efron & Tibshirani 1993), in ``phase4.monitor.drift.paired``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

revalidate_app = typer.Typer(
    help="Revalidate a new model version before it counts (criteria, evidence, decision).",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PHASE4_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite in ./phase4-data/phase4.db).",
    ),
]
Deployment = Annotated[str, typer.Argument(help="Deployment id, e.g. lesion-ai@site-a")]
RevalidationOpt = Annotated[
    int | None,
    typer.Option(
        "--id",
        min=1,
        max=2**31 - 1,
        help="The revalidation's id (default: the deployment's open one).",
    ),
]
By = Annotated[str, typer.Option("--by", help="Who does this (kept in the audit trail).")]


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(2)


def _engine(database_url: str | None) -> Any:
    from phase4.monitor.core.settings import Settings
    from phase4.monitor.store.db import DatabaseURLError, create_db_engine, upgrade

    settings = Settings(database_url=database_url) if database_url else Settings()
    url = settings.resolved_database_url()
    try:
        upgrade(url)
    except DatabaseURLError as exc:
        raise _fail(str(exc)) from exc
    return create_db_engine(url)


def _step(database_url: str | None, deployment: str, rid: int | None, action: Any) -> Any:
    """Run ``action(session, revalidation)`` in one transaction; a refusal is one line."""
    from phase4.monitor.core.refusals import ActionRefused
    from phase4.monitor.domain.revalidation import (
        get_revalidation,
        open_revalidation_of,
        revalidation_out,
    )
    from phase4.monitor.store.db import session_scope

    engine = _engine(database_url)
    try:
        with session_scope(engine) as session:
            if rid is None:
                r = open_revalidation_of(session, deployment)
                if r is None:
                    raise _fail(f"deployment {deployment!r} has no open revalidation (give --id)")
            else:
                r = get_revalidation(session, deployment, rid)
            r = action(session, r)
            return revalidation_out(r)
    except ActionRefused as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()


def _say(r: dict[str, Any]) -> None:
    out.print(
        f"revalidation {r['id']} of {r['deployment']}: {r['candidate_version']} against "
        f"{r['accepted_version']}: {r['status']}"
        + (f", evaluation {r['verdict']}" if r["verdict"] else "")
        + (f", {r['decision']} by {r['decided_by']}" if r["decision"] else "")
    )


@revalidate_app.command("open")
def open_(
    deployment: Deployment,
    version: Annotated[str, typer.Option(help="The candidate model version, e.g. 2.2.0.")],
    by: By,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Open a revalidation of a new version (refused while one is open)."""
    from phase4.monitor.core.refusals import ActionRefused
    from phase4.monitor.domain.revalidation import open_revalidation, revalidation_out
    from phase4.monitor.store.db import session_scope

    engine = _engine(database_url)
    try:
        with session_scope(engine) as session:
            r = revalidation_out(
                open_revalidation(session, deployment, version, actor=by, reason=reason)
            )
    except ActionRefused as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    _say(r)


def _margin(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise _fail(f"--{option}: {text!r} is not a number (0.05 or 5%)") from None
    if not 0 < value < 1:
        raise _fail(f"--{option}: a margin lies between 0 and 1 (0.05 or 5%)")
    return value


@revalidate_app.command("declare-criteria")
def declare_criteria(
    deployment: Deployment,
    by: By,
    sensitivity: Annotated[
        str | None, typer.Option(help="Non-inferiority margin (0.05, 5%).")
    ] = None,
    specificity: Annotated[str | None, typer.Option(help="Non-inferiority margin.")] = None,
    ppv: Annotated[str | None, typer.Option(help="Non-inferiority margin for PPV.")] = None,
    dice: Annotated[str | None, typer.Option(help="Non-inferiority margin for mean Dice.")] = None,
    positive_rate_change: Annotated[
        str | None, typer.Option(help="Largest change of the positive-call rate (±).")
    ] = None,
    prediction: Annotated[str | None, typer.Option(help="The output that is the call.")] = None,
    truth: Annotated[str | None, typer.Option(help="The ground_truth key of the truth.")] = None,
    rid: RevalidationOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Declare the acceptance criteria (before any evidence is attached)."""
    from phase4.monitor.domain import revalidation as rv

    given = {
        "sensitivity": _margin(sensitivity, "sensitivity"),
        "specificity": _margin(specificity, "specificity"),
        "ppv": _margin(ppv, "ppv"),
        "dice": _margin(dice, "dice"),
        "positive_rate_change": _margin(positive_rate_change, "positive-rate-change"),
    }
    margins = {k: v for k, v in given.items() if v is not None}
    if not margins:
        raise _fail("give at least one margin (--sensitivity, --specificity, --ppv, --dice, ...)")
    _say(
        _step(
            database_url,
            deployment,
            rid,
            lambda s, r: rv.declare_criteria(
                s, r, margins, actor=by, prediction=prediction, truth=truth
            ),
        )
    )


@revalidate_app.command("attach-validation-set")
def attach_validation_set(
    deployment: Deployment,
    csv_path: Annotated[Path, typer.Argument(help="The locked validation set (CSV).")],
    by: By,
    rid: RevalidationOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Attach the locked validation set: case_id, truth, accepted_call, candidate_call (0/1),
    optional accepted_dice, candidate_dice. Its SHA-256 is recorded."""
    from phase4.monitor.domain import revalidation as rv

    try:
        data = csv_path.read_bytes()
    except OSError as exc:
        raise _fail(f"{csv_path}: {exc.strerror or exc}") from exc
    r = _step(
        database_url,
        deployment,
        rid,
        lambda s, r: rv.attach_validation_set(s, r, data, actor=by, filename=csv_path.name),
    )
    _say(r)
    out.print(f"sha256 {r['validation_sha256']} ({r['validation_cases']} cases)")


@revalidate_app.command("attach-shadow")
def attach_shadow(
    deployment: Deployment, by: By, rid: RevalidationOpt = None, database_url: DatabaseOpt = None
) -> None:
    """Attach the shadow traffic received so far (both versions on the same studies)."""
    from phase4.monitor.domain import revalidation as rv

    _say(_step(database_url, deployment, rid, lambda s, r: rv.attach_shadow(s, r, actor=by)))


def _results_table(r: dict[str, Any]) -> Table:
    table = Table(title=f"revalidation {r['id']}: {r['verdict'] or 'not evaluated'}")
    for col in (
        "criterion",
        "n",
        "accepted",
        "candidate",
        "difference (95% CI)",
        "margin",
        "verdict",
    ):
        table.add_column(col)

    def ci(x: dict[str, float] | None) -> str:
        return "—" if x is None else f"{x['estimate']:.3f} ({x['low']:.3f} to {x['high']:.3f})"

    for x in (r["results"] or {}).get("results", []):
        table.add_row(
            x["criterion"], str(x["n"]), ci(x["accepted"]), ci(x["candidate"]),
            ci(x["difference"]), f"{x['margin']:g}", x["verdict"],
        )  # fmt: skip
    return table


@revalidate_app.command("evaluate")
def evaluate(
    deployment: Deployment, by: By, rid: RevalidationOpt = None, database_url: DatabaseOpt = None
) -> None:
    """Compare the versions on the evidence against the declared criteria."""
    from phase4.monitor.domain import revalidation as rv

    r = _step(database_url, deployment, rid, lambda s, r: rv.evaluate(s, r, actor=by))
    _say(r)
    out.print(_results_table(r))


@revalidate_app.command("decide")
def decide(
    deployment: Deployment,
    decision: Annotated[str, typer.Argument(help="accept, accept_with_conditions or reject.")],
    by: By,
    conditions: Annotated[
        str | None, typer.Option(help="Required to accept with conditions.")
    ] = None,
    rid: RevalidationOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """A named reviewer's decision; accepting makes the candidate the deployment's version."""
    from phase4.monitor.domain import revalidation as rv

    _say(
        _step(
            database_url,
            deployment,
            rid,
            lambda s, r: rv.decide(s, r, decision, actor=by, conditions=conditions),
        )
    )


@revalidate_app.command("show")
def show(
    deployment: Deployment,
    rid: RevalidationOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole record as JSON.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """One revalidation: criteria, evidence, results, decision."""
    r = _step(database_url, deployment, rid, lambda s, r: r)
    if as_json:
        out.print_json(json.dumps(r, default=str))
        return
    _say(r)
    if r["criteria"]:
        out.print(f"criteria: {r['criteria']['margins']} (by {r['criteria_by']})")
    if r["validation_sha256"]:
        out.print(f"validation set: {r['validation_cases']} cases, sha256 {r['validation_sha256']}")
    if r["shadow"]:
        out.print(f"shadow traffic: {r['shadow']}")
    if r["results"]:
        out.print(_results_table(r))


@revalidate_app.command("list")
def list_(
    deployment: Annotated[str | None, typer.Argument(help="Only this deployment.")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Every revalidation, newest first."""
    from phase4.monitor.domain.revalidation import list_revalidations, revalidation_out
    from phase4.monitor.store.db import session_scope

    engine = _engine(database_url)
    try:
        with session_scope(engine) as session:
            rows = [revalidation_out(r) for r in list_revalidations(session, deployment)]
    finally:
        engine.dispose()
    if not rows:
        out.print("no revalidations")
    for r in rows:
        _say(r)
