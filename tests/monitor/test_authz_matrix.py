"""The full authorisation matrix: every route of /openapi.json and of the dashboard × every kind
of caller, each cell sent as a real request and compared with ``phase4.monitor.api.authz``'s table.

The object of each request belongs to site A (a fresh one for every state-changing cell, so a
second acknowledgement is not a 409); the callers are: no token, a bad token, the site's probe,
another site's probe, a viewer, the site's reviewer, another site's reviewer, a reviewer of all
sites, an admin. A route without a rule in the table, a rule without a route, or a route
without a request here fails the test.
"""

from __future__ import annotations

import gzip
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlmodel import select

import phase4.monitor.ui
from phase4.monitor.api.authz import (
    CALLERS,
    RULES,
    CallerKind,
    expected_status,
    is_dashboard,
    markdown_table,
)
from phase4.monitor.domain.device_identity import set_device_identity
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.domain.revalidation import (
    attach_validation_set,
    declare_criteria,
    evaluate,
    open_revalidation,
)
from phase4.monitor.store.auth import Role, create_token
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    Alert,
    Device,
    DriftReport,
    Incident,
    InferenceRecord,
    PhantomResult,
)
from phase4.monitor.ui.security import COOKIE, csrf_token
from tests.conftest import Fixture

ROOT = Path(__file__).resolve().parents[2]
SCANNER = {"manufacturer": "SIEMENS", "model": "Biograph Vision 600", "serial": "PV-A1"}
NOW = datetime.now(UTC)
BAD_TOKEN = "p4_" + "x" * 43


@dataclass
class Req:
    path: str
    json: Any = None
    form: dict[str, str] | None = None


@dataclass
class Env:
    client: TestClient
    world: Fixture
    tokens: dict[str, str | None]
    device_a: int
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def n(self) -> int:
        return next(self.counter)

    def admin(self) -> dict[str, str]:
        return self.world.auth(self.world.admin)


def _callers_tokens(world: Fixture) -> dict[str, str | None]:
    with session_scope(world.engine) as s:
        reviewer_site = create_token(s, name="physicist-a", role=Role.REVIEWER, site_id="site-a")
    return {
        "none": None,
        "bad_token": BAD_TOKEN,
        "probe_site": world.probe_a,
        "probe_other": world.probe_b,
        "viewer": world.viewer,
        "reviewer_site": reviewer_site,
        "reviewer_other": world.reviewer_b,
        "reviewer_all": world.reviewer,
        "admin": world.admin,
    }


# --- objects of site A ---------------------------------------------------------------------------


def _alert(env: Env, device: bool, report: bool = False) -> int:
    with session_scope(env.world.engine) as s:
        alert = Alert(
            deployment_id=None if device else env.world.deployment_a,
            device_id=env.device_a if device else None,
            stream="phantom.flood.iu_ufov_pct" if device else "features.injected_activity_mbq",
            cause="phantom_qc" if device else "cusum",
            severity="warning",
            title="test alert",
            evidence={"statistic": 7.0, "threshold": 5.0},
        )
        s.add(alert)
        s.flush()
        if report:
            html = gzip.compress(b"<html><body>drift report</body></html>")
            s.add(
                DriftReport(
                    alert_id=alert.id or 0,
                    reference_rows=10,
                    current_rows=10,
                    summary={},
                    html_gzip=html,
                )
            )
        return alert.id or 0


def _incident(env: Env) -> int:
    with session_scope(env.world.engine) as s:
        incident = Incident(
            deployment_id=env.world.deployment_a,
            title="missed lesion",
            seriousness="malfunction",
            aware_at=NOW - timedelta(days=1),
            created_by="test",
            reports={},
        )
        s.add(incident)
        s.flush()
        return incident.id or 0


def _phantom_item(env: Env) -> dict[str, Any]:
    return {
        "result_id": f"flood-{uuid.uuid4().hex[:12]}",
        "site": "site-a",
        "device": SCANNER,
        "kind": "flood",
        "acquired_at": (NOW - timedelta(hours=1)).isoformat(),
        "metrics": {"iu_ufov_pct": 2.1},
    }


