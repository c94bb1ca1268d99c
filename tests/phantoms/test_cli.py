"""``phase4 phantom analyze`` through typer's CliRunner on synthetic DICOM."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from phase4.phantoms.cli import app
from phase4.phantoms.synthetic import (
    ColdRegion,
    CylinderSpec,
    IQSpec,
    write_flood,
    write_nema_iq,
    write_pet_cylinder,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("phantoms")
    write_flood(
        root / "flood.dcm",
        heads=2,
        counts_per_pixel=2600,
        cold=[ColdRegion(0.0, 0.0, 76.0, 0.3, "pmt", head=2)],
    )
    write_pet_cylinder(root / "cyl", CylinderSpec(calibration_error=0.12))
    write_nema_iq(root / "iq", IQSpec(fwhm_mm=8.0, shape=(30, 160, 160)))
    return {k: str(root / v) for k, v in (("flood", "flood.dcm"), ("cyl", "cyl"), ("iq", "iq"))}


def test_flood_json(files: dict[str, str]) -> None:
    out = runner.invoke(app, ["analyze", files["flood"], "--kind", "flood", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["kind"] == "flood"
    assert payload["metrics"]["iu_ufov_pct_h2"] > 5 > payload["metrics"]["iu_ufov_pct_h1"]
    assert payload["verdicts"]["iu_ufov_pct_h2"] == "tolerance"
    assert len(payload["result"]["heads"]) == 2


def test_cylinder_table_shows_the_action(files: dict[str, str]) -> None:
    out = runner.invoke(app, ["analyze", files["cyl"], "--kind", "cylinder", "--fill-kbq-ml", "5"])
    assert out.exit_code == 0, out.output
    assert "calibration_error_pct" in out.stdout and "action" in out.stdout


def test_nema_iq_json(files: dict[str, str]) -> None:
    out = runner.invoke(
        app,
        [
            "analyze",
            files["iq"],
            "--kind",
            "nema-iq",
            "--sphere-kbq-ml",
            "20",
            "--background-kbq-ml",
            "2",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["metrics"]["earl1_compliant"] == 1.0
    assert set(payload["verdicts"].values()) == {"pass"}
    assert len(payload["result"]["spheres"]) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "/no/such/path", "--kind", "flood"], "no such file or folder"),
        (["analyze", "{flood}", "--kind", "cylinder"], "Modality is NM"),
        (["analyze", "{cyl}", "--kind", "flood"], "Modality is PT"),
        (["analyze", "{iq}", "--kind", "nema-iq"], "--sphere-kbq-ml is needed"),
        (["analyze", "{iq}", "--kind", "cylinder", "--fill-time", "yesterday"], "not an ISO"),
    ],
)
def test_unusable_input_exits_2_naming_the_problem(
    files: dict[str, str], args: list[str], message: str
) -> None:
    argv = [a.format(**files) for a in args]
    out = runner.invoke(app, argv)
    assert out.exit_code == 2
    assert message in out.output.replace("\n", " ") or message in (out.stderr or "")
