"""The demo's DICOM path: a share of site A's studies also travel as DICOM PET series, over a
real DICOM association, to the sidecar listener, which records their features through a probe.

The series carry the study's injected activity, weight and times and its synthetic patient
identifiers; the listener must keep the pixels and the identifiers to itself.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import PositronEmissionTomographyImageStorage

from phase4.demo.simulate import Study
from phase4.probes.dicom.synthetic import HotSphere, write_pet_series
from phase4.probes.listener.extract import extract_study_record
from phase4.probes.listener.scp import DicomListener
from phase4.probes.probe import Probe

SHAPE = (12, 32, 32)
VOXEL_MM = (4.0, 4.0, 4.0)


def _series_for(study: Study, folder: Path) -> list[Path]:
    series_time = study.acquired_at.replace(tzinfo=None)
    injection = series_time - timedelta(seconds=float(study.header["uptake_time_s"]))
    activity_bq = float(study.header["injected_activity_mbq"]) * 1e6
    weight_kg = float(study.header["weight_kg"])
    # Background chosen so that the body's SUV is the study's liver SUVmean; the hottest focus
    # as a sphere at the study's SUVmax, in the middle of the field of view.
    decay = 2 ** (-float(study.header["uptake_time_s"]) / 6586.2)
    per_suv = activity_bq * decay / (weight_kg * 1000)
    centre = (0.0, 0.0, -(SHAPE[0] - 1) / 2 * VOXEL_MM[0])  # synthetic series: x = y = 0 centred
    sphere = HotSphere(centre, 10.0, study.image["hottest_focus_suvmax"] * per_suv)
    return write_pet_series(
        folder,
        activity_bq=activity_bq,
        weight_kg=weight_kg,
        injection_time=injection,
        series_time=series_time,
        shape=SHAPE,
        voxel_mm=VOXEL_MM,
        background_bq_ml=study.image["liver_suvmean"] * per_suv,
        hot_spheres=[sphere],
        study_uid=study.study_uid,
        patient=study.phi,
        seed=study.day,
        noise=float(study.image["image_noise_cv"]),  # noise-free plateaus look like saturation
    )


def send_by_dicom(
    studies: list[Study], probe: Probe, workdir: Path, site_secret: bytes | str
) -> tuple[int, int]:
    """Send each study's PET series to a listener over DICOM; return (instances, records).

    The listener keys its record ids with the site's secret, as the probe keys pseudonyms, so a
    study sent twice is stored once."""
    listener = DicomListener(
        probe=probe,
        extract=extract_study_record,
        port=0,
        idle_s=5.0,
        workdir=workdir / "rx",
        calling_ae_titles=["DEMO-ROUTER"],  # the listener refuses senders it was not told of
        site_secret=site_secret,
    ).start()
    ae = AE(ae_title="DEMO-ROUTER")
    ae.add_requested_context(PositronEmissionTomographyImageStorage)
    sent = 0
    try:
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="PHASE4")
        if not assoc.is_established:
            raise RuntimeError("the DICOM listener refused the association")
        try:
            for study in studies:
                folder = workdir / "tx" / study.study_uid
                for path in _series_for(study, folder):
                    status = assoc.send_c_store(pydicom.dcmread(path))
                    sent += int(getattr(status, "Status", 1) == 0)
                shutil.rmtree(folder)
        finally:
            assoc.release()
    finally:
        listener.stop(flush=True)
    return sent, listener.stats.studies_recorded
