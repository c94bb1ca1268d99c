"""PHI never leaves the probe: not on the wire, not in the spool file, not in the logs."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from phase4.probes import PHI_KEYS, Probe, pseudonymise
from phase4.probes.phi import is_phi_key, normalise_key
from phase4.probes.pseudonym import SITE_SECRET_ENV

RAW_UID = "1.2.826.0.1.3680043.8.498.4242424242424242"
PHI_VALUES = {
    "PatientName": "DOE^JANE^PHIVALUE",
    "patient_id": "PID-PHIVALUE-001",
    "MRN": "MRN-PHIVALUE-991",
    "Patient Birth Date": "19700101-PHIVALUE",
    "dob": "1970-01-01-PHIVALUE",
    "AccessionNumber": "ACC-PHIVALUE-555",
    "other-patient-ids": "OTHER-PHIVALUE-7",
    "PatientAddress": "1 PHIVALUE Street",
    "PatientTelephoneNumbers": "+44-PHIVALUE-0100",
    "StudyInstanceUID": RAW_UID,
}
SECRET_STRINGS = [*PHI_VALUES.values(), "ELEMENT^PHIVALUE", "BYTES-PHIVALUE", "DATASET^PHIVALUE"]


def phi_features() -> dict[str, object]:
    dataset = Dataset()
    dataset.PatientName = "DATASET^PHIVALUE"
    return {
        **PHI_VALUES,
        "raw_bytes": b"BYTES-PHIVALUE",
        "element": DataElement(0x00100010, "PN", "ELEMENT^PHIVALUE"),
        "dataset": dataset,
        "injected_activity_mbq": 250.0,
        "patient_weight_kg": 70.0,
    }


def assert_clean(blob: bytes, where: str) -> None:
    for secret in SECRET_STRINGS:
        assert secret.encode() not in blob, f"{secret!r} leaked into {where}"


def test_phi_and_raw_uid_never_reach_wire_spool_or_logs(
    servers, make_probe, free_port, spool_files, probe_secret, wait_for, caplog
):
    caplog.set_level(logging.DEBUG, logger="phase4.probe")
    url = f"http://127.0.0.1:{free_port}"
    probe = make_probe(url)
    ids = [
        probe.record(
            features=phi_features(),
            outputs={
                "malignancy_score": 0.5,
                "PatientID": "PID-PHIVALUE-001",
                "lesions": [{"patientName": "DOE^JANE^PHIVALUE", "suv_max": 7.5}],
            },
            study_uid=RAW_UID,
        )
        for _ in range(3)
    ]
    wait_for(lambda: probe.stats().spool_depth == 3, "records spooled while the monitor is down")
    assert_clean(spool_files(), "the spool (open)")
    stats = probe.stats()
    assert stats.phi_keys_stripped == 3 * 12  # 10 in features, 2 in outputs (1 nested)
    assert stats.values_stripped == 3 * 3  # bytes, DataElement, Dataset
    probe.close(timeout_s=0.5)
    assert_clean(spool_files(), "the spool (closed)")

    server = servers(port=free_port).start()
    successor = make_probe(url)
    assert successor.flush(timeout_s=15)
    assert_clean(server.all_bodies(), "HTTP bodies")
    assert_clean(caplog.text.encode(), "log output")
    assert "PatientName" in caplog.text  # key names may be logged

    expected = hmac.new(probe_secret, RAW_UID.encode(), hashlib.sha256).hexdigest()
    for record_id in ids:
        record = server.stored[record_id]
        assert record["study_pseudonym"] == expected
        assert record["features"] == {
            "injected_activity_mbq": 250.0,
            "patient_weight_kg": 70.0,  # near-miss names are features, not PHI
        }
        assert record["outputs"] == {"malignancy_score": 0.5, "lesions": [{"suv_max": 7.5}]}


def test_pseudonymise_is_hmac_sha256_hex():
    secret = b"\x00\x01site-secret"
    uid = "1.2.3.4.5"
    assert pseudonymise(uid, secret) == hmac.new(secret, uid.encode(), hashlib.sha256).hexdigest()
    assert pseudonymise(uid, secret) != pseudonymise(uid, b"another-site-secret")
    assert len(pseudonymise(uid, secret)) == 64


def test_str_and_bytes_secrets_pseudonymise_alike(server, make_probe):
    as_str = make_probe(server.url, site_secret="site-a-secret-0123456789")
    rid = as_str.record(study_uid="1.2.3")
    assert as_str.flush(timeout_s=15)
    assert server.stored[rid]["study_pseudonym"] == pseudonymise(
        "1.2.3", b"site-a-secret-0123456789"
    )


def test_site_secret_comes_from_env_or_construction_fails(monkeypatch, tmp_path, free_port):
    url = f"http://127.0.0.1:{free_port}"
    monkeypatch.delenv(SITE_SECRET_ENV, raising=False)
    with pytest.raises(ValueError, match=SITE_SECRET_ENV):
        Probe(url, "p4_t", "dep", spool_path=tmp_path / "a.sqlite")
    monkeypatch.setenv(SITE_SECRET_ENV, "from-the-environment-0123456789")
    with Probe(url, "p4_t", "dep", spool_path=tmp_path / "b.sqlite") as probe:
        assert probe.record(study_uid="1.2.3") is not None


@pytest.mark.parametrize(
    "key",
    [
        "PatientName",
        "patient_name",
        "PATIENT-NAME",
        "patient name",
        "PatientID",
        "patient_id",
        "mrn",
        "PatientBirthDate",
        "birth_date",
        "dob",
        "AccessionNumber",
        "accession",
        "OtherPatientIDs",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "(0010,0010)",
    ],
)
def test_documented_phi_keys_are_recognised(key):
    assert is_phi_key(key)


@pytest.mark.parametrize(
    "key", ["patient_weight_kg", "patient_age_y", "patient_sex", "injected_activity_mbq", "names"]
)
def test_feature_names_that_merely_resemble_phi_are_kept(key):
    assert not is_phi_key(key)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(PHI_KEYS)),
    st.lists(st.sampled_from(["_", "-", " "]), max_size=4),
    st.randoms(use_true_random=False),
)
def test_phi_keys_match_whatever_the_case_and_separators(key, separators, rnd):
    chars = [ch.upper() if rnd.random() < 0.5 else ch for ch in key]
    for separator in separators:
        chars.insert(rnd.randrange(len(chars) + 1), separator)
    variant = "".join(chars)
    assert normalise_key(variant) == key
    assert is_phi_key(variant)
