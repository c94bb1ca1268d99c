"""The demo's subgroup story without its HTTP round trips: site A's year as the demo simulates
it (its AI, its monitoring configuration, its labelled fraction), with the 65-79 band's
sensitivity falling half-way through (phase4.demo.subgroups). The disparity monitor must name
that band and that metric, with a gap whose 95% interval covers the simulation's own gap, dated
after the change began; nothing else is flagged."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

from phase4.demo.run import FEEDBACK_FRACTION, monitoring_config, probe_features
from phase4.demo.simulate import LesionAI, default_sites, simulate_site
from phase4.demo.subgroups import Missing, group_sensitivity, subgroup_drift
from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.core.statuses import AlertCause
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import Alert, Feedback, InferenceRecord
from phase4.monitor.surveillance.detection import detect_all
from phase4.monitor.surveillance.subgroups import process_subgroups

DAYS, PER_DAY, SEED = 365, 20.0, 7


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = sqlite_url(tmp_path_factory.mktemp("subgroups") / "phase4.db")
    upgrade(url)
    engine = create_db_engine(url)
    start = date(2025, 12, 1)
    site = replace(default_sites(PER_DAY * 7 / 5)[0])
    rng = np.random.default_rng(SEED)
    studies = list(simulate_site(site, [], start, DAYS, rng))
    ai, drift = LesionAI(SEED), subgroup_drift(DAYS)
    missing = Missing(drift, SEED)
    outputs = [missing(s, ai(s)) for s in studies]
    labels = np.random.default_rng(SEED + 1)
    deployment = "lesion-ai@site-a"
    with session_scope(engine) as s:
        create_deployment(
            s,
            deployment_id=deployment,
            site_id=site.site_id,
            site_name=site.name,
            model_name=ai.name,
            model_version=ai.version,
            actor="test",
            monitoring=monitoring_config(PER_DAY),
        )
    with Session(engine) as s:
        feedback = []
        for study, out in zip(studies, outputs, strict=True):
            record_id = uuid.uuid4().hex
            features = {k: v for k, v in probe_features(study).items() if k not in study.phi}
            s.add(
                InferenceRecord(
                    record_id=record_id,
                    deployment_id=deployment,
                    acquired_at=study.acquired_at,
                    inferred_at=study.acquired_at,
                    features=features,
                    outputs=out,
                )
            )
            if labels.random() < FEEDBACK_FRACTION:
                feedback.append(
                    Feedback(
                        feedback_id=uuid.uuid4().hex,
                        record_id=record_id,
                        verdict="accepted",
                        ground_truth={"malignant": study.malignant},
                        given_at=study.acquired_at + timedelta(days=30),
                    )
                )
        s.flush()
        s.add_all(feedback)
        s.commit()
    detect_all(engine)
    process_subgroups(engine)
    with Session(engine) as s:
        alerts = list(s.exec(select(Alert).where(Alert.cause == AlertCause.DISPARITY)))
    band_before, rest_before = group_sensitivity(studies, outputs, changed=False, drift=drift)
    band_after, rest_after = group_sensitivity(studies, outputs, changed=True, drift=drift)
    site = {
        changed: float(
            np.mean(
                [
                    bool(o["positive"])
                    for st, o in zip(studies, outputs, strict=True)
                    if st.site_id == drift.site_id
                    and st.malignant
                    and (st.day >= drift.start_day) == changed
                ]
            )
        )
        for changed in (False, True)
    }
    change = datetime.combine(start + timedelta(days=drift.start_day), datetime.min.time(), UTC)
    yield alerts, (band_before, rest_before, band_after, rest_after), change, site
    engine.dispose()


def test_the_band_falls_while_the_site_hardly_moves(demo_site) -> None:  # type: ignore[no-untyped-def]
    _, (band_before, rest_before, band_after, rest_after), _, site = demo_site
    assert abs(band_before - rest_before) < 0.1
    assert rest_after - band_after > 0.2  # the band: beyond the 10-point margin, twice over
    assert site[False] - site[True] < 0.1  # the site over all patients: a few points


def test_the_disparity_alert_names_the_band_with_a_gap_covering_the_truth(demo_site) -> None:  # type: ignore[no-untyped-def]
    alerts, (_, _, band_after, rest_after), change, _ = demo_site
    assert [a.stream for a in alerts] == ["subgroups.age_band=65-79.sensitivity"], [
        a.title for a in alerts
    ]
    (alert,) = alerts
    assert "age band 65-79" in alert.title and "University Hospital A" in alert.title
    low, high = alert.evidence["gap"]["ci95"]
    assert low <= rest_after - band_after <= high, (alert.evidence["gap"], rest_after - band_after)
    began = datetime.fromisoformat(alert.evidence["change_timestamp"])
    assert (
        change - timedelta(days=30) <= began <= datetime.fromisoformat(alert.evidence["timestamp"])
    )
