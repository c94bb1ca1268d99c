"""The dashboard without a browser (SQLite and PostgreSQL): sign-in, cookie, redirects, site
scoping, CSRF, the acknowledge/resolve forms, 404s, static files, and no identifiers on pages."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from phase4.monitor.store.models import Alert, AuditEntry, DriftReport
from phase4.monitor.ui.security import COOKIE, csrf_token
from tests.conftest import Fixture
from tests.ui.data import UiData

ORIGIN = {"Origin": "http://testserver"}


def login(client: TestClient, token: str) -> None:
    r = client.post("/ui/login", data={"token": token, "next": "/ui"}, headers=ORIGIN)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/ui"


def pages(data: UiData) -> list[str]:
    return [
        "/ui",
        f"/ui/deployments/{data.drifting}",
        f"/ui/deployments/{data.collecting}",
        f"/ui/deployments/{data.silent}",
        f"/ui/deployments/{data.drifting}/subgroups",
        f"/ui/deployments/{data.silent}/subgroups",
        f"/ui/devices/{data.device_id}",
        "/ui/alerts",
        "/ui/alerts?status=all",
        f"/ui/alerts/{data.drift_alert}",
        f"/ui/alerts/{data.device_alert}",
        "/ui/audit",
    ]


def test_every_page_redirects_to_sign_in_without_a_session(
    ui_client: TestClient, ui_data: UiData
) -> None:
    for path in pages(ui_data):
        r = ui_client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=/ui"), path
    ui_client.cookies.set(COOKIE, "p4_not-a-token", path="/ui")
    assert ui_client.get("/ui/alerts/1").status_code == 303


def test_sign_in_sets_a_strict_httponly_cookie_and_refuses_bad_tokens(
    ui_client: TestClient, world: Fixture
) -> None:
    r = ui_client.post("/ui/login", data={"token": "p4_wrong"}, headers=ORIGIN)
    assert r.status_code == 401 and "unknown or revoked token" in r.text
    r = ui_client.post("/ui/login", data={"token": world.probe_a}, headers=ORIGIN)
    assert r.status_code == 401 and "probe tokens are for machines" in r.text
    r = ui_client.post(
        "/ui/login", data={"token": world.viewer}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")
    r = ui_client.post(
        "/ui/login", data={"token": world.viewer, "next": "//evil.example/x"}, headers=ORIGIN
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/ui" in cookie
    r = ui_client.get("/ui")
    assert r.status_code == 200 and "viewer (viewer)" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_every_page_renders_without_identifiers(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer)
    for path in pages(ui_data):
        r = ui_client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        leaked = [i for i in ui_data.identifiers if i in r.text]
        assert not leaked, (path, leaked[:3])
        assert "https://" not in r.text.replace("https://www.w3.org", ""), path
    text = ui_client.get(f"/ui/deployments/{ui_data.drifting}").text
    assert "The replay ends where the stored detector state is." in text
    assert "does not end where" not in text
    # what the detectors and references say of themselves, not formulas of the page's own
    assert "rate the chart was designed on, (events + ½)/(n + 1) = " in text
    assert " of threshold " in text and "(limits ±" in text
    overview = ui_client.get("/ui").text
    for status in ("monitoring", "silent", "not monitored yet"):
        assert f"badge-{status.replace(' ', '-')}" in overview
    assert 'data-worst="warning"' in overview or 'data-worst="critical"' in overview


def test_a_reviewer_acknowledges_then_resolves_with_csrf_and_a_reason(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer)
    alert_id = ui_data.drift_alert
    page = ui_client.get(f"/ui/alerts/{alert_id}").text
    assert 'id="ack-form"' in page
    csrf = csrf_token(world.reviewer)
    assert csrf in page
    url = f"/ui/alerts/{alert_id}/acknowledge"
    reason = {"reason": "checking the dose calibrator"}
    assert ui_client.post(url, data=reason, headers=ORIGIN).status_code == 403
    bad = {**reason, "csrf_token": "0" * 64}
    assert ui_client.post(url, data=bad, headers=ORIGIN).status_code == 403
    good = {**reason, "csrf_token": csrf}
    r = ui_client.post(url, data=good, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = ui_client.post(url, data={"reason": " ", "csrf_token": csrf}, headers=ORIGIN)
    assert r.status_code == 422 and "a reason is required" in r.text
    r = ui_client.post(url, data=good, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=acknowledged")
    r = ui_client.post(
        url, data=good, headers={"Referer": f"http://testserver/ui/alerts/{alert_id}"}
    )
    assert r.status_code == 409 and "already acknowledged" in r.text
    r = ui_client.post(
        f"/ui/alerts/{alert_id}/resolve",
        data={"reason": "calibrator fixed; reference kept", "csrf_token": csrf},
        headers=ORIGIN,
    )
    assert r.status_code == 303
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.status == "resolved"
        assert alert.acknowledged_by == "dr-curie" and alert.resolved_by == "dr-curie"
        actions = [
            (e.actor, e.action)
            for e in s.exec(select(AuditEntry).where(AuditEntry.entity_id == str(alert_id)))
        ]
    assert ("dr-curie", "alert.acknowledge") in actions and ("dr-curie", "alert.resolve") in actions
    audit = ui_client.get("/ui/audit").text
    assert "alert.acknowledge" in audit and "checking the dose calibrator" in audit
    assert "Hash chain verified" in audit


def test_a_viewer_sees_no_form_and_cannot_post_one(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.viewer)
    page = ui_client.get(f"/ui/alerts/{ui_data.drift_alert}").text
    assert "ack-form" not in page and 'id="no-review"' in page
    r = ui_client.post(
        f"/ui/alerts/{ui_data.drift_alert}/acknowledge",
        data={"reason": "x", "csrf_token": csrf_token(world.viewer)},
        headers=ORIGIN,
    )
    assert r.status_code == 403
    with Session(world.engine) as s:
        alert = s.get(Alert, ui_data.drift_alert)
        assert alert is not None and alert.status == "open"


def test_a_site_reviewer_sees_only_its_site(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer_b)
    overview = ui_client.get("/ui").text
    assert ui_data.drifting in overview and ui_data.collecting not in overview
    assert ui_client.get(f"/ui/deployments/{ui_data.drifting}").status_code == 200
    assert ui_client.get(f"/ui/deployments/{ui_data.collecting}").status_code == 403
    assert ui_client.get(f"/ui/devices/{ui_data.other_site_device_id}").status_code == 403
    assert ui_client.get(f"/ui/devices/{ui_data.device_id}").status_code == 200
    assert ui_client.get("/ui/audit").status_code == 403
    alerts = ui_client.get("/ui/alerts?status=all").text
    assert ui_data.collecting not in alerts.replace(f'{ui_data.collecting}"', "")
    page = ui_client.get(f"/ui/alerts/{ui_data.device_alert}").text
    assert 'id="ack-form"' in page  # site B's scanner: physicist-b reviews it


def test_not_found_pages_and_the_report_proxy(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.viewer)
    for path in (
        "/ui/deployments/nope@nowhere",
        "/ui/devices/9999",
        "/ui/alerts/9999",
        f"/ui/alerts/{ui_data.drift_alert}/report",
    ):
        r = ui_client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")
    with Session(world.engine) as s:
        alert = s.get(Alert, ui_data.drift_alert)
        assert alert is not None
        alert.evidence = {**alert.evidence, "report": {"drifted_columns": 1}}
        s.add(alert)
        s.add(
            DriftReport(
                alert_id=ui_data.drift_alert,
                created_at=datetime.now(UTC),
                reference_rows=100,
                current_rows=50,
                summary={},
                html_gzip=gzip.compress(b"<html><body>evidently report</body></html>"),
            )
        )
        s.commit()
    assert 'id="report-link"' in ui_client.get(f"/ui/alerts/{ui_data.drift_alert}").text
    r = ui_client.get(f"/ui/alerts/{ui_data.drift_alert}/report")
    assert r.status_code == 200 and "evidently report" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox")


@pytest.mark.parametrize(
    ("name", "ctype"), [("style.css", "text/css"), ("ui.js", "text/javascript")]
)
def test_static_files_are_served_locally(ui_client: TestClient, name: str, ctype: str) -> None:
    r = ui_client.get(f"/ui/static/{name}")
    assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)


def test_plotly_is_served_from_the_package_and_nothing_else_leaks(ui_client: TestClient) -> None:
    r = ui_client.get("/ui/static/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000 and b"plotly" in r.content[:2000]
    for bad in ("../views.py", "..%2Fviews.py", "nope.css", ".hidden.css", "views.py"):
        assert ui_client.get(f"/ui/static/{bad}").status_code == 404, bad


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(
    ui_client: TestClient, world: Fixture
) -> None:
    login(ui_client, world.viewer)
    assert ui_client.post("/ui/logout", data={}, headers=ORIGIN).status_code == 403
    r = ui_client.post("/ui/logout", data={"csrf_token": csrf_token(world.viewer)}, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert f'{COOKIE}=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert ui_client.get("/ui").status_code == 303
