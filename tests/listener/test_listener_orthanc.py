"""A real PACS (Debian's Orthanc) sends a stored PET study to the listener by its own C-STORE:
once stored uncompressed, once stored as JPEG Lossless, which nothing here decodes. Offered
only decodable syntaxes, Orthanc transcodes on the fly and both records are complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import JPEGLosslessSV1

from phase4.monitor.server import free_port
from phase4.probes import Probe
from phase4.probes.dicom.synthetic import write_pet_series
from phase4.probes.listener.assembly import StudyFolder
from phase4.probes.listener.extract import extract_study_record
from phase4.probes.listener.scp import DicomListener, StudyRecord
from tests.listener.peer import wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("Orthanc") is None or shutil.which("dcmcjpeg") is None,
    reason="Orthanc and dcmtk are not installed (`make test` installs them: .ci/system-deps)",
)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Orthanc with its storage and configuration in tmp; yields (REST URL, config path).
    Orthanc 1.10 has no bind-address option: remote HTTP access is refused and only
    registered modalities may store; it is stopped at the end of the test."""
    http_port, dicom_port = free_port(), free_port()
    config = tmp_path / "orthanc.json"
    settings = {
        "Name": "phase4-test",
        "StorageDirectory": str(tmp_path / "orthanc-db"),
        "IndexDirectory": str(tmp_path / "orthanc-db"),
        "Plugins": [],
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomScuTimeout": 30,
        "DicomModalities": {},
    }
    config.write_text(json.dumps(settings))
    yield f"http://127.0.0.1:{http_port}", config


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["Orthanc", str(config)], stdout=out, stderr=subprocess.STDOUT)


def _jpeg_lossless(files: list[Path], out: Path) -> list[Path]:
    out.mkdir(parents=True)
    made = []
    for path in files:
        subprocess.run(["dcmcjpeg", "+e1", str(path), str(out / path.name)], check=True)
        made.append(out / path.name)
    return made


def test_orthanc_sends_plain_and_jpeg_lossless_studies_and_features_are_complete(
    tmp_path: Path, offline_probe: Probe, orthanc: tuple[str, Path]
) -> None:
    url, config = orthanc
    plain = write_pet_series(tmp_path / "plain", shape=(6, 16, 16))
    jpeg = _jpeg_lossless(write_pet_series(tmp_path / "src", shape=(6, 16, 16)), tmp_path / "j")
    assert pydicom.dcmread(jpeg[0]).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    records: list[StudyRecord] = []

    def extract(study: StudyFolder) -> StudyRecord:
        records.append(extract_study_record(study))
        return records[-1]

    with DicomListener(
        probe=offline_probe,
        extract=extract,
        port=0,
        idle_s=0.5,
        workdir=tmp_path / "work",
        calling_ae_titles=["ORTHANC@127.0.0.1"],
    ) as listener:
        settings = json.loads(config.read_text())
        settings["DicomModalities"] = {
            "phase4": {"AET": "PHASE4", "Host": "127.0.0.1", "Port": listener.port}
        }
        config.write_text(json.dumps(settings))
        process = _start(config, tmp_path / "orthanc.log")
        try:
            with httpx.Client(base_url=url, timeout=60) as client:

                def up() -> bool:
                    try:
                        return client.get("/system").status_code == 200
                    except httpx.TransportError:
                        return False

                assert wait_for(up, timeout_s=120), (tmp_path / "orthanc.log").read_text()
                studies = set()
                for path in [*plain, *jpeg]:
                    stored = client.post("/instances", content=path.read_bytes())
                    assert stored.status_code == 200, stored.text
                    studies.add(stored.json()["ParentStudy"])
                    syntax = client.get(f"/instances/{stored.json()['ID']}/metadata/TransferSyntax")
                    assert syntax.text == str(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
                assert len(studies) == 2
                for study in sorted(studies):
                    sent = client.post(
                        "/modalities/phase4/store",
                        json={"Resources": [study], "Synchronous": True},
                    )
                    assert sent.status_code == 200, sent.text
            assert wait_for(lambda: len(records) == 2, timeout_s=60)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        assert listener.stats.instances_received == 12
        assert listener.stats.instances_refused == 0
    for record in records:
        assert record.error is None
        assert record.features["pixels_decoded"] is True
        assert record.features["suv_max"] is not None and record.features["slices"] == 6
    assert listener.stats.studies_failed == 0
    assert process.returncode is not None
