"""What a hostile or careless sender can make the listener do: write outside its folder, be
accepted without being known, leave a study on disk, fill the disk, leak UIDs into records."""

from __future__ import annotations

import logging
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from phase4.probes import Probe
from phase4.probes.dicom.synthetic import write_pet_series
from phase4.probes.listener.assembly import StudyAssembler, StudyFolder, file_name
from phase4.probes.listener.extract import extract_study_record, record_error
from phase4.probes.listener.scp import (
    STATUS_INVALID_UID,
    STATUS_OUT_OF_RESOURCES,
    DicomListener,
    StudyRecord,
)
from phase4.probes.listener.settings import ListenerSettings
from phase4.probes.listener.uids import valid_uid
from tests.listener.conftest import DCMTK_AE_TITLES
from tests.listener.peer import REFUSED_ASSOCIATION, echo, files_under, send, wait_for

needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescu") is None,
    reason="dcmtk is not installed (`make test` installs it through .ci/system-deps)",
)


def _ct(**changes: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _noting_extractor(seen: list[StudyFolder]):  # type: ignore[no-untyped-def]
    def extract(study: StudyFolder) -> StudyRecord:
        seen.append(study)
        return StudyRecord(
            features={"n": study.instances}, outputs={}, acquired_at=None, error=None
        )

    return extract


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.128", True),
        ("0.1.2", True),
        ("1.2.3\0", True),  # PS3.5 6.4: one trailing NUL pads an odd-length UID
        ("1." + "2" * 62, True),
        ("1." + "2" * 63, False),  # 65 characters
        ("1.02.3", False),  # leading zero in a component
        ("1..3", False),
        (".1.2", False),
        ("1.2.", False),
        ("1.2.3a", False),
        ("../../x", False),
        ("/etc/passwd", False),
        ("", False),
        ("1.2.3\0\0", False),
    ],
)
def test_uid_grammar_of_ps3_5_section_9_1(uid: str, valid: bool) -> None:
    assert valid_uid(uid) is valid


