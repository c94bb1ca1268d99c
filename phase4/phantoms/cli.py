"""``phase4 phantom analyze``: analyse one phantom series and print a table or JSON.

Exit codes: 0 done; 2 the input cannot be analysed (the message says what is wrong).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="Phantom QC: NEMA NU 1 floods, PET cylinders, NEMA NU 2 image quality.")


class Kind(StrEnum):
    flood = "flood"
    cylinder = "cylinder"
    nema_iq = "nema-iq"


@app.callback()
def _group() -> None:
    """Phantom QC commands."""


def _fail(message: str) -> typer.Exit:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code=2)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option} {value!r} is not an ISO date-time (e.g. 2024-05-06T07:30)") from None


@app.command()
def analyze(
    path: Annotated[Path, typer.Argument(help="A DICOM file or a folder of one series.")],
    kind: Annotated[Kind, typer.Option("--kind", help="Which phantom analysis to run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    fill_kbq_ml: Annotated[
        float | None, typer.Option(help="Cylinder: fill concentration (kBq/mL) at the fill time.")
    ] = None,
    sphere_kbq_ml: Annotated[
        float | None, typer.Option(help="NEMA IQ: sphere fill concentration (kBq/mL).")
    ] = None,
    background_kbq_ml: Annotated[
        float | None, typer.Option(help="NEMA IQ: background fill concentration (kBq/mL).")
    ] = None,
    fill_time: Annotated[
        str | None,
        typer.Option(help="ISO time of the fill assay (default: the header's injection time)."),
    ] = None,
    ufov_mm: Annotated[
        tuple[float, float] | None,
        typer.Option(help="Flood: UFOV width and height in mm (default: found from the image)."),
    ] = None,
) -> None:
    """Analyse PATH as a KIND phantom; print the results (exit code 2 on unusable input)."""
    # Imported here: `phase4 --help` must not wait for scipy and pydicom.
    from phase4.phantoms.cylinder import PETCylinder
    from phase4.phantoms.flood import FloodUniformity
    from phase4.phantoms.image import PhantomInputError
    from phase4.phantoms.nema_iq import NEMAImageQuality

    if not path.exists():
        raise _fail(f"{path}: no such file or folder")
    when = _time(fill_time, "--fill-time")
    try:
        analysis: Any
        if kind is Kind.flood:
            analysis = FloodUniformity.from_dicom(path).analyze(ufov_mm=ufov_mm)
        elif kind is Kind.cylinder:
            analysis = PETCylinder.from_dicom(path).analyze(fill_kbq_ml=fill_kbq_ml, fill_time=when)
        else:
            if sphere_kbq_ml is None:
                raise _fail("--sphere-kbq-ml is needed for --kind nema-iq (the true sphere fill)")
            analysis = NEMAImageQuality.from_dicom(path).analyze(
                sphere_kbq_ml=sphere_kbq_ml, background_kbq_ml=background_kbq_ml, fill_time=when
            )
    except (PhantomInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    data = analysis.results_data()
    if as_json:
        payload = {
            "kind": kind.value,
            "metrics": data.metrics(),
            "verdicts": analysis.verdicts(),
            "result": data.to_dict(),
        }
        typer.echo(json.dumps(payload, indent=2, sort_keys=True))
        return
    from rich.table import Table

    table = Table(title=f"{kind.value} phantom: {path.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("verdict")
    verdicts = analysis.verdicts()
    for name, value in data.metrics().items():
        table.add_row(name, f"{value:.4g}", verdicts.get(name, ""))
    console = Console()
    console.print(table)
    for warning in getattr(data, "warnings", ()):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
