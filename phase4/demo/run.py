"""``phase4 demo``: a year of one deployed AI at two sites, through the real probe -> API -> store.

The monitor runs on 127.0.0.1 in this process (a real uvicorn server on a free port) and stops
when the demo ends. Each site's studies pass through the site's own probe (the Python SDK
wrapping the AI call); feedback from physicians arrives later through the API, as it would from
a RIS integration.
"""

from __future__ import annotations

import heapq
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import Session, col, select

from phase4.alerts.config import NotifySettings
from phase4.alerts.export import export_deployment, verify_manifest
from phase4.alerts.notify import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.demo.phantoms import send_phantoms
from phase4.demo.revalidation import run_revalidation_scenario
from phase4.demo.simulate import (
    Change,
    LesionAI,
    SiteProfile,
    Study,
    default_changes,
    default_sites,
    patient_age_band,
    patient_sex,
    simulate_site,
)
from phase4.demo.subgroups import Missing, subgroup_drift
from phase4.demo.subgroups import monitoring as subgroup_monitoring
from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.core.statuses import AlertCause, AlertStatus, Severity
from phase4.monitor.domain.device_identity import set_device_identity
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.server import ThreadedServer, free_port
from phase4.monitor.store.auth import Role, create_token
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import Alert
from phase4.monitor.surveillance.detection import PassResult, detect_all
from phase4.monitor.surveillance.headline import headline
from phase4.monitor.surveillance.phantom_qc import process_phantom_qc
from phase4.monitor.surveillance.reports import attach_reports
from phase4.monitor.surveillance.subgroups import process_subgroups
from phase4.probes import Probe, pseudonymise
from phase4.service import create_app

FEEDBACK_FRACTION = 0.3
DICOM_EVERY = 100  # one site-A study in a hundred also travels as a DICOM series
DICOM_DEPLOYMENT = "lesion-ai-dicom@site-a"
PHYSICIST = "dr-curie"  # the demo's named reviewer (a medical physicist)
# Only for the demo's own store: signs the audit head and the export manifests.
DEMO_AUDIT_KEY = b"phase4-demo-audit-key-not-for-production"
FEEDBACK_DELAY_DAYS = (14, 90)
HEADER_FEATURES = (
    "scanner_model",
    "software_version",
    "reconstruction",
    "radiopharmaceutical",
    "injected_activity_mbq",
    "uptake_time_s",
    "weight_kg",
)


def monitoring_config(studies_per_day: float) -> dict[str, Any]:
    """Streams are inferred from the first records (every feature and output); the budget is one
    false alarm per deployment per year; physicians' verdicts feed the performance streams."""
    return {
        "studies_per_day": studies_per_day,
        "false_alarms_per_year": 1.0,
        "reference_size": 500,
        "performance": {
            "prediction": "positive",
            "truth": "malignant",
            "score": "malignancy_score",  # also estimate performance without labels (CBPE)
            "dice": False,
        },
        # The demo's AI is a stand-in whose latency is this machine's own timing of a Python
        # call: it varies with the machine's load, not with anything clinical. The patient's
        # sex and age band are reported per period in the surveillance report's subgroup
        # tables; they are left out of the drift streams so that the false-alarm budget stays
        # on the streams the simulation changes.
        "exclude": ["latency_s", "features.patient_sex", "features.patient_age_band"],
        **subgroup_monitoring(),  # the subgroup tables and the disparity monitor
    }


@dataclass
class DemoResult:
    database_url: str
    api_url: str
    records_by_deployment: dict[str, int]
    feedback_stored: int
    phi_keys_stripped: int
    changes: list[Change]
    start: date
    detection: list[PassResult]
    alerts: list[Alert]
    days: int
    reports: int
    dicom: tuple[int, int, int]
    emails: int = 0
    phantom_results: int = 0
    exports: dict[str, Path] = field(default_factory=dict)
    dashboard_url: str = ""
    # Where the emails' links point, or why they carry none.
    email_links: str = ""
    reviewer_token_file: Path | None = None
    # The synthetic patient identifiers the simulation gave its studies (which must never
    # reach the store, logs, metrics, emails or exports: the tests look for them).
    phi_values: set[str] = field(default_factory=set)


