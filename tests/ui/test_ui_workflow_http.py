"""The dashboard's workflow without a browser (SQLite and PostgreSQL): incidents from an alert
with their reporting clocks, phantom sign-off one by one and in a batch, tolerance versions,
the export as a zip, token management, and the alert page's "what to check first".

Each action is checked for the roles and sites that may and may not take it, for its CSRF
protection, and for its audit entry: the same as the API's (or, for the export, the CLI's)
entry for the same action."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import Session, col, select

from phase4.alerts.export import export_deployment, verify_manifest
from phase4.alerts.export.clocks import incident_clocks
from phase4.alerts.notify.render import what_to_check
from phase4.monitor.store.models import (
    Alert,
    ApiToken,
    AuditEntry,
    Incident,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.ui.security import csrf_token
from tests.conftest import Fixture
from tests.ui.data import UiData
from tests.ui.test_ui_http import ORIGIN, login

CROSS_SITE = {"Origin": "http://evil.example"}


def post(client: TestClient, path: str, token: str, form: dict[str, Any], csrf: bool = True) -> Any:
    data = {**form, **({"csrf_token": csrf_token(token)} if csrf else {})}
    return client.post(path, data=data, headers=ORIGIN)


def audit(engine: Any, action: str) -> list[AuditEntry]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.seq))
            )
        )


def same_entry(
    ui: AuditEntry, api: AuditEntry, *, ignore: tuple[str, ...] = (), old: bool = True
) -> None:
    """Two audit entries of the same action say the same (their object aside; ``old``: and
    the same state before)."""

    def strip(value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else {k: v for k, v in value.items() if k not in ignore}

    assert (ui.actor, ui.action, ui.entity_type, ui.reason) == (
        api.actor,
        api.action,
        api.entity_type,
        api.reason,
    )
    if old:
        assert strip(ui.old_value) == strip(api.old_value)
    assert strip(ui.new_value) == strip(api.new_value)


def local(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M")


# --- what to check first --------------------------------------------------------------------------


def test_the_alert_page_shows_the_emails_what_to_check_first(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.viewer)
    with Session(world.engine) as s:
        alerts = [s.get(Alert, i) for i in (ui_data.drift_alert, ui_data.device_alert)]
    for alert in alerts:
        assert alert is not None
        page = ui_client.get(f"/ui/alerts/{alert.id}").text
        assert 'id="what-to-check"' in page
        items = what_to_check(alert)
        assert items
        for item in items:
            assert str(escape(item)) in page, item
    # a viewer reads the list but gets no incident button
    assert 'id="incident-from-alert"' not in page


# --- incidents ------------------------------------------------------------------------------------


def test_an_incident_from_an_alert_through_its_clocks_to_closing_audited_as_the_api(
    ui_client: TestClient, client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    token = world.reviewer_b  # physicist-b reviews site B, the drifting deployment's
    login(ui_client, token)
    alert_page = ui_client.get(f"/ui/alerts/{ui_data.drift_alert}").text
    assert 'id="incident-from-alert"' in alert_page
    form_page = ui_client.get(f"/ui/incidents/new?alert={ui_data.drift_alert}")
    assert form_page.status_code == 200
    assert f'value="{ui_data.drifting}" selected' in form_page.text
    assert "Art. 73" not in form_page.text or "EU AI Act Art. 73" in form_page.text

    aware = (datetime.now(UTC) - timedelta(days=3)).replace(second=0, microsecond=0)
    form = {
        "deployment": ui_data.drifting,
        "alert_id": str(ui_data.drift_alert),
        "title": "SUV shift may have hidden lesions",
        "seriousness": "serious_harm",
        "aware_at": local(aware),
        "remedial_action_needed": "on",
        "description": "Two studies re-read",
    }
    # CSRF: no token, a wrong one, another origin: refused, nothing recorded
    assert post(ui_client, "/ui/incidents", token, form, csrf=False).status_code == 403
    bad = {**form, "csrf_token": "0" * 64}
    assert ui_client.post("/ui/incidents", data=bad, headers=ORIGIN).status_code == 403
    good = {**form, "csrf_token": csrf_token(token)}
    assert ui_client.post("/ui/incidents", data=good, headers=CROSS_SITE).status_code == 403
    # the API's validation and the domain's refusals, on the form again
    r = post(ui_client, "/ui/incidents", token, {**form, "seriousness": "bad"})
    assert r.status_code == 422 and "seriousness" in r.text and 'id="incident-form"' in r.text
    future = local(datetime.now(UTC) + timedelta(hours=3))
    r = post(ui_client, "/ui/incidents", token, {**form, "aware_at": future})
    assert r.status_code == 422 and "aware_at is in the future" in r.text
    with Session(world.engine) as s:
        assert not list(s.exec(select(Incident)))

    r = post(ui_client, "/ui/incidents", token, form)
    assert r.status_code == 303, r.text
    incident_id = int(r.headers["location"].split("/")[-1].split("?")[0])
    page = ui_client.get(r.headers["location"]).text
    assert 'id="done"' in page and "Incident recorded by physicist-b" in page
    clocks = incident_clocks(
        seriousness="serious_harm",
        remedial_action_needed=True,
        aware_at=aware,
        reports={},
        as_of=datetime.now(UTC).date(),
    )
    for c in clocks:
        assert c.due.isoformat() in page and str(escape(c.summary)) in page
    assert "5 work days" in page  # FDA 803.53, remedial action needed
    assert (
        f'href="/ui/incidents/{incident_id}"'
        in ui_client.get(f"/ui/alerts/{ui_data.drift_alert}").text
    )

    # The same incident through the API: the same audit entry.
    api = client.post(
        "/v1/incidents",
        json={
            "deployment": ui_data.drifting,
            "alert_id": ui_data.drift_alert,
            "title": form["title"],
            "seriousness": "serious_harm",
            "aware_at": aware.isoformat(),
            "remedial_action_needed": True,
            "description": "Two studies re-read",
        },
        headers=world.auth(token),
    )
    assert api.status_code == 201, api.text
    api_id = api.json()["id"]
    ui_entry, api_entry = audit(world.engine, "incident.record")
    assert (ui_entry.entity_id, api_entry.entity_id) == (str(incident_id), str(api_id))
    same_entry(ui_entry, api_entry)

    # Reported under the EU AI Act today: on time.
    reported = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    r = post(
        ui_client,
        f"/ui/incidents/{incident_id}/reports",
        token,
        {"regime": "eu_ai_act", "reported_at": local(reported)},
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?done=reported")
    page = ui_client.get(f"/ui/incidents/{incident_id}").text
    assert f"reported on time ({reported.date().isoformat()})" in page
    r = post(
        ui_client,
        f"/ui/incidents/{incident_id}/reports",
        token,
        {"regime": "eu_ai_act", "reported_at": local(aware - timedelta(days=1))},
    )
    assert r.status_code == 422 and "before the awareness date" in r.text
    api = client.post(
        f"/v1/incidents/{api_id}/reports",
        json={"regime": "eu_ai_act", "reported_at": reported.isoformat()},
        headers=world.auth(token),
    )
    assert api.status_code == 200, api.text
    same_entry(*audit(world.engine, "incident.report"))

    # Closed with the corrective action, once.
    r = post(ui_client, f"/ui/incidents/{incident_id}/close", token, {"corrective_action": " "})
    assert r.status_code == 422
    action = {"corrective_action": "Cross-calibration repeated; reference kept"}
    r = post(ui_client, f"/ui/incidents/{incident_id}/close", token, action)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=closed")
    r = post(ui_client, f"/ui/incidents/{incident_id}/close", token, action)
    assert r.status_code == 409 and "already closed" in r.text
    api = client.post(f"/v1/incidents/{api_id}/close", json=action, headers=world.auth(token))
    assert api.status_code == 200, api.text
    ui_close, api_close = audit(world.engine, "incident.close")
    same_entry(ui_close, api_close, ignore=("closed_at",))
    page = ui_client.get(f"/ui/incidents/{incident_id}").text
    assert 'id="close-form"' not in page and "Cross-calibration repeated" in page
    history = page[page.index('id="history"') :]
    assert all(a in history for a in ("incident.record", "incident.report", "incident.close"))

    listing = ui_client.get("/ui/incidents").text
    assert f'href="/ui/incidents/{incident_id}"' not in listing  # closed: not in "open"
    assert f'href="/ui/incidents/{incident_id}"' in ui_client.get("/ui/incidents?status=all").text


def test_incidents_are_refused_to_viewers_and_other_sites(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    form = {
        "deployment": ui_data.drifting,
        "title": "x",
        "seriousness": "malfunction",
        "aware_at": local(datetime.now(UTC) - timedelta(hours=1)),
    }
    login(ui_client, world.viewer)
    assert ui_client.get(f"/ui/incidents/new?alert={ui_data.drift_alert}").status_code == 403
    assert post(ui_client, "/ui/incidents", world.viewer, form).status_code == 403
    assert "new-incident" not in ui_client.get("/ui/incidents").text
    # physicist-b (site B) may not record one for site A, nor link site B's alert to site A
    login(ui_client, world.reviewer_b)
    other = {**form, "deployment": ui_data.collecting}
    assert post(ui_client, "/ui/incidents", world.reviewer_b, other).status_code == 403
    login(ui_client, world.reviewer)
    mixed = {**other, "alert_id": str(ui_data.drift_alert)}
    r = post(ui_client, "/ui/incidents", world.reviewer, mixed)
    assert r.status_code == 422 and "is of site &#39;site-b&#39;" in r.text
    with Session(world.engine) as s:
        assert not list(s.exec(select(Incident)))
    # a site-A incident is neither listed for nor shown to site B's reviewer
    r = post(ui_client, "/ui/incidents", world.reviewer, other)
    assert r.status_code == 303
    path = r.headers["location"].split("?")[0]
    login(ui_client, world.reviewer_b)
    assert ui_client.get(path).status_code == 403
    assert f'href="{path}"' not in ui_client.get("/ui/incidents?status=all").text
    incident_id = path.rsplit("/", 1)[1]
    r = post(ui_client, f"{path}/close", world.reviewer_b, {"corrective_action": "x"})
    assert r.status_code == 403
    login(ui_client, world.viewer)
    page = ui_client.get(path).text
    assert 'id="close-form"' not in page and 'id="no-review"' in page
    r = post(
        ui_client, f"/ui/incidents/{incident_id}/close", world.viewer, {"corrective_action": "x"}
    )
    assert r.status_code == 403


# --- phantom sign-off -----------------------------------------------------------------------------


def _unsigned(engine: Any, device_id: int) -> list[PhantomResult]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(PhantomResult)
                .where(
                    PhantomResult.device_id == device_id, col(PhantomResult.reviewed_by).is_(None)
                )
                .order_by(col(PhantomResult.acquired_at).desc())
            )
        )


def test_phantom_results_signed_off_one_by_one_and_in_a_batch_audited_as_the_api(
    ui_client: TestClient, client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    token, device = world.reviewer_b, ui_data.device_id
    login(ui_client, token)
    assert f'href="/ui/devices/{device}/results"' in ui_client.get(f"/ui/devices/{device}").text
    unsigned = _unsigned(world.engine, device)
    assert len(unsigned) == 10
    page = ui_client.get(f"/ui/devices/{device}/results").text
    assert "35 results, 10 not signed off." in page
    assert page.count('name="result"') == 10
    assert not [i for i in ui_data.identifiers if i in page], "no result id on the page"
    url = f"/ui/devices/{device}/results/sign-off"

    one = unsigned[0]
    assert post(ui_client, url, token, {"only": str(one.id)}, csrf=False).status_code == 403
    r = post(ui_client, url, token, {"only": str(one.id)})
    assert r.status_code == 303 and "done=1" in r.headers["location"]
    batch = unsigned[1:4]
    r = ui_client.post(
        url,
        data={
            "result": [str(b.id) for b in batch],
            "note": "daily QC reviewed",
            "csrf_token": csrf_token(token),
            "show": "unsigned",
        },
        headers=ORIGIN,
    )
    assert r.status_code == 303 and "done=3" in r.headers["location"]
    done = ui_client.get(r.headers["location"]).text
    assert "3 result(s) signed off by physicist-b" in done
    assert "35 results, 6 not signed off." in done

    # all or none: a batch holding a signed result signs nothing, and says so without its id
    rest = _unsigned(world.engine, device)
    r = ui_client.post(
        url,
        data={"result": [str(rest[0].id), str(one.id)], "csrf_token": csrf_token(token)},
        headers=ORIGIN,
    )
    assert r.status_code == 409 and "already signed off by physicist-b" in r.text
    assert one.result_id not in r.text
    assert len(_unsigned(world.engine, device)) == 6
    r = post(ui_client, url, token, {})
    assert r.status_code == 422 and "choose at least one result" in r.text
    other = _unsigned(world.engine, ui_data.other_site_device_id)[0]
    r = post(ui_client, url, token, {"only": str(other.id)})
    assert r.status_code == 404  # a result of another device, by this device's route

    # The API's sign-off of another result: the same entry, its own result's verdicts.
    api_result = rest[1]
    r = client.post(
        f"/v1/phantom-results/{api_result.result_id}/sign-off",
        json={"note": "daily QC reviewed"},
        headers=world.auth(token),
    )
    assert r.status_code == 200, r.text
    entries = audit(world.engine, "phantom.sign_off")
    signed = {r.result_id: r for r in [one, *batch, api_result]}
    assert entries[0].entity_id == one.result_id
    assert {e.entity_id for e in entries[1:4]} == {b.result_id for b in batch}
    assert entries[-1].entity_id == api_result.result_id and len(entries) == 5
    assert entries[0].reason is None and entries[1].reason == "daily QC reviewed"
    same_entry(entries[1], entries[-1], ignore=("verdicts",))
    for e in entries:
        result = signed[e.entity_id]
        assert e.new_value == {"reviewed_by": "physicist-b", "verdicts": result.verdicts}


def test_sign_off_is_refused_to_viewers_and_other_sites(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    device, other = ui_data.device_id, ui_data.other_site_device_id
    login(ui_client, world.viewer)
    page = ui_client.get(f"/ui/devices/{device}/results").text
    assert 'name="result"' not in page and 'id="no-review"' in page
    row = _unsigned(world.engine, device)[0]
    url = f"/ui/devices/{device}/results/sign-off"
    assert post(ui_client, url, world.viewer, {"only": str(row.id)}).status_code == 403
    login(ui_client, world.reviewer_b)
    assert ui_client.get(f"/ui/devices/{other}/results").status_code == 403
    other_row = _unsigned(world.engine, other)[0]
    r = post(
        ui_client,
        f"/ui/devices/{other}/results/sign-off",
        world.reviewer_b,
        {"only": str(other_row.id)},
    )
    assert r.status_code == 403
    assert len(_unsigned(world.engine, device)) == 10 and not audit(
        world.engine, "phantom.sign_off"
    )


# --- tolerances -----------------------------------------------------------------------------------


def test_tolerance_versions_are_shown_and_set_with_a_reason_as_the_api_sets_them(
    ui_client: TestClient, client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    token, device = world.reviewer_b, ui_data.device_id
    login(ui_client, token)
    page = ui_client.get(f"/ui/tolerances?device={device}").text
    assert "v2 <strong>in force</strong>" in page and "replaced by this device" in page
    assert 'id="tolerance-form"' in page
    assert '<option value="">the default of every device</option>' not in page  # site-bound
    form = {
        "scope": str(device),
        "kind": "flood",
        "metric": "integral_uniformity_ufov_pct",
        "upper_tolerance": "4.5",
        "upper_action": "5.5",
        "unit": "%",
        "reason": "NEMA NU 1-2018 acceptance values after the detector repair",
    }
    url = "/ui/tolerances"
    assert post(ui_client, url, token, form, csrf=False).status_code == 403
    r = post(ui_client, url, token, {**form, "upper_action": "4.0"})
    assert r.status_code == 422 and "levels must be ordered" in r.text
    r = post(ui_client, url, token, {**form, "reason": ""})
    assert r.status_code == 422 and "reason" in r.text
    r = post(ui_client, url, token, {**form, "upper_action": "abc"})
    assert r.status_code == 422 and "upper_action" in r.text
    r = post(ui_client, url, token, {**form, "scope": ""})
    assert r.status_code == 403  # the default is every site's: not for a site's reviewer
    r = post(ui_client, url, token, form)
    assert (
        r.status_code == 303 and r.headers["location"] == f"/ui/tolerances?device={device}&done=1"
    )
    page = ui_client.get(r.headers["location"]).text
    assert "v3 <strong>in force</strong>" in page and "after the detector repair" in page

    api = client.post(
        "/v1/phantom-tolerances",
        json={
            "kind": "flood",
            "metric": "integral_uniformity_ufov_pct",
            "device_id": device,
            "upper_tolerance": 4.5,
            "upper_action": 5.5,
            "unit": "%",
            "reason": form["reason"],
        },
        headers=world.auth(token),
    )
    assert api.status_code == 201, api.text
    ui_entry, api_entry = audit(world.engine, "tolerance.set")
    assert (
        ui_entry.entity_id == api_entry.entity_id == f"{device}:flood.integral_uniformity_ufov_pct"
    )
    assert api_entry.old_value == ui_entry.new_value  # the API's version follows the form's
    same_entry(ui_entry, api_entry, ignore=("version",), old=False)
    # a reviewer of every site sets the default; a viewer sets nothing
    login(ui_client, world.reviewer)
    default = {**form, "scope": "", "kind": "cylinder", "metric": "suv_mean_ratio"}
    assert post(ui_client, url, world.reviewer, default).status_code == 303
    login(ui_client, world.viewer)
    assert 'id="tolerance-form"' not in ui_client.get(url).text
    assert post(ui_client, url, world.viewer, form).status_code == 403
    with Session(world.engine) as s:
        versions = s.exec(select(PhantomTolerance.version).order_by(col(PhantomTolerance.id)))
        assert list(versions) == [1, 2, 1, 3, 4, 2]


# --- export ---------------------------------------------------------------------------------------


def test_the_export_downloads_as_a_zip_whose_manifest_verifies_audited_as_the_cli(
    ui_client: TestClient, world: Fixture, ui_data: UiData, tmp_path: Path
) -> None:
    token = world.reviewer_b
    login(ui_client, token)
    page = ui_client.get(f"/ui/exports?deployment={ui_data.drifting}").text
    assert f'<option value="{ui_data.drifting}" selected' in page
    assert ui_data.collecting not in page  # site A's deployment: not physicist-b's to export
    today = datetime.now(UTC).date()
    form = {
        "deployment": ui_data.drifting,
        "from": (today - timedelta(days=30)).isoformat(),
        "to": today.isoformat(),
        "format": ["json", "csv"],
    }
    assert post(ui_client, "/ui/exports", token, form, csrf=False).status_code == 403
    r = post(
        ui_client, "/ui/exports", token, {**form, "from": today.isoformat(), "to": "2020-01-01"}
    )
    assert r.status_code == 422 and "the period is empty" in r.text
    r = post(ui_client, "/ui/exports", token, {**form, "format": ["json", "docx"]})
    assert r.status_code == 422 and "unknown export format" in r.text
    r = post(ui_client, "/ui/exports", token, form)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith('attachment; filename="phase4-export_')
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = z.namelist()
        z.extractall(tmp_path)
    [folder] = {n.split("/")[0] for n in names}
    files = {n.split("/", 1)[1] for n in names}
    assert {"manifest.json", "report.json"} <= files and any(f.startswith("csv/") for f in files)
    assert "report.pdf" not in files
    assert verify_manifest(tmp_path / folder).ok

    # The CLI's function for the same deployment and period: the same audit entry.
    export_deployment(
        world.engine,
        ui_data.drifting,
        today - timedelta(days=30),
        today,
        {"json", "csv"},
        tmp_path / "cli",
        actor="physicist-b",
    )
    ui_entry, cli_entry = audit(world.engine, "export")
    assert ui_entry.entity_id == cli_entry.entity_id == ui_data.drifting
    same_entry(ui_entry, cli_entry, ignore=("folder", "manifest_sha256"))

    r = post(ui_client, "/ui/exports", token, {**form, "deployment": ui_data.collecting})
    assert r.status_code == 403
    login(ui_client, world.viewer)
    assert 'id="export-form"' not in ui_client.get("/ui/exports").text
    assert post(ui_client, "/ui/exports", world.viewer, form).status_code == 403
    assert len(audit(world.engine, "export")) == 2


# --- tokens ---------------------------------------------------------------------------------------


def test_an_admin_lists_creates_and_revokes_tokens_audited_as_the_api(
    ui_client: TestClient, client: TestClient, world: Fixture
) -> None:
    token = world.admin
    login(ui_client, token)
    page = ui_client.get("/ui/tokens").text
    assert 'href="/ui/tokens"' in page and "dr-curie" in page and "physicist-b" in page
    with Session(world.engine) as s:
        digests = [t.token_sha256 for t in s.exec(select(ApiToken))]
    secrets = [world.reviewer, world.viewer, world.admin, world.probe_a]
    assert not [x for x in digests + secrets if x in page], "no secret and no hash listed"

    until = (date.today() + timedelta(days=90)).isoformat()
    form = {"name": "dr-new", "role": "reviewer", "site_id": "site-b", "until": until}
    assert post(ui_client, "/ui/tokens", token, form, csrf=False).status_code == 403
    r = post(ui_client, "/ui/tokens", token, {**form, "role": "probe", "site_id": ""})
    assert r.status_code == 422 and "a probe token needs --site" in r.text
    r = post(ui_client, "/ui/tokens", token, {**form, "days": "30"})
    assert r.status_code == 422 and "not both" in r.text
    r = post(ui_client, "/ui/tokens", token, form)
    assert r.status_code == 200 and 'id="secret"' in r.text and "shown this once" in r.text
    assert r.headers["cache-control"] == "no-store"
    secret = r.text.split('<code id="secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("p4_")
    assert client.get("/v1/alerts", headers=world.auth(secret)).status_code == 200
    assert secret not in ui_client.get("/ui/tokens").text  # shown once

    api = client.post(
        "/v1/tokens",
        json={
            "name": "dr-new",
            "role": "reviewer",
            "site_id": "site-b",
            "expires_at": f"{until}T00:00:00Z",
        },
        headers=world.auth(token),
    )
    assert api.status_code == 201, api.text
    ui_entry, api_entry = audit(world.engine, "token.create")[-2:]
    same_entry(ui_entry, api_entry)
    assert ui_entry.actor == "token:admin"

    new_id = int(ui_entry.entity_id)
    url = f"/ui/tokens/{new_id}/revoke"
    assert post(ui_client, url, token, {"reason": "left"}, csrf=False).status_code == 403
    assert post(ui_client, url, token, {"reason": ""}).status_code == 422
    r = post(ui_client, url, token, {"reason": "left the department"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/tokens?done=revoked"
    assert client.get("/v1/alerts", headers=world.auth(secret)).status_code == 401
    r = post(ui_client, url, token, {"reason": "again"})
    assert r.status_code == 409 and "already revoked" in r.text
    api = client.post(
        f"/v1/tokens/{api.json()['id']}/revoke",
        json={"reason": "left the department"},
        headers=world.auth(token),
    )
    assert api.status_code == 200, api.text
    ui_revoke, api_revoke = audit(world.engine, "token.revoke")
    same_entry(ui_revoke, api_revoke, ignore=("revoked_at",))


def test_tokens_are_for_admins_only(ui_client: TestClient, world: Fixture) -> None:
    for who in (world.reviewer, world.viewer):
        login(ui_client, who)
        assert 'href="/ui/tokens"' not in ui_client.get("/ui").text
        assert ui_client.get("/ui/tokens").status_code == 403
        r = post(ui_client, "/ui/tokens", who, {"name": "x", "role": "admin"})
        assert r.status_code == 403
    with Session(world.engine) as s:
        assert not list(s.exec(select(ApiToken).where(ApiToken.name == "x")))


def test_the_select_all_script_is_served_locally(ui_client: TestClient) -> None:
    r = ui_client.get("/ui/static/select.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