def _phantom_result(env: Env) -> str:
    item = _phantom_item(env)
    r = env.client.post("/v1/phantom-results", json={"results": [item]}, headers=env.admin())
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    return str(item["result_id"])


def _phantom_row(env: Env) -> int:
    """A fresh result of site A's scanner (``env.device_a``, stored by the API), by its row id:
    the dashboard names results by row, never by their result id."""
    result_id = _phantom_result(env)
    with session_scope(env.world.engine) as s:
        row = s.exec(select(PhantomResult).where(PhantomResult.result_id == result_id)).one()
        return row.id or 0


def _record(env: Env) -> dict[str, Any]:
    at = NOW - timedelta(minutes=env.n())
    return {
        "record_id": uuid.uuid4().hex,
        "deployment": env.world.deployment_a,
        "study_pseudonym": uuid.uuid4().hex,
        "acquired_at": at.isoformat(),
        "inferred_at": at.isoformat(),
        "features": {"injected_activity_mbq": 250.0},
        "outputs": {"malignancy_score": 0.5},
    }


def _stored_record(env: Env) -> str:
    record = _record(env)
    r = env.client.post("/v1/records", json={"records": [record]}, headers=env.admin())
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    return str(record["record_id"])


def _token_of_site_a(env: Env) -> int:
    with session_scope(env.world.engine) as s:
        create_token(s, name=f"spare-{env.n()}", role=Role.PROBE, site_id="site-a")
    r = env.client.get("/v1/tokens", headers=env.admin())
    return max(t["id"] for t in r.json())


def _identity_of_site_a(env: Env) -> str:
    with session_scope(env.world.engine) as s:
        set_device_identity(
            s, env.world.deployment_a, {"manufacturer": "Example Medical AI"}, actor="test"
        )
    return env.world.deployment_a


VALIDATION_CSV = "case_id,truth,accepted_call,candidate_call\n" + "".join(
    f"c{i},{i % 2},{i % 2},{i % 2}\n" for i in range(40)
)


def _fresh_deployment(env: Env) -> str:
    dep = f"fresh-{env.n()}@site-a"
    with session_scope(env.world.engine) as s:
        create_deployment(
            s, deployment_id=dep, site_id="site-a", model_name="PETLesionDetect",
            model_version="2.1.0", actor="test",
        )  # fmt: skip
    return f"/v1/deployments/{dep}"


def _revalidation(env: Env, upto: str = "open") -> str:
    """A fresh deployment of site A with a revalidation advanced to ``upto`` (open, criteria,
    evidence, evaluated): its path under /v1 (a deployment has at most one open)."""
    dep = f"reval-{env.n()}@site-a"
    with session_scope(env.world.engine) as s:
        create_deployment(
            s, deployment_id=dep, site_id="site-a", model_name="PETLesionDetect",
            model_version="2.1.0", actor="test",
        )  # fmt: skip
        r = open_revalidation(s, dep, "2.2.0", actor="test", reason=None)
        if upto != "open":
            declare_criteria(s, r, {"sensitivity": 0.2}, actor="test")
        if upto in ("evidence", "evaluated"):
            attach_validation_set(s, r, VALIDATION_CSV.encode(), actor="test")
        if upto == "evaluated":
            evaluate(s, r, actor="test")
        if upto == "shadow":
            s.add(
                InferenceRecord(
                    record_id=uuid.uuid4().hex, deployment_id=dep, acquired_at=NOW,
                    inferred_at=NOW, outputs={"positive": True},
                    shadow_outputs={"2.2.0": {"positive": True}},
                )
            )  # fmt: skip
        return f"/v1/deployments/{dep}/revalidations/{r.id}"


def _reval_ui(env: Env) -> str:
    return _revalidation(env, "evaluated").replace("/v1/", "/ui/", 1)


REASON = {"reason": "checked the flood and the dose calibrator"}
Build = Callable[[Env], Req]