def deployment_id(site_id: str) -> str:
    return f"lesion-ai@{site_id}"


def device_identity(site: SiteProfile, accepted_on: date) -> dict[str, Any]:
    """The deployed AI's identity as its (fictitious) manufacturer declares it, its PMS plan,
    the baseline of its (fictitious) validation study, and the site's acceptance on the first
    simulated day. The baseline is the simulated AI's own performance before any change, as a
    validation study on a few hundred studies would have measured it."""
    return {
        "manufacturer": LesionAI.manufacturer,
        "device_name": f"{LesionAI.name} (lesion detection and malignancy scoring, demo)",
        "basic_udi_di": "DEMO-BUDI-PLD-2",
        "mdr_class": "IIb",
        "classification_rule": "Annex VIII Rule 11",
        "ai_act_high_risk": True,
        "notified_body": {
            "name": "Demo Notified Body (fictitious)",
            "number": "0000",
            "certificate": "DEMO-CERT-PLD-2",
        },
        "intended_use": f"{LesionAI.intended_use}, in adults referred for oncological FDG-PET/CT, "
        "as a second reader for nuclear medicine physicians",
        "pms_plan": {"document_id": "PMS-PLAN-PLD-001", "version": "3.0"},
        "validated_baseline": {
            "sensitivity": {"value": 0.89, "n": 412},
            "specificity": {"value": 0.88, "n": 505},
            "ppv": {"value": 0.86, "n": 426},
            "source": "Clinical evaluation report CER-PLD-2 v2, sect. 6.3: retrospective "
            "validation on 917 FDG-PET/CT studies from 3 centres (demo figures)",
            "margin": 0.05,
        },
        "clinical_acceptance": {
            "accepted_on": accepted_on.isoformat(),
            "accepted_by": f"{PHYSICIST}, medical physicist, for the AI committee of {site.name}",
            "reference": f"AIC-{site.site_id}-001",
        },
    }


def probe_features(study: Study) -> dict[str, Any]:
    """What the probe extracts from the model's input. It hands over the whole header on purpose,
    identifiers included, to show that the probe strips them before anything leaves; the
    patient's sex and age band (never the birth date) are kept for the subgroup tables."""
    features = {k: study.header[k] for k in HEADER_FEATURES}
    features.update({"liver_suvmean": study.image["liver_suvmean"]})
    features.update({"image_noise_cv": study.image["image_noise_cv"]})
    features.update(
        {"patient_sex": patient_sex(study), "patient_age_band": patient_age_band(study)}
    )
    features.update(study.phi)
    return features


def _merged_studies(days: int, studies_per_day: float, seed: int, start: date) -> list[Study]:
    rng = np.random.default_rng(seed)
    changes = default_changes(days)
    per_site = [
        list(simulate_site(site, changes, start, days, rng))
        for site in default_sites(studies_per_day * 7 / 5)
    ]
    return list(heapq.merge(*per_site, key=lambda s: s.acquired_at))


def run_demo(
    *,
    data_dir: Path,
    days: int,
    studies_per_day: float,
    seed: int,
    console: Console,
    serve: bool = False,
    port: int = 0,
) -> DemoResult:
    """Run the demo; with ``serve`` the monitor (API, /ui, /metrics) keeps running afterwards
    until interrupted (Ctrl-C)."""
    # The probe warns once per stripped identifier key; the demo's summary reports the count.
    # (The level is restored afterwards: the demo may run inside a longer-lived process.)
    probe_log = logging.getLogger("phase4.probe")
    old_level = probe_log.level
    probe_log.setLevel(logging.ERROR)
    try:
        return _run_demo(
            data_dir=data_dir,
            days=days,
            studies_per_day=studies_per_day,
            seed=seed,
            console=console,
            serve=serve,
            port=port,
        )
    finally:
        probe_log.setLevel(old_level)