def test_uids_that_are_paths_are_refused_and_nothing_is_written_outside(
    tmp_path: Path, offline_probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    # Deep enough that a relative join of the UID would reach the filesystem root, and short
    # enough (64 characters) that a conformant SCU sends it.
    name = f"p4t-{uuid.uuid4().hex[:12]}"
    escape = "../" * 14
    outside = Path(tempfile.mkdtemp(prefix="p4abs-"))
    hostile = [
        _ct(SeriesInstanceUID=f"{escape}{name}s", SOPInstanceUID=f"{escape}{name}"),
        _ct(SOPInstanceUID=f"{outside}/{name}"),  # absolute
        _ct(StudyInstanceUID="1.2.03.4"),  # leading zero: not a UID either
        _ct(SOPInstanceUID="1.2.3.abc"),
    ]
    work = tmp_path / "work"
    seen: list[StudyFolder] = []
    caplog.clear()  # pydicom logged the values as the test set them; from here on, none
    try:
        with (
            caplog.at_level(logging.WARNING, logger="phase4.listener"),
            DicomListener(
                probe=offline_probe,
                extract=_noting_extractor(seen),
                port=0,
                idle_s=0.2,
                workdir=work,
                calling_ae_titles=DCMTK_AE_TITLES,
            ) as listener,
        ):
            statuses = send(listener.port, hostile)
            assert files_under(work) == []
            assert listener.stats.instances_refused == 4
        assert statuses == [STATUS_INVALID_UID] * 4
        assert not Path(f"/{name}.dcm").exists()
        assert not Path(f"/{name}s").exists()
        assert list(outside.iterdir()) == []
        assert seen == [], "a refused instance must not open a study"
        assert "SOPInstanceUID is not a UID" in caplog.text
        assert name not in caplog.text and "../" not in caplog.text
    finally:  # a relative join would put the files at the root: do not leave them there
        Path(f"/{name}.dcm").unlink(missing_ok=True)
        shutil.rmtree(f"/{name}s", ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


def test_an_empty_allow_list_refuses_every_association(
    tmp_path: Path, offline_probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHASE4_LISTENER_CALLING_AE_TITLES", raising=False)
    with DicomListener(
        probe=offline_probe, extract=_noting_extractor([]), port=0, workdir=tmp_path
    ) as listener:
        assert echo(listener.port) == REFUSED_ASSOCIATION
        assert send(listener.port, [_ct()]) == [REFUSED_ASSOCIATION]
        assert listener.stats.associations_rejected == 2
        assert listener.stats.instances_received == 0


@needs_dcmtk
def test_only_allowed_calling_ae_titles_and_addresses_associate(
    tmp_path: Path, offline_probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASE4_LISTENER_CALLING_AE_TITLES", "ECHOSCU, PACS@10.255.0.1")
    with DicomListener(
        probe=offline_probe, extract=_noting_extractor([]), port=0, workdir=tmp_path
    ) as listener:
        assert echo(listener.port, calling_ae="ECHOSCU") == 0
        assert echo(listener.port, calling_ae="INTRUDER") == REFUSED_ASSOCIATION
        assert echo(listener.port, calling_ae="PACS") == REFUSED_ASSOCIATION  # wrong address
        intruder = subprocess.run(
            ["echoscu", "-aet", "INTRUDER", "-aec", "PHASE4", "127.0.0.1", str(listener.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert intruder.returncode != 0
        assert "Calling AE Title Not Recognized" in intruder.stdout + intruder.stderr
        assert listener.stats.associations_rejected == 3
    with DicomListener(
        probe=offline_probe,
        extract=_noting_extractor([]),
        port=0,
        workdir=tmp_path,
        calling_ae_titles=["PACS@127.0.0.1"],
    ) as listener:
        assert echo(listener.port, calling_ae="PACS") == 0


def test_received_files_are_private_and_named_by_hash(tmp_path: Path, offline_probe: Probe) -> None:
    found: list[dict[str, object]] = []

    def extract(study: StudyFolder) -> StudyRecord:
        files = [p for v in study.inputs.values() for p in v]
        found.append(
            {
                "folder_mode": stat.S_IMODE(study.folder.stat().st_mode),
                "root_mode": stat.S_IMODE(study.folder.parent.stat().st_mode),
                "file_modes": {stat.S_IMODE(p.stat().st_mode) for p in files},
                "names": sorted(p.name for p in files),
            }
        )
        return StudyRecord(features={}, outputs={}, acquired_at=None, error=None)

    ct = _ct()
    with DicomListener(
        probe=offline_probe,
        extract=extract,
        port=0,
        idle_s=0.2,
        workdir=tmp_path / "work",
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as listener:
        assert send(listener.port, [ct]) == [0]
        assert wait_for(lambda: len(found) == 1)
    (seen,) = found
    assert seen["root_mode"] == 0o700 and seen["folder_mode"] == 0o700
    assert seen["file_modes"] == {0o600}
    assert seen["names"] == [f"{file_name(str(ct.SOPInstanceUID))}.dcm"]
    assert str(ct.SOPInstanceUID) not in str(seen["names"])


def test_size_limits_refuse_with_out_of_resources(tmp_path: Path, offline_probe: Probe) -> None:
    small = _ct()
    size = len(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    big_text = _ct(SOPInstanceUID="1.2.3.4.5.6.7", ImageComments="x" * 6000)
    settings = ListenerSettings(
        calling_ae_titles=DCMTK_AE_TITLES,
        max_instance_bytes=size + 8192,
        max_element_bytes=3000,
        max_study_bytes=int(size * 1.5),
    )
    too_big = _ct(SOPInstanceUID="1.2.3.4.5.6.8")
    too_big.PixelData = bytes(len(small.PixelData) * 2)
    too_big.Rows = small.Rows * 2
    second = _ct(SOPInstanceUID="1.2.3.4.5.6.9")  # fits alone, not beside the first
    records: list[StudyRecord] = []

    def extract(study: StudyFolder) -> StudyRecord:
        records.append(extract_study_record(study))
        return records[-1]

    work = tmp_path / "work"
    with DicomListener(
        probe=offline_probe, extract=extract, port=0, idle_s=0.3, workdir=work, settings=settings
    ) as listener:
        statuses = send(listener.port, [big_text, too_big, small, second])
        assert statuses == [STATUS_OUT_OF_RESOURCES] * 2 + [0, STATUS_OUT_OF_RESOURCES]
        assert wait_for(lambda: len(records) == 1)
        # The study is removed just after its record is made: wait for it, do not race it.
        assert wait_for(lambda: files_under(work) == [])
    (record,) = records
    assert record.error is not None
    assert "1 instances refused: the study exceeded the listener's size limit" in record.error
    assert listener.stats.studies_failed == 1


def test_nothing_of_a_study_is_left_on_disk_processed_refused_or_failing(
    tmp_path: Path, offline_probe: Probe
) -> None:
    failing_uid = "1.2.826.0.1.3680043.8.498.1"

    def extract(study: StudyFolder) -> StudyRecord:
        if study.study_uid == failing_uid:
            raise RuntimeError("an extractor bug")
        return extract_study_record(study)

    pet = write_pet_series(tmp_path / "pet", shape=(4, 16, 16))
    work = tmp_path / "work"
    with DicomListener(
        probe=offline_probe,
        extract=extract,
        port=0,
        idle_s=0.3,
        workdir=work,
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as listener:
        sent = [pydicom.dcmread(p) for p in pet]
        sent += [_ct(StudyInstanceUID=failing_uid), _ct(SOPInstanceUID="1.02")]
        statuses = send(listener.port, sent)
        assert statuses == [0] * (len(pet) + 1) + [STATUS_INVALID_UID]
        assert wait_for(
            lambda: listener.stats.studies_recorded + listener.stats.studies_failed == 2
        )
        # Removed just after each record (or failure) is counted: wait for it, not race it.
        assert wait_for(lambda: files_under(work) == []), "studies must leave nothing"
        assert listener.stats.studies_failed == 1
        # A study still open when the listener stops is processed, then removed with the rest.
        assert send(listener.port, [_ct()]) == [0]
    assert list(work.iterdir()) == []


def _study_of(datasets: list[Dataset], root: Path) -> tuple[StudyAssembler, StudyFolder]:
    """The study as the listener holds it (keep the assembler: it owns the folder)."""
    assembler = StudyAssembler(root, idle_s=0)
    for ds in datasets:
        assembler.add(ds)
    (study,) = assembler.due(float("inf"))
    return assembler, study


def test_record_errors_carry_no_uid_and_no_file_name(tmp_path: Path) -> None:
    pet = write_pet_series(tmp_path / "pet", shape=(6, 16, 16))
    datasets = [pydicom.dcmread(p) for p in pet]
    del datasets[2].ImagePositionPatient  # the series cannot be ordered: a named error
    broken_sr = _ct(
        SOPClassUID="1.2.840.10008.5.1.4.1.1.88.33",
        SOPInstanceUID="1.2.826.0.1.3680043.8.498.77",
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.78",
        StudyInstanceUID=str(datasets[0].StudyInstanceUID),
        Modality="SR",
    )
    assembler, study = _study_of([*datasets, broken_sr], tmp_path / "work")
    record = extract_study_record(study)
    assembler.close()
    assert record.error is not None
    assert "ImagePositionPatient: missing" in record.error
    assert "SR: no ContentSequence" in record.error
    names = {p.name for files in (*study.inputs.values(), *study.outputs.values()) for p in files}
    uids = {str(d.get(k)) for d in [*datasets, broken_sr] for k in ("SOPInstanceUID",)}
    uids |= {str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)}
    for text in names | {n.removesuffix(".dcm") for n in names} | uids:
        assert text not in record.error
    assert re.search(r"\d+(\.\d+){3,}", record.error) is None
    assert str(tmp_path) not in record.error


def test_library_messages_quoting_paths_or_uids_are_masked() -> None:
    error = record_error(
        [
            "SR: not readable (FileNotFoundError: No such file: '/tmp/x/study-1/"
            + "ab" * 16
            + ".dcm')",
            "SOPClassUID: 1.2.840.10008.5.1.4.1.1.128 unexpected",
        ]
    )
    assert error == "SR: not readable (FileNotFoundError: No such file: '<file>'); " + (
        "SOPClassUID: <UID> unexpected"
    )