def _both_alert_kinds(path: str, body: Any = None, report: bool = False) -> list[Build]:
    """A drift alert of a deployment of site A, and a phantom QC alert of a device of site A."""
    return [
        lambda env, device=device: Req(path.format(_alert(env, device, report)), body)
        for device in (False, True)
    ]


REQUESTS: dict[tuple[str, str], list[Build]] = {
    ("GET", "/healthz"): [lambda env: Req("/healthz")],
    ("GET", "/metrics"): [lambda env: Req("/metrics")],
    ("POST", "/v1/records"): [lambda env: Req("/v1/records", {"records": [_record(env)]})],
    ("GET", "/v1/records"): [lambda env: Req(f"/v1/records?deployment={env.world.deployment_a}")],
    ("POST", "/v1/feedback"): [
        lambda env: Req(
            "/v1/feedback",
            {
                "feedback": [
                    {
                        "feedback_id": uuid.uuid4().hex,
                        "record_id": _stored_record(env),
                        "verdict": "accepted",
                        "given_at": NOW.isoformat(),
                    }
                ]
            },
        )
    ],
    ("GET", "/v1/deployments"): [lambda env: Req("/v1/deployments")],
    ("POST", "/v1/deployments"): [
        lambda env: Req(
            "/v1/deployments",
            {
                "id": f"new-{env.n()}@site-a",
                "site_id": "site-a",
                "model_name": "PETLesionDetect",
                "model_version": "2.1.0",
            },
        )
    ],
    ("GET", "/v1/deployments/{deployment_id}/identity"): [
        lambda env: Req(f"/v1/deployments/{_identity_of_site_a(env)}/identity")
    ],
    ("GET", "/v1/deployments/{deployment_id}/subgroups"): [
        lambda env: Req(f"/v1/deployments/{env.world.deployment_a}/subgroups")
    ],
    ("PUT", "/v1/deployments/{deployment_id}/identity"): [
        lambda env: Req(
            f"/v1/deployments/{env.world.deployment_a}/identity",
            {"identity": {"manufacturer": f"Maker {env.n()}"}, "reason": "from the IFU"},
        )
    ],
    ("GET", "/v1/deployments/{deployment_id}/revalidations"): [
        lambda env: Req(_revalidation(env).rsplit("/", 1)[0])
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations"): [
        lambda env: Req(
            _fresh_deployment(env) + "/revalidations",
            {"candidate_version": "3.0.0", "reason": "vendor release"},
        )
    ],
    ("GET", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}"): [
        lambda env: Req(_revalidation(env))
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}/criteria"): [
        lambda env: Req(_revalidation(env) + "/criteria", {"specificity": 0.05})
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}/validation-set"): [
        lambda env: Req(_revalidation(env, "criteria") + "/validation-set", {"csv": VALIDATION_CSV})
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}/shadow"): [
        lambda env: Req(_revalidation(env, "shadow") + "/shadow")
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}/evaluate"): [
        lambda env: Req(_revalidation(env, "evidence") + "/evaluate")
    ],
    ("POST", "/v1/deployments/{deployment_id}/revalidations/{revalidation_id}/decision"): [
        lambda env: Req(_revalidation(env, "evaluated") + "/decision", {"decision": "reject"})
    ],
    ("GET", "/v1/alerts"): [lambda env: Req("/v1/alerts")],
    ("GET", "/v1/alerts/{alert_id}"): _both_alert_kinds("/v1/alerts/{}"),
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): _both_alert_kinds(
        "/v1/alerts/{}/acknowledge", REASON
    ),
    ("POST", "/v1/alerts/{alert_id}/resolve"): _both_alert_kinds("/v1/alerts/{}/resolve", REASON),
    ("GET", "/v1/alerts/{alert_id}/report"): _both_alert_kinds("/v1/alerts/{}/report", report=True),
    ("GET", "/v1/incidents"): [lambda env: Req("/v1/incidents")],
    ("POST", "/v1/incidents"): [
        lambda env: Req(
            "/v1/incidents",
            {
                "deployment": env.world.deployment_a,
                "title": "lesion missed after a detector fault",
                "seriousness": "malfunction",
                "aware_at": (NOW - timedelta(hours=2)).isoformat(),
                "alert_id": _alert(env, device=True),
            },
        )
    ],
    ("POST", "/v1/incidents/{incident_id}/reports"): [
        lambda env: Req(
            f"/v1/incidents/{_incident(env)}/reports",
            {"regime": "eu_mdr", "reported_at": NOW.isoformat()},
        )
    ],
    ("POST", "/v1/incidents/{incident_id}/close"): [
        lambda env: Req(
            f"/v1/incidents/{_incident(env)}/close", {"corrective_action": "model rolled back"}
        )
    ],
    ("POST", "/v1/phantom-results"): [
        lambda env: Req("/v1/phantom-results", {"results": [_phantom_item(env)]})
    ],
    ("GET", "/v1/phantom-results"): [lambda env: Req("/v1/phantom-results")],
    ("POST", "/v1/phantom-results/{result_id}/sign-off"): [
        lambda env: Req(f"/v1/phantom-results/{_phantom_result(env)}/sign-off", {"note": "ok"})
    ],
    ("GET", "/v1/devices"): [lambda env: Req("/v1/devices")],
    ("GET", "/v1/phantom-tolerances"): [lambda env: Req("/v1/phantom-tolerances")],
    ("POST", "/v1/phantom-tolerances"): [
        lambda env: Req(
            "/v1/phantom-tolerances",
            {
                "kind": "flood",
                "metric": "iu_ufov_pct",
                "device_id": env.device_a,
                "upper_tolerance": 4.0,
                "upper_action": 5.0,
                "reason": "NEMA NU 1 acceptance values",
            },
        )
    ],
    ("GET", "/v1/tokens"): [lambda env: Req("/v1/tokens")],
    ("POST", "/v1/tokens"): [
        lambda env: Req("/v1/tokens", {"name": f"new-{env.n()}", "role": "viewer"})
    ],
    ("POST", "/v1/tokens/{token_id}/revoke"): [
        lambda env: Req(f"/v1/tokens/{_token_of_site_a(env)}/revoke", REASON)
    ],
}