def _run_demo(
    *,
    data_dir: Path,
    days: int,
    studies_per_day: float,
    seed: int,
    console: Console,
    serve: bool,
    port: int,
) -> DemoResult:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    db_url = sqlite_url(data_dir / "phase4.db")
    upgrade(db_url)
    engine = create_db_engine(db_url)
    ai = LesionAI(seed)
    start = datetime.now(UTC).date() - timedelta(days=days)
    sites = default_sites(studies_per_day)
    changes = default_changes(days)

    tokens: dict[str, str] = {}
    secrets = {site.site_id: f"demo-secret-{site.site_id}-{seed}" for site in sites}
    with session_scope(engine) as session:
        for site in sites:
            create_deployment(
                session,
                deployment_id=deployment_id(site.site_id),
                site_id=site.site_id,
                site_name=site.name,
                model_name=ai.name,
                model_version=ai.version,
                manufacturer=ai.manufacturer,
                intended_use=ai.intended_use,
                actor="demo",
                reason="demo: AI accepted into clinical use after local validation",
                monitoring=monitoring_config(studies_per_day),
            )
            set_device_identity(
                session,
                deployment_id(site.site_id),
                device_identity(site, start),
                actor="demo",
                reason="demo: the manufacturer's declaration and the site's acceptance record",
            )
            tokens[site.site_id] = create_token(
                session,
                name=f"probe-{site.site_id}",
                role=Role.PROBE,
                site_id=site.site_id,
                actor="demo",
            )

        reviewer_token = create_token(
            session, name=PHYSICIST, role=Role.REVIEWER, site_id=None, actor="demo"
        )
    token_file = data_dir / "reviewer-token.txt"
    token_file.write_text(reviewer_token + "\n")
    token_file.chmod(0o600)

    studies = _merged_studies(days, studies_per_day, seed, start)
    phi_values = {v for s in studies for v in s.phi.values() if isinstance(v, str) and v}
    settings = Settings(database_url=db_url, detection_interval_s=0)  # the demo runs it itself
    sink = LocalSMTPSink(folder=data_dir / "mail").__enter__()
    links = _email_links(port)
    port = port or free_port()
    notify = NotifySettings(
        **sink.settings(),
        mail_from="phase4@demo.invalid",
        recipients=["physicist@site.example"],
        escalation_recipients=["head-of-physics@site.example"],
        heartbeat_enabled=False,  # a simulated year arrives in a minute: no gaps to learn
        **links,
    )
    server = ThreadedServer(create_app(settings, engine=engine, notify=notify), port=port)
    server.start()
    console.print(f"[bold]phase4 demo[/]: monitor listening on {server.url} (store {db_url})")
    keep_serving = False
    try:
        probes = {
            site.site_id: Probe(
                url=server.url,
                token=tokens[site.site_id],
                deployment=deployment_id(site.site_id),
                site_secret=secrets[site.site_id],
                spool_path=data_dir / f"probe-{site.site_id}.spool.sqlite",
            )
            for site in sites
        }
        feedback: list[tuple[str, str, dict[str, Any]]] = []
        feedback_rng = np.random.default_rng(seed + 1)
        missing = Missing(subgroup_drift(days), seed)  # an age band's sensitivity falls
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{days} days of FDG-PET studies", total=len(studies))
            for study in studies:
                probe = probes[study.site_id]
                with probe.inference(
                    study_uid=study.study_uid,
                    features=probe_features(study),
                    acquired_at=study.acquired_at,
                ) as inference:
                    inference.outputs = missing(study, ai(study))
                if feedback_rng.random() < FEEDBACK_FRACTION:
                    feedback.append((study.site_id, study.study_uid, _verdict(study, feedback_rng)))
                progress.advance(task)
            for probe in probes.values():
                probe.flush(timeout_s=60)
        stripped = sum(p.stats().phi_keys_stripped for p in probes.values())
        dicom_studies = [s for s in studies if s.site_id == "site-a"][::DICOM_EVERY]
        with console.status(f"DICOM path: {len(dicom_studies)} PET series to the listener"):
            dicom = _dicom_path(
                server.url, tokens, secrets, dicom_studies, data_dir, engine, studies_per_day
            )
        for probe in probes.values():
            probe.close()
        stored_feedback = _send_feedback(server.url, tokens, secrets, feedback)
        with console.status("phantom QC: a daily cylinder and a weekly NEMA IQ per scanner"):
            phantoms = send_phantoms(
                server.url, tokens, reviewer_token, sites, changes, start, days, seed
            )
        records = _records_by_deployment(server.url, tokens)
        with console.status("drift engine: calibrating detectors and analysing the year"):
            detection = detect_all(engine)
            process_phantom_qc(engine)
            process_subgroups(engine)  # docs/SUBGROUPS.md
        with console.status("evidently: a data-drift report for each drift alert"):
            reports = attach_reports(engine)
        with console.status("revalidation: a new model version, in shadow at site B"):
            reval = run_revalidation_scenario(
                server.url,
                deployment=deployment_id("site-b"),
                probe_token=tokens["site-b"],
                reviewer_token=reviewer_token,
                site_secret=secrets["site-b"],
                data_dir=data_dir,
                seed=seed,
            )
        console.print(reval.summary())
        with console.status("telling people: email to the local SMTP sink"):
            notify_pending(engine, notify)
            emails = len(sink.messages)
        _physicist_acts(server.url, reviewer_token)
        (data_dir / "metrics.prom").write_text(httpx.get(f"{server.url}/metrics", timeout=30).text)
        with console.status("regulatory exports: PDF, JSON, CSV, FHIR with a signed manifest"):
            exports = _exports(engine, data_dir / "export", start, days)
        keep_serving = serve
    finally:
        if not keep_serving:
            server.stop()
            sink.__exit__(None, None, None)
    result = DemoResult(
        database_url=db_url,
        api_url=server.url,
        records_by_deployment=records,
        feedback_stored=stored_feedback,
        phi_keys_stripped=stripped,
        changes=changes,
        start=start,
        detection=detection,
        alerts=_all_alerts(engine),
        days=days,
        reports=reports,
        dicom=dicom,
        emails=emails,
        exports=exports,
        phantom_results=phantoms,
        dashboard_url=f"{server.url}/ui",
        email_links=notify.links_problem or f"to {notify.links_base()}",
        reviewer_token_file=token_file,
        phi_values=phi_values,
    )
    _summary(console, result, data_dir)
    if keep_serving:
        _serve_until_interrupted(console, server, sink, result)
    return result


