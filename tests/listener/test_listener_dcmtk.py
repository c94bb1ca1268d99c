"""The DICOM listener against real dcmtk peers (echoscu, storescu) on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.data import get_testdata_file

from phase4.probes import pseudonymise
from phase4.probes.listener.assembly import StudyAssembler, StudyFolder, output_kind
from phase4.probes.listener.scp import DicomListener, StudyRecord
from tests.listener.conftest import DCMTK_AE_TITLES, SITE_SECRET

pytestmark = pytest.mark.skipif(
    shutil.which("storescu") is None,
    reason="dcmtk is not installed (`make test` installs it through .ci/system-deps)",
)


def _wait(predicate, timeout_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def studies_seen(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A listener whose extractor notes what each study held (file counts, kinds)."""
    seen: list[dict[str, object]] = []

    def extract(study: StudyFolder) -> StudyRecord:
        seen.append(
            {
                "study_uid": study.study_uid,
                "inputs": {k: len(v) for k, v in study.inputs.items()},
                "outputs": dict(study.output_kinds),
                "files_exist": all(p.exists() for v in study.inputs.values() for p in v),
            }
        )
        return StudyRecord(
            features={"n_series": len(study.inputs)}, outputs={}, acquired_at=None, error=None
        )

    return seen, extract


def test_echoscu_verifies_the_listener(tmp_path: Path, local_probe, studies_seen) -> None:  # type: ignore[no-untyped-def]
    _, extract = studies_seen
    with DicomListener(
        probe=local_probe,
        extract=extract,
        port=0,
        idle_s=0.5,
        workdir=tmp_path,
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as lis:
        done = subprocess.run(
            ["echoscu", "-aec", "PHASE4", "127.0.0.1", str(lis.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr


def test_storescu_instances_are_grouped_by_study_and_removed_after(
    tmp_path: Path, local_probe, studies_seen, live_monitor
) -> None:  # type: ignore[no-untyped-def]
    seen, extract = studies_seen
    ct = Path(get_testdata_file("CT_small.dcm"))
    mr = Path(get_testdata_file("MR_small.dcm"))
    work = tmp_path / "work"
    work.mkdir()
    with DicomListener(
        probe=local_probe,
        extract=extract,
        port=0,
        idle_s=0.5,
        workdir=work,
        calling_ae_titles=DCMTK_AE_TITLES,
    ) as lis:
        done = subprocess.run(
            ["storescu", "-aec", "PHASE4", "127.0.0.1", str(lis.port), str(ct), str(mr)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert _wait(lambda: len(seen) == 2), seen
        assert lis.stats.instances_received == 2
    uids = {str(pydicom.dcmread(p).StudyInstanceUID) for p in (ct, mr)}
    assert {s["study_uid"] for s in seen} == uids
    assert local_probe.flush(timeout_s=20)
    with live_monitor.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT study_pseudonym, features FROM inference_record")).all()
    assert {r[0] for r in rows} == {pseudonymise(u, SITE_SECRET) for u in uids}
    assert all(u not in str(rows) for u in uids), "raw StudyInstanceUIDs reached the store"
    assert all(s["files_exist"] for s in seen)
    assert not any(work.rglob("*.dcm")), "received files must be deleted after extraction"


def test_output_kinds_are_recognised() -> None:
    seg = pydicom.Dataset()
    seg.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    sr = pydicom.Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    pet = pydicom.Dataset()
    pet.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
    pet.Modality = "PT"
    assert [output_kind(d) for d in (seg, sr, pet)] == ["SEG", "SR", None]


def test_assembler_waits_for_quiet_before_a_study_is_due(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    asm = StudyAssembler(tmp_path, idle_s=10.0)
    asm.add(ds, now=100.0)
    assert asm.due(now=105.0) == []
    (study,) = asm.due(now=110.0)
    assert study.instances == 1 and asm.pending() == 0
    asm.close()
