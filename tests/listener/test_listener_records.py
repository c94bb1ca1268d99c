"""What a study becomes when it is not a tidy PET series sent once: compressed in a syntax
nothing here decodes, preceded by its CT, sent twice."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1

from phase4.probes import Probe
from phase4.probes.dicom.isotope import acquisition_time
from phase4.probes.dicom.synthetic import write_pet_series
from phase4.probes.listener.assembly import StudyAssembler
from phase4.probes.listener.extract import extract_study_record
from phase4.probes.listener.scp import DicomListener, record_id_for
from tests.listener.conftest import DCMTK_AE_TITLES, SITE_SECRET
from tests.listener.peer import REFUSED_ASSOCIATION, send, wait_for

needs_dcmtk = pytest.mark.skipif(
    shutil.which("dcmcjpeg") is None,
    reason="dcmtk is not installed (`make test` installs it through .ci/system-deps)",
)


def _jpeg_lossless(pet: list[Path], out: Path) -> list[Path]:
    """The series recompressed by dcmtk as JPEG Lossless SV1 (what Orthanc sent)."""
    out.mkdir(parents=True)
    made = []
    for path in pet:
        target = out / path.name
        subprocess.run(["dcmcjpeg", "+e1", str(path), str(target)], check=True, timeout=60)
        made.append(target)
    assert pydicom.dcmread(made[0]).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    return made


@needs_dcmtk
def test_a_series_no_decoder_can_read_keeps_its_header_and_says_which_decoder(
    tmp_path: Path, offline_probe: Probe
) -> None:
    pet = write_pet_series(tmp_path / "pet", shape=(6, 16, 16), activity_bq=250e6)
    jpeg = _jpeg_lossless(pet, tmp_path / "jpeg")
    listener = DicomListener(
        probe=offline_probe,
        extract=extract_study_record,
        port=0,
        workdir=tmp_path / "work",
        calling_ae_titles=DCMTK_AE_TITLES,
    )
    # Added to the assembler directly, as if the listener accepted every syntax:
    for path in jpeg:
        listener.assembler.add(pydicom.dcmread(path))
    (study,) = listener.assembler.due(float("inf"))
    record = extract_study_record(study)
    assert record.features["pixels_decoded"] is False
    assert record.features["injected_activity_mbq"] == pytest.approx(250.0)
    assert record.features["manufacturer"] and record.features["slices"] == 6
    assert record.features["suv_max"] is None
    assert record.error is not None
    assert record.error.startswith(
        "PixelData: cannot be decoded: no decoder for JPEG Lossless, Non-Hierarchical, "
        "First-Order Prediction"
    )
    assert "pylibjpeg-libjpeg" in record.error
    assert record.acquired_at is not None
    listener.assembler.add(pydicom.dcmread(jpeg[0]))
    assert listener.process_due(force=True) == 1
    assert listener.stats.studies_failed == 1
    listener.assembler.close()


@needs_dcmtk
def test_undecodable_syntaxes_are_not_accepted_so_the_sender_must_convert(
    tmp_path: Path, offline_probe: Probe
) -> None:
    pet = write_pet_series(tmp_path / "pet", shape=(4, 16, 16))
    jpeg_dir = tmp_path / "jpeg"
    jpeg = [pydicom.dcmread(p) for p in _jpeg_lossless(pet, jpeg_dir)]
    with DicomListener(
        probe=offline_probe,
        extract=extract_study_record,
        port=0,
        idle_s=0.3,
        workdir=tmp_path / "work",
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as listener:
        # Offered only JPEG Lossless, the listener accepts no context (pynetdicom then gives
        # up the association): no silent success.
        statuses = send(listener.port, jpeg, syntaxes=[JPEGLosslessSV1])
        assert statuses == [REFUSED_ASSOCIATION] * 4
        # storescu, which cannot offer anything else for these files, fails loudly too.
        sent = subprocess.run(
            [
                *("storescu", "+sd", "-aec", "PHASE4", "127.0.0.1"),
                str(listener.port),
                str(jpeg_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "unable to convert dataset from 'jpeg lossless" in sent.stderr.lower()
        assert "store scu failed" in sent.stderr.lower()
        assert listener.stats.instances_received == 0
        # Decompressed by the sender (as Orthanc does when refused), it is accepted.
        plain = [pydicom.dcmread(p) for p in pet]
        assert send(listener.port, plain, syntaxes=[ExplicitVRLittleEndian]) == [0] * 4


def test_acquired_at_is_the_pet_series_time_not_the_first_series_received(
    tmp_path: Path,
) -> None:
    pet = write_pet_series(tmp_path / "pet", shape=(4, 16, 16))
    first_pet = pydicom.dcmread(pet[0])
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.StudyInstanceUID = first_pet.StudyInstanceUID
    ct.AcquisitionDate, ct.AcquisitionTime = "20200101", "070000"
    if "AcquisitionDateTime" in ct:
        del ct.AcquisitionDateTime
    assembler = StudyAssembler(tmp_path / "work", idle_s=0)
    assembler.add(ct)  # the CT arrives first
    for path in pet:
        assembler.add(pydicom.dcmread(path))
    (study,) = assembler.due(float("inf"))
    record = extract_study_record(study)
    assembler.close()
    expected = min(acquisition_time(pydicom.dcmread(p)) for p in pet)
    assert expected is not None
    assert record.acquired_at == expected.replace(tzinfo=UTC)
    assert record.acquired_at != datetime(2020, 1, 1, 7, tzinfo=UTC)


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")
def test_a_study_sent_twice_is_one_record(tmp_path: Path, local_probe, live_monitor) -> None:  # type: ignore[no-untyped-def]
    pet = write_pet_series(tmp_path / "pet", shape=(4, 16, 16))
    study_uid = str(pydicom.dcmread(pet[0]).StudyInstanceUID)
    datasets = [pydicom.dcmread(p) for p in pet]
    with DicomListener(
        probe=local_probe,
        extract=extract_study_record,
        port=0,
        idle_s=0.3,
        workdir=tmp_path / "work",
        calling_ae_titles=DCMTK_AE_TITLES,
        site_secret=SITE_SECRET,
    ) as listener:
        assert send(listener.port, datasets) == [0] * 4
        assert wait_for(lambda: listener.stats.studies_recorded == 1)
        assert send(listener.port, datasets) == [0] * 4  # the PACS rule fires again
        assert wait_for(lambda: listener.stats.studies_recorded == 2)
    assert local_probe.flush(timeout_s=30)
    expected = record_id_for(SITE_SECRET, live_monitor.deployment, study_uid)
    assert live_monitor.stored_record_ids() == [expected]
    assert study_uid not in expected