def _email_links(port: int) -> dict[str, Any]:
    """Where the demo's emails link to. An address in PHASE4_PUBLIC_BASE_URL wins; a port given
    with ``--port`` is this machine's lasting address for the dashboard (``--serve``, or
    ``phase4 serve`` on that port later); the default free port is gone when the demo ends, so
    the emails then carry no link and say that no public address is configured."""
    if "PHASE4_PUBLIC_BASE_URL" in os.environ or "PHASE4_DASHBOARD_BASE_URL" in os.environ:
        return {}
    if not port:
        return {"public_base_url": None}
    return {"public_base_url": f"http://127.0.0.1:{port}", "allow_local_links": True}


def _all_alerts(engine: Any) -> list[Alert]:
    """What surveillance found (a revalidation's notices are its summary line, not findings)."""
    with Session(engine) as session:
        q = select(Alert).where(Alert.cause != AlertCause.REVALIDATION)
        return list(session.exec(q.order_by(col(Alert.opened_at), col(Alert.id))))


def _serve_until_interrupted(
    console: Console, server: ThreadedServer, sink: LocalSMTPSink, result: DemoResult
) -> None:
    console.print(
        f"[bold]Serving[/] {result.dashboard_url} (and /docs, /metrics) until Ctrl-C; "
        f"sign in with the token in {result.reviewer_token_file}."
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()
        sink.__exit__(None, None, None)


def _physicist_acts(api_url: str, token: str) -> None:
    """What the site's physicist does with the year's findings, through the API: acknowledges
    every open alert, resolves the reconstruction upgrade's with what was done, and records the
    upgrade's effect on the AI as an incident (which starts the regulators' reporting clocks)."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, timeout=30, headers=auth) as client:
        alerts = client.get("/v1/alerts", params={"status": AlertStatus.OPEN}).json()
        for alert in alerts:
            client.post(
                f"/v1/alerts/{alert['id']}/acknowledge",
                json={"reason": "Seen at the weekly QC meeting; investigating"},
            ).raise_for_status()
        upgrade = [
            a
            for a in alerts
            if a["deployment"] == deployment_id("site-b") and a["stream"].startswith("outputs.")
        ]
        if not upgrade:
            return
        first = min(upgrade, key=lambda a: a["opened_at"])
        client.post(
            f"/v1/alerts/{first['id']}/resolve",
            json={
                "reason": "Site B's reconstruction was upgraded to BSREM; the AI was not "
                "validated on it. Vendor informed; AI paused at site B pending revalidation."
            },
        ).raise_for_status()
        client.post(
            "/v1/incidents",
            json={
                "deployment": deployment_id("site-b"),
                "alert_id": first["id"],
                "title": "Lesion AI outputs shifted after a reconstruction upgrade",
                "description": "Lesion SUVmax +25% and tumour volume -22% after BSREM; "
                "possible change in the AI's sensitivity. No patient harm identified.",
                "seriousness": "malfunction",
                "aware_at": datetime.now(UTC).isoformat(),
                "remedial_action_needed": True,
            },
        ).raise_for_status()


def _exports(engine: Any, out_dir: Path, start: date, days: int) -> dict[str, Path]:
    """One surveillance export per monitored deployment for the simulated year."""
    out: dict[str, Path] = {}
    for site in default_sites(1.0):
        dep = deployment_id(site.site_id)
        result = export_deployment(
            engine,
            dep,
            start,
            start + timedelta(days=days),
            set(),
            out_dir,
            actor="demo",
            audit_key=DEMO_AUDIT_KEY,
        )
        verdict = verify_manifest(result.directory, key=DEMO_AUDIT_KEY)
        if not verdict.ok:
            raise RuntimeError(f"export of {dep} does not verify: {verdict.describe()}")
        out[dep] = result.directory
    return out


def _verdict(study: Study, rng: np.random.Generator) -> dict[str, Any]:
    delay = timedelta(days=int(rng.integers(*FEEDBACK_DELAY_DAYS)))
    return {"ground_truth": {"malignant": study.malignant}, "given_at": study.acquired_at + delay}


def _send_feedback(
    api_url: str,
    tokens: dict[str, str],
    secrets: dict[str, str],
    feedback: list[tuple[str, str, dict[str, Any]]],
) -> int:
    """Physicians' verdicts, sent later by a RIS integration that holds the site secret: it names
    each study by the same keyed pseudonym the probe computed, never by its UID."""
    batches: dict[str, list[dict[str, Any]]] = {}
    for site_id, study_uid, verdict in feedback:
        pseudonym = pseudonymise(study_uid, secrets[site_id].encode())
        batches.setdefault(site_id, []).append(
            {
                "feedback_id": uuid.uuid5(uuid.NAMESPACE_OID, pseudonym).hex,
                "deployment": deployment_id(site_id),
                "study_pseudonym": pseudonym,
                "verdict": "accepted",
                "ground_truth": verdict["ground_truth"],
                "given_at": verdict["given_at"].isoformat(),
            }
        )
    stored = 0
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for site_id, items in batches.items():
            for i in range(0, len(items), 1000):
                response = client.post(
                    "/v1/feedback",
                    json={"feedback": items[i : i + 1000]},
                    headers={"Authorization": f"Bearer {tokens[site_id]}"},
                )
                response.raise_for_status()
                stored += response.json()["created"]
    return stored


def _dicom_path(
    api_url: str,
    tokens: dict[str, str],
    secrets: dict[str, str],
    studies: list[Study],
    data_dir: Path,
    engine: Any,
    studies_per_day: float,
) -> tuple[int, int, int]:
    """The DICOM sidecar: PET series over a real DICOM association to the listener, whose probe
    records their features in a deployment of their own. Returns (studies, instances, records)."""
    from phase4.demo.dicom_path import send_by_dicom

    with session_scope(engine) as session:
        create_deployment(
            session,
            deployment_id=DICOM_DEPLOYMENT,
            site_id="site-a",
            model_name=LesionAI.name,
            model_version=LesionAI.version,
            actor="demo",
            reason="demo: DICOM sidecar listener beside the AI at site A",
            # one site-A study in DICOM_EVERY: the budget's rate is that share of the site's
            monitoring={"studies_per_day": studies_per_day / DICOM_EVERY},
        )
    probe = Probe(
        url=api_url,
        token=tokens["site-a"],
        deployment=DICOM_DEPLOYMENT,
        site_secret=secrets["site-a"],
        spool_path=data_dir / "probe-dicom.spool.sqlite",
    )
    try:
        instances, records = send_by_dicom(studies, probe, data_dir / "dicom", secrets["site-a"])
        probe.flush(timeout_s=60)
    finally:
        probe.close()
    return len(studies), instances, records


def _records_by_deployment(api_url: str, tokens: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for token in tokens.values():
            response = client.get("/v1/deployments", headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            for dep in response.json():
                counts[dep["id"]] = dep["records_total"]
    return counts


def _summary(console: Console, result: DemoResult, data_dir: Path) -> None:
    table = Table(title="What was ingested")
    table.add_column("deployment")
    table.add_column("records", justify="right")
    for dep, n in sorted(result.records_by_deployment.items()):
        table.add_row(dep, f"{n:,}")
    console.print(table)
    console.print(
        f"Physician feedback stored: {result.feedback_stored:,}. "
        f"Patient-identifier keys stripped at the probe: {result.phi_keys_stripped:,} "
        "(none left the probe)."
    )
    n, instances, recorded = result.dicom
    console.print(
        f"DICOM path: {n} site-A studies also sent as PET series ({instances:,} instances) over "
        f"DICOM to the sidecar listener, which recorded {recorded} studies' features "
        f"(SUV, uptake time, artifact flags) in {DICOM_DEPLOYMENT}; pixels and identifiers "
        "stayed in the listener."
    )
    console.print(f"Data: {result.database_url}  (folder {data_dir.resolve()})")
    console.print(
        f"Alerts told by email: {result.emails} messages at the local SMTP sink "
        f"({(data_dir / 'mail').resolve()}/*.eml); the physicist ({PHYSICIST}) acknowledged "
        "them and recorded an incident through the API."
    )
    if result.email_links.startswith("to "):
        console.print(f"The emails link {result.email_links}.")
    else:
        console.print(
            f"The emails carry no link: {escape(result.email_links)}. `phase4 demo --serve "
            "--port 8000` links them to the dashboard it serves; a hospital sets "
            "PHASE4_PUBLIC_BASE_URL."
        )
    for dep, folder in sorted(result.exports.items()):
        console.print(f"Export of {dep} (PDF, JSON, CSV, FHIR; manifest verified): {folder}")
    console.print("[bold]What changed during the year (injected by the simulation):[/]")
    for change in result.changes:
        when = result.start + timedelta(days=change.start_day)
        console.print(f"  - from {when.isoformat()} ({change.kind}): {change.description}")
    _detection_summary(console, result)
    if result.dashboard_url:
        console.print(
            f"[bold]Dashboard[/]: {result.dashboard_url}  (sign in with the token in "
            f"{result.reviewer_token_file}; `phase4 demo --serve` keeps it running, or serve "
            f"this store later: phase4 serve --database-url {result.database_url})"
        )


def _day(stamp: str | None) -> str:
    return stamp[:10] if stamp else "?"


SEVERITY_MARK = {
    Severity.INFO: "[blue]info[/]",
    Severity.WARNING: "[yellow]warn[/]",
    Severity.CRITICAL: "[red]CRIT[/]",
}


def _explained_by(alert: Alert, result: DemoResult) -> Change | None:
    """The injected change an alert belongs to: same site, dated after the change began (less
    the slack of change-point estimation). None: a false alarm."""
    began = _day(alert.evidence.get("change_timestamp") or alert.evidence.get("timestamp"))
    for change in (*result.changes, subgroup_drift(result.days)):
        slack = timedelta(days=getattr(change, "slack_days", 14))
        start = result.start + timedelta(days=change.start_day) - slack
        if (
            alert.deployment_id == deployment_id(change.site_id)
            and began >= start.isoformat()
            and change.affects(alert.stream)
        ):
            return change
    return None


def _phantom_summary(console: Console, result: DemoResult) -> None:
    device_alerts = [a for a in result.alerts if a.device_id is not None]
    console.print(
        f"[bold]Phantom QC[/]: {result.phantom_results} results (a cylinder every working day "
        f"and a NEMA IQ phantom through the AI every Monday, per scanner); "
        f"{len(device_alerts)} scanner alerts:"
    )
    for alert in device_alerts:  # the headline says when, how much and linked to what
        console.print(f"  {SEVERITY_MARK[alert.severity]} {escape(headline(alert))}")


def _detection_summary(console: Console, result: DemoResult) -> None:
    console.print(
        f"[bold]What phase4 found[/]: {len(result.alerts)} alerts "
        f"(from {sum(len(p.alarms) for p in result.detection):,} detector alarms: a detector "
        "keeps alarming while a change persists, and the alarms of one stream and cause are "
        "grouped into one alert)."
    )
    console.print(
        f"evidently data-drift reports attached to {result.reports} alerts "
        "(GET /v1/alerts/<id>/report)."
    )
    false_alarms = 0
    for dep in sorted({a.deployment_id for a in result.alerts if a.deployment_id}):
        console.print(f"[bold]{dep}[/]")
        for alert in (a for a in result.alerts if a.deployment_id == dep):
            change = _explained_by(alert, result)
            false_alarms += change is None
            verdict = f"[green]{change.kind}[/]" if change else "[magenta]false alarm[/]"
            console.print(
                f"  {SEVERITY_MARK[alert.severity]} {escape(headline(alert))}\n"
                f"      truth: {verdict}"
            )
    _phantom_summary(console, result)
    monitored = [d for d in result.records_by_deployment if d != DICOM_DEPLOYMENT]
    years = len(monitored) * result.days / 365  # the DICOM share never fills a reference
    console.print(
        f"False alarms: {false_alarms} in {years:.0f} deployment-years of monitoring "
        "(budget: 1 per deployment per year)."
    )
    for change in result.changes:
        began = result.start + timedelta(days=change.start_day)
        hits = [
            a
            for a in result.alerts
            if _explained_by(a, result) is change and a.cause != AlertCause.PERFORMANCE
        ]
        if not hits:
            console.print(f"  [red]not detected[/]: {change.kind} at {change.site_id}")
            continue
        first = min(hits, key=lambda a: a.evidence["timestamp"])
        delay = (date.fromisoformat(_day(first.evidence["timestamp"])) - began).days
        console.print(
            f"{change.kind} at {change.site_id}, began {began}: detected "
            f"{_day(first.evidence['timestamp'])} ({delay} days) by "
            f"{first.evidence['detector']} on {first.stream}, change dated "
            f"{_day(first.evidence.get('change_timestamp'))}"
        )
