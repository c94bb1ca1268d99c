"""A PET study and the AI's SEG, sent by storescu, become one record in the real store: SUV
features of the PET, and the segment's volume and SUV measured on the PET it was drawn on."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from typer.testing import CliRunner

from phase4.cli import app
from phase4.probes import pseudonymise
from phase4.probes.dicom.synthetic import FAKE_PATIENT, HotSphere, write_pet_series
from phase4.probes.listener.extract import extract_study_record
from phase4.probes.listener.scp import DicomListener
from tests.listener.conftest import DCMTK_AE_TITLES, SITE_SECRET
from tests.reference.nuclides import F18_HALF_LIFE_S

pytestmark = pytest.mark.skipif(
    shutil.which("storescu") is None,
    reason="dcmtk is not installed (`make test` installs it through .ci/system-deps)",
)

ACTIVITY_BQ, WEIGHT_KG = 300e6, 75.0
INJECTION, SERIES = datetime(2024, 5, 6, 9, 0), datetime(2024, 5, 6, 10, 0)
BACKGROUND, SPHERE = 5000.0, 40000.0
VOXEL = (4.0, 4.0, 4.0)


def _suv(concentration_bq_ml: float) -> float:
    """By hand: C × weight(g) / (dose × 2^(-Δt/T½)), decay-corrected to series start."""
    decay = 2 ** (-(SERIES - INJECTION).total_seconds() / F18_HALF_LIFE_S)
    return concentration_bq_ml * WEIGHT_KG * 1000 / (ACTIVITY_BQ * decay)


def _write_study(folder: Path) -> list[Path]:
    probe_geometry = write_pet_series(folder / "probe", shape=(24, 48, 48), voxel_mm=VOXEL)
    first, last = (pydicom.dcmread(p) for p in (probe_geometry[0], probe_geometry[-1]))
    x0, y0, z0 = (float(v) for v in first.ImagePositionPatient)
    z1 = float(last.ImagePositionPatient[2])
    centre = (x0 + 24 * VOXEL[2], y0 + 24 * VOXEL[1], (z0 + z1) / 2)
    shutil.rmtree(folder / "probe")
    return write_pet_series(
        folder / "pet",
        activity_bq=ACTIVITY_BQ,
        weight_kg=WEIGHT_KG,
        injection_time=INJECTION,
        series_time=SERIES,
        shape=(24, 48, 48),
        voxel_mm=VOXEL,
        background_bq_ml=BACKGROUND,
        hot_spheres=[HotSphere(centre, 12.0, SPHERE)],
    )


def _write_seg(pet_files: list[Path], out: Path) -> tuple[Path, int]:
    """The AI's output: voxels above 3× background, as a DICOM SEG on the PET's own slices."""
    pets = sorted(
        (pydicom.dcmread(p) for p in pet_files), key=lambda d: float(d.ImagePositionPatient[2])
    )
    values = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in pets]
    )
    mask = values > 3 * BACKGROUND
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion 1",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="PETLesionDetect", version="2.1.0", family=codes.cid7162.ArtificialIntelligence
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=pets,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Example Medical AI",
        manufacturer_model_name="PETLesionDetect",
        software_versions="2.1.0",
        device_serial_number="0001",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out, int(mask.sum())


def test_pet_and_seg_sent_by_storescu_become_one_record(
    tmp_path: Path, local_probe, live_monitor
) -> None:  # type: ignore[no-untyped-def]
    pet = _write_study(tmp_path)
    seg_path, voxels = _write_seg(pet, tmp_path / "seg" / "seg.dcm")
    study_uid = str(pydicom.dcmread(pet[0]).StudyInstanceUID)
    with DicomListener(
        probe=local_probe,
        extract=extract_study_record,
        port=0,
        idle_s=0.5,
        workdir=tmp_path / "work",
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as listener:
        sent = subprocess.run(
            [
                "storescu",
                "-R",  # propose the SOP classes the files need (SEG is not in the default list)
                "-aec",
                "PHASE4",
                "+sd",
                "127.0.0.1",
                str(listener.port),
                str(tmp_path / "pet"),
                str(seg_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        while listener.stats.studies_recorded < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listener.stats.instances_received == len(pet) + 1
    assert local_probe.flush(timeout_s=30)
    with live_monitor.engine.connect() as conn:
        (row,) = conn.execute(
            sa.text("SELECT study_pseudonym, features, outputs, error FROM inference_record")
        ).all()
    pseudonym, features, outputs, error = row
    if isinstance(features, str):  # SQLite returns JSON text through raw SQL
        import json

        features, outputs = json.loads(features), json.loads(outputs)
    assert pseudonym == pseudonymise(study_uid, SITE_SECRET)
    assert error is None
    assert features["suv_available"] is True
    assert features["suv_max"] == pytest.approx(_suv(SPHERE), rel=0.01)
    assert features["uptake_time_s"] == 3600
    assert outputs["output_present"] is True and outputs["output_kinds"] == "SEG"
    assert outputs["lesion_count"] == 1
    assert outputs["total_volume_ml"] == pytest.approx(voxels * 0.064, rel=1e-6)
    assert outputs["suv_max"] == pytest.approx(_suv(SPHERE), rel=0.01)
    stored = str(row)
    for value in FAKE_PATIENT.values():
        assert value not in stored
    assert study_uid not in stored


def test_dicom_features_cli_prints_features_or_names_the_problem(tmp_path: Path) -> None:
    pet = write_pet_series(tmp_path / "pet", shape=(8, 32, 32))
    runner = CliRunner()
    ok = runner.invoke(app, ["dicom", "features", str(tmp_path / "pet"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"suv_max"' in ok.output
    assert FAKE_PATIENT["PatientName"] not in ok.output
    text = runner.invoke(app, ["dicom", "features", str(pet[0].parent)])
    assert "suv_max" in text.output and text.exit_code == 0
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    bad = runner.invoke(app, ["dicom", "features", str(junk)])
    assert bad.exit_code == 1
    assert "junk.dcm" in bad.output
    missing = runner.invoke(app, ["dicom", "features", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_the_dicom_listen_command_records_what_storescu_sends(tmp_path: Path, live_monitor) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import sys

    from phase4.monitor.server import free_port

    pet = write_pet_series(tmp_path / "pet", shape=(8, 32, 32))
    port = free_port()
    env = {
        **os.environ,
        "PHASE4_SITE_SECRET": SITE_SECRET.decode(),
        "PHASE4_TOKEN": live_monitor.probe_token,
        "PHASE4_LISTENER_CALLING_AE_TITLES": ",".join(DCMTK_AE_TITLES),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phase4.cli",
            "probe",
            "dicom-listen",
            "--deployment",
            live_monitor.deployment,
            "--url",
            live_monitor.url,
            "--port",
            str(port),
            "--idle-s",
            "0.5",
            "--spool",
            str(tmp_path / "cli.spool.sqlite"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # importing the CLI takes 20 s on a loaded machine
        while (
            subprocess.run(
                ["echoscu", "-aec", "PHASE4", "127.0.0.1", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            assert time.monotonic() < deadline and proc.poll() is None, "listener did not start"
            time.sleep(0.2)
        sent = subprocess.run(
            ["storescu", "-R", "-aec", "PHASE4", "+sd", "127.0.0.1", str(port), str(pet[0].parent)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        while not live_monitor.stored_record_ids():
            assert time.monotonic() < deadline, "no record reached the monitor"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stopped" in output
    study_uid = str(pydicom.dcmread(pet[0]).StudyInstanceUID)
    with live_monitor.engine.connect() as conn:
        (pseudonym,) = conn.execute(sa.text("SELECT study_pseudonym FROM inference_record")).one()
    assert pseudonym == pseudonymise(study_uid, SITE_SECRET)