UI_REQUESTS: dict[tuple[str, str], list[Build]] = {
    ("GET", "/ui"): [lambda env: Req("/ui")],
    ("GET", "/ui/deployments/{deployment_id}"): [
        lambda env: Req(f"/ui/deployments/{env.world.deployment_a}")
    ],
    ("GET", "/ui/deployments/{deployment_id}/subgroups"): [
        lambda env: Req(f"/ui/deployments/{env.world.deployment_a}/subgroups")
    ],
    ("GET", "/ui/devices/{device_id}"): [lambda env: Req(f"/ui/devices/{env.device_a}")],
    ("GET", "/ui/alerts"): [lambda env: Req("/ui/alerts")],
    ("GET", "/ui/alerts/{alert_id}"): _both_alert_kinds("/ui/alerts/{}"),
    ("POST", "/ui/alerts/{alert_id}/acknowledge"): [
        lambda env, d=d: Req(f"/ui/alerts/{_alert(env, d)}/acknowledge", form=REASON)
        for d in (False, True)
    ],
    ("POST", "/ui/alerts/{alert_id}/resolve"): [
        lambda env, d=d: Req(f"/ui/alerts/{_alert(env, d)}/resolve", form=REASON)
        for d in (False, True)
    ],
    ("GET", "/ui/alerts/{alert_id}/report"): _both_alert_kinds("/ui/alerts/{}/report", report=True),
    ("GET", "/ui/audit"): [lambda env: Req("/ui/audit")],
    ("GET", "/ui/deployments/{deployment_id}/revalidations/{revalidation_id}"): [
        lambda env: Req(_reval_ui(env))
    ],
    ("GET", "/ui/incidents"): [lambda env: Req("/ui/incidents?status=all")],
    ("GET", "/ui/incidents/new"): [
        lambda env, d=d: Req(f"/ui/incidents/new?alert={_alert(env, d)}") for d in (False, True)
    ],
    ("POST", "/ui/incidents"): [
        lambda env, d=d: Req(
            "/ui/incidents",
            form={
                "deployment": env.world.deployment_a,
                "title": "lesion missed after a detector fault",
                "seriousness": "malfunction",
                "aware_at": (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
                "alert_id": str(_alert(env, d)),
            },
        )
        for d in (False, True)
    ],
    ("GET", "/ui/incidents/{incident_id}"): [lambda env: Req(f"/ui/incidents/{_incident(env)}")],
    ("POST", "/ui/incidents/{incident_id}/reports"): [
        lambda env: Req(
            f"/ui/incidents/{_incident(env)}/reports",
            form={"regime": "eu_mdr", "reported_at": NOW.strftime("%Y-%m-%dT%H:%M")},
        )
    ],
    ("POST", "/ui/incidents/{incident_id}/close"): [
        lambda env: Req(
            f"/ui/incidents/{_incident(env)}/close", form={"corrective_action": "rolled back"}
        )
    ],
    ("GET", "/ui/devices/{device_id}/results"): [
        lambda env: Req(f"/ui/devices/{env.device_a}/results?show=all")
    ],
    ("POST", "/ui/devices/{device_id}/results/sign-off"): [
        lambda env: Req(
            f"/ui/devices/{env.device_a}/results/sign-off",
            form={"result": str(_phantom_row(env)), "note": "ok"},
        )
    ],
    ("GET", "/ui/tolerances"): [lambda env: Req("/ui/tolerances")],
    ("POST", "/ui/tolerances"): [
        lambda env: Req(
            "/ui/tolerances",
            form={
                "scope": str(env.device_a),
                "kind": "flood",
                "metric": "iu_ufov_pct",
                "upper_tolerance": "4.0",
                "upper_action": "5.0",
                "reason": "NEMA NU 1 acceptance values",
            },
        )
    ],
    ("GET", "/ui/exports"): [lambda env: Req("/ui/exports")],
    ("POST", "/ui/exports"): [
        lambda env: Req(
            "/ui/exports",
            form={
                "deployment": env.world.deployment_a,
                "from": (NOW - timedelta(days=30)).date().isoformat(),
                "to": NOW.date().isoformat(),
                "format": "json",
            },
        )
    ],
    ("GET", "/ui/tokens"): [lambda env: Req("/ui/tokens")],
    ("POST", "/ui/tokens"): [
        lambda env: Req("/ui/tokens", form={"name": f"new-ui-{env.n()}", "role": "viewer"})
    ],
    ("POST", "/ui/tokens/{token_id}/revoke"): [
        lambda env: Req(f"/ui/tokens/{_token_of_site_a(env)}/revoke", form=REASON)
    ],
    # Public: reachable without a session.
    ("GET", "/ui/login"): [lambda env: Req("/ui/login")],
    ("POST", "/ui/login"): [lambda env: Req("/ui/login", form={"token": env.world.viewer})],
    ("POST", "/ui/logout"): [lambda env: Req("/ui/logout", form={})],
    ("GET", "/ui/static/{name}"): [lambda env: Req("/ui/static/style.css")],
}


@pytest.fixture
def env(client: TestClient, world: Fixture) -> Env:
    with session_scope(world.engine) as s:
        device = Device(site_id="site-a", **SCANNER)
        s.add(device)
        s.flush()
        device_a = device.id or 0
    return Env(client=client, world=world, tokens=_callers_tokens(world), device_a=device_a)


def _api_routes(client: TestClient) -> set[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}


def _ui_routes() -> set[tuple[str, str]]:
    return {
        (m, r.path)  # type: ignore[attr-defined]
        for r in phase4.monitor.ui.router.routes
        for m in r.methods or ()  # type: ignore[attr-defined]
        if m != "HEAD"
    }


def _status_class(r: Response) -> int:
    """200 for success (a 2xx, or a redirect to somewhere else than sign-in)."""
    if 200 <= r.status_code < 300:
        return 200
    if r.status_code in (302, 303, 307):
        return 303 if r.headers["location"].startswith("/ui/login") else 200
    return r.status_code


def _send(env: Env, method: str, req: Req, caller: CallerKind, dashboard: bool) -> Response:
    raw = env.tokens[caller.key]
    env.client.cookies.clear()
    if not dashboard:
        headers = env.world.auth(raw) if raw else {}
        return env.client.request(method, req.path, json=req.json, headers=headers)
    headers = {"Origin": "http://testserver"}
    if raw:
        env.client.cookies.set(COOKIE, raw, path="/ui")
    form = dict(req.form or {})
    if method == "POST" and raw:
        form["csrf_token"] = csrf_token(raw)
    if method == "GET":
        return env.client.get(req.path, headers=headers, follow_redirects=False)
    return env.client.post(req.path, data=form, headers=headers, follow_redirects=False)


def _run(env: Env, routes: dict[tuple[str, str], list[Build]]) -> list[str]:
    wrong = []
    for (method, path), builds in routes.items():
        rule = RULES[(method, path)]
        dashboard = is_dashboard(path)
        for build, caller in itertools.product(builds, CALLERS):
            req = build(env)
            r = _send(env, method, req, caller, dashboard)
            got, want = _status_class(r), expected_status(path, rule, caller)
            if rule.public:
                # No token needed; signing out takes a session cookie and its CSRF token.
                if path == "/ui/logout" and env.tokens[caller.key] is None:
                    want = 403
                got = 200 if r.status_code < 400 else r.status_code
            if got != want:
                wrong.append(f"{method} {req.path} as {caller.key}: {r.status_code}, want {want}")
    env.client.cookies.clear()
    return wrong


def test_every_route_has_a_rule_and_every_rule_a_route(client: TestClient) -> None:
    routes = _api_routes(client) | _ui_routes()
    docs = {("GET", p) for p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
    assert sorted(routes - set(RULES)) == [], (
        "routes with no rule in phase4.monitor.api.authz.RULES"
    )
    assert sorted(set(RULES) - routes - docs) == [], "rules naming no route"
    assert sorted(routes - set(REQUESTS) - set(UI_REQUESTS)) == [], "routes this test never calls"


def test_every_api_cell_answers_as_the_table_says(env: Env) -> None:
    assert set(REQUESTS) == _api_routes(env.client)
    assert _run(env, REQUESTS) == []


def test_every_dashboard_cell_answers_as_the_table_says(env: Env) -> None:
    assert set(UI_REQUESTS) == _ui_routes()
    assert _run(env, UI_REQUESTS) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/alerts/{}", None),
        ("GET", "/v1/alerts/{}/report", None),
        ("POST", "/v1/alerts/{}/resolve", REASON),
        ("POST", "/v1/incidents/{}/close", {"corrective_action": "x"}),
        ("POST", "/v1/tokens/{}/revoke", REASON),
        ("POST", "/v1/phantom-results/no-such-result-{}/sign-off", {}),
        ("GET", "/ui/alerts/{}", None),
        ("GET", "/ui/devices/{}", None),
        ("GET", "/ui/deployments/nowhere-{}", None),
        ("GET", "/v1/deployments/nowhere-{}/identity", None),
        ("GET", "/v1/deployments/nowhere-{}/subgroups", None),
        ("GET", "/ui/deployments/nowhere-{}/subgroups", None),
        ("PUT", "/v1/deployments/nowhere-{}/identity", {"identity": {}}),
    ],
)
def test_an_id_that_names_nothing_is_404_for_who_may_call(
    env: Env, method: str, path: str, body: Any
) -> None:
    target = path.format(2**31 - 1)
    admin = next(c for c in CALLERS if c.key == "admin")
    r = _send(env, method, Req(target, json=body), admin, is_dashboard(target))
    assert r.status_code == 404, r.text


def test_the_documented_table_is_the_codes_table() -> None:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    start = text.index("<!-- authz-table:start -->") + len("<!-- authz-table:start -->\n")
    end = text.index("<!-- authz-table:end -->")
    assert text[start:end] == markdown_table(), "regenerate: python -m phase4.monitor.api.authz"
