"""Who may call what: one table from route (method, path template) to rule, for every role.

A rule says which roles pass (the others get 403; no token or a refused one gets 401, or the
sign-in page for the dashboard) and how the site of the object concerned is checked for a token
bound to a site — the role-based access control of NIST SP 800-53 AC-3 and AC-6 (least
privilege), with the site as the object's owner:

- ``none``: the route touches no site's object (admin routes, the service's own state);
- ``filter``: a list; it holds only the sites the token may read;
- ``read``: the object (path or query) must be of a site the token may read;
- ``write``: every item must be of the probe's own site (whole request refused otherwise);
- ``review``: the object must be of a site the token may review;
- ``unbound``: the page spans every site: a token bound to one site may not see it.

Another site's object is answered 403, as a role that may not call the route is: ids are
sequential and not secret, and 403 names the token's scope, which is what a misconfigured probe's
operator needs to read (docs/API.md). An id that names nothing is 404 for a caller who passes
the role check.

``phase4.monitor.api.deps`` applies the role part of every ``/v1`` rule from this table; the site
part
is checked where the object is loaded (``enforced_in``). Tests build the full matrix from
``/openapi.json`` and the dashboard's routes and compare every cell with ``expected_status``;
``docs/API.md``'s table is ``markdown_table()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from phase4.monitor.store.auth import Principal, Role


class SiteRule(StrEnum):
    NONE = "none"
    FILTER = "filter"
    READ = "read"
    WRITE = "write"
    REVIEW = "review"
    UNBOUND = "unbound"


ANY_TOKEN = frozenset(Role)
PEOPLE = frozenset({Role.VIEWER, Role.REVIEWER, Role.ADMIN})
WRITERS = frozenset({Role.PROBE, Role.ADMIN})
REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class Rule:
    """``roles`` None: no token needed. ``enforced_in``: the module that checks the site."""

    roles: frozenset[Role] | None
    site: SiteRule
    enforced_in: str

    @property
    def public(self) -> bool:
        return self.roles is None

    def allows_role(self, principal: Principal) -> bool:
        return self.roles is None or principal.role in self.roles

    def allows_site(self, principal: Principal, site_id: str | None) -> bool:
        """May this principal (whose role passed) act on an object of ``site_id``?"""
        if self.site in (SiteRule.NONE, SiteRule.FILTER):
            return True
        if self.site is SiteRule.READ:
            return principal.can_read_site(site_id)
        if self.site is SiteRule.WRITE:
            return principal.can_write_site(site_id)
        if self.site is SiteRule.REVIEW:
            return principal.can_review_site(site_id)
        return principal.site_id is None or principal.role in (Role.ADMIN, Role.VIEWER)


def _public(where: str) -> Rule:
    return Rule(None, SiteRule.NONE, where)


API, INGEST, PHANTOM_STORE, UI = (
    "phase4.monitor.api",
    "phase4.monitor.domain.ingest",
    "phase4.monitor.surveillance.phantom_qc",
    "phase4.monitor.ui",
)

REVAL, REVAL_API = (
    "/v1/deployments/{deployment_id}/revalidations",
    "phase4.monitor.api.revalidations",
)

RULES: dict[tuple[str, str], Rule] = {
    # The service's own state: no identifiers, no token (Prometheus and load balancers).
    ("GET", "/healthz"): _public(API),
    ("GET", "/metrics"): _public("phase4.monitor.app"),
    ("GET", "/openapi.json"): _public("fastapi"),
    ("GET", "/docs"): _public("fastapi"),
    ("GET", "/docs/oauth2-redirect"): _public("fastapi"),
    ("GET", "/redoc"): _public("fastapi"),
    # Ingest (the probe's traffic).
    ("POST", "/v1/records"): Rule(WRITERS, SiteRule.WRITE, INGEST),
    ("GET", "/v1/records"): Rule(ANY_TOKEN, SiteRule.READ, "phase4.monitor.api.records"),
    ("POST", "/v1/feedback"): Rule(WRITERS, SiteRule.WRITE, INGEST),
    ("GET", "/v1/deployments"): Rule(ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.deployments"),
    ("POST", "/v1/deployments"): Rule(ADMINS, SiteRule.NONE, "phase4.monitor.api.deployments"),
    # A deployment's device identity: read where its site may be read; set by an admin.
    ("GET", "/v1/deployments/{deployment_id}/identity"): Rule(
        ANY_TOKEN, SiteRule.READ, "phase4.monitor.api.deployments"
    ),
    ("PUT", "/v1/deployments/{deployment_id}/identity"): Rule(
        ADMINS, SiteRule.NONE, "phase4.monitor.api.deployments"
    ),
    # A deployment's subgroup table (docs/SUBGROUPS.md): read where its site may be read.
    ("GET", "/v1/deployments/{deployment_id}/subgroups"): Rule(
        ANY_TOKEN, SiteRule.READ, "phase4.monitor.api.deployments"
    ),
    # Alerts: a deployment's site, or a device's for phantom QC and canary alerts.
    ("GET", "/v1/alerts"): Rule(ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.alerts"),
    ("GET", "/v1/alerts/{alert_id}"): Rule(ANY_TOKEN, SiteRule.READ, "phase4.monitor.api.alerts"),
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.alerts"
    ),
    ("POST", "/v1/alerts/{alert_id}/resolve"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.alerts"
    ),
    ("GET", "/v1/alerts/{alert_id}/report"): Rule(
        ANY_TOKEN, SiteRule.READ, "phase4.monitor.api.alerts"
    ),
    # Incidents: the deployment's site.
    ("GET", "/v1/incidents"): Rule(ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.incidents"),
    ("POST", "/v1/incidents"): Rule(REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.incidents"),
    ("POST", "/v1/incidents/{incident_id}/reports"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.incidents"
    ),
    ("POST", "/v1/incidents/{incident_id}/close"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.incidents"
    ),
    # Revalidations of a new model version: the deployment's site; acted on by its reviewers.
    ("GET", REVAL): Rule(ANY_TOKEN, SiteRule.READ, REVAL_API),
    ("POST", REVAL): Rule(REVIEWERS, SiteRule.REVIEW, REVAL_API),
    ("GET", REVAL + "/{revalidation_id}"): Rule(ANY_TOKEN, SiteRule.READ, REVAL_API),
    **{
        ("POST", f"{REVAL}/{{revalidation_id}}/{step}"): Rule(REVIEWERS, SiteRule.REVIEW, REVAL_API)
        for step in ("criteria", "validation-set", "shadow", "evaluate", "decision")
    },
    # Phantom QC: the device's site; a default tolerance (no device) is every site's.
    ("POST", "/v1/phantom-results"): Rule(WRITERS, SiteRule.WRITE, PHANTOM_STORE),
    ("GET", "/v1/phantom-results"): Rule(ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.phantoms"),
    ("POST", "/v1/phantom-results/{result_id}/sign-off"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.phantoms"
    ),
    ("GET", "/v1/devices"): Rule(ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.phantoms"),
    ("GET", "/v1/phantom-tolerances"): Rule(
        ANY_TOKEN, SiteRule.FILTER, "phase4.monitor.api.phantoms"
    ),
    ("POST", "/v1/phantom-tolerances"): Rule(
        REVIEWERS, SiteRule.REVIEW, "phase4.monitor.api.phantoms"
    ),
    # Tokens.
    ("GET", "/v1/tokens"): Rule(ADMINS, SiteRule.NONE, "phase4.monitor.api.tokens"),
    ("POST", "/v1/tokens"): Rule(ADMINS, SiteRule.NONE, "phase4.monitor.api.tokens"),
    ("POST", "/v1/tokens/{token_id}/revoke"): Rule(
        ADMINS, SiteRule.NONE, "phase4.monitor.api.tokens"
    ),
    # The dashboard (cookie session; probe tokens cannot sign in).
    ("GET", "/ui/login"): _public(UI),
    ("POST", "/ui/login"): _public(UI),
    ("POST", "/ui/logout"): _public(UI),
    ("GET", "/ui/static/{name}"): _public(UI),
    ("GET", "/ui"): Rule(PEOPLE, SiteRule.FILTER, UI),
    ("GET", "/ui/deployments/{deployment_id}"): Rule(PEOPLE, SiteRule.READ, UI),
    ("GET", "/ui/deployments/{deployment_id}/subgroups"): Rule(PEOPLE, SiteRule.READ, UI),
    ("GET", "/ui/devices/{device_id}"): Rule(PEOPLE, SiteRule.READ, UI),
    ("GET", "/ui/alerts"): Rule(PEOPLE, SiteRule.FILTER, UI),
    ("GET", "/ui/alerts/{alert_id}"): Rule(PEOPLE, SiteRule.READ, UI),
    ("POST", "/ui/alerts/{alert_id}/acknowledge"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("POST", "/ui/alerts/{alert_id}/resolve"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/alerts/{alert_id}/report"): Rule(PEOPLE, SiteRule.READ, UI),
    ("GET", "/ui/audit"): Rule(PEOPLE, SiteRule.UNBOUND, UI),
    ("GET", "/ui/deployments/{deployment_id}/revalidations/{revalidation_id}"): Rule(
        PEOPLE, SiteRule.READ, UI
    ),
    # The dashboard's workflow: the API's actions through forms, with the API's rules.
    ("GET", "/ui/incidents"): Rule(PEOPLE, SiteRule.FILTER, UI),
    ("GET", "/ui/incidents/new"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("POST", "/ui/incidents"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/incidents/{incident_id}"): Rule(PEOPLE, SiteRule.READ, UI),
    ("POST", "/ui/incidents/{incident_id}/reports"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("POST", "/ui/incidents/{incident_id}/close"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/devices/{device_id}/results"): Rule(PEOPLE, SiteRule.READ, UI),
    ("POST", "/ui/devices/{device_id}/results/sign-off"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/tolerances"): Rule(PEOPLE, SiteRule.FILTER, UI),
    ("POST", "/ui/tolerances"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/exports"): Rule(PEOPLE, SiteRule.FILTER, UI),
    ("POST", "/ui/exports"): Rule(REVIEWERS, SiteRule.REVIEW, UI),
    ("GET", "/ui/tokens"): Rule(ADMINS, SiteRule.NONE, UI),
    ("POST", "/ui/tokens"): Rule(ADMINS, SiteRule.NONE, UI),
    ("POST", "/ui/tokens/{token_id}/revoke"): Rule(ADMINS, SiteRule.NONE, UI),
}


class NoRule(LookupError):
    """A route that is not in the table: refused (fail closed) until it is given a rule."""


def rule_for(method: str, path_template: str) -> Rule:
    method = "GET" if method == "HEAD" else method
    try:
        return RULES[(method, path_template)]
    except KeyError:
        raise NoRule(f"no authorisation rule for {method} {path_template}") from None


# --- the matrix: who is calling, relative to the object's site -----------------------------------

OBJECT_SITE = "site-a"
OTHER_SITE = "site-b"


@dataclass(frozen=True)
class CallerKind:
    """A column of the matrix: no token, a refused token, or a role bound to a site or not."""

    key: str
    label: str
    role: Role | None
    site_id: str | None = None
    token_ok: bool = True

    def principal(self) -> Principal | None:
        if self.role is None or not self.token_ok:
            return None
        return Principal(name=self.key, role=self.role, site_id=self.site_id)


CALLERS: tuple[CallerKind, ...] = (
    CallerKind("none", "no token", None),
    CallerKind("bad_token", "bad token", None, token_ok=False),
    CallerKind("probe_site", "probe (site)", Role.PROBE, OBJECT_SITE),
    CallerKind("probe_other", "probe (other site)", Role.PROBE, OTHER_SITE),
    CallerKind("viewer", "viewer", Role.VIEWER),
    CallerKind("reviewer_site", "reviewer (site)", Role.REVIEWER, OBJECT_SITE),
    CallerKind("reviewer_other", "reviewer (other site)", Role.REVIEWER, OTHER_SITE),
    CallerKind("reviewer_all", "reviewer (all sites)", Role.REVIEWER),
    CallerKind("admin", "admin", Role.ADMIN),
)


def is_dashboard(path_template: str) -> bool:
    return path_template == "/ui" or path_template.startswith("/ui/")


def expected_status(path_template: str, rule: Rule, caller: CallerKind) -> int:
    """The status class (200, 303, 401, 403) the table promises ``caller`` for an object of
    ``OBJECT_SITE`` (a list route answers 200 to every token, with what it may read)."""
    if rule.public:
        return 200
    principal = caller.principal()
    dashboard = is_dashboard(path_template)
    if principal is None or (dashboard and principal.role is Role.PROBE):
        return 303 if dashboard else 401  # the dashboard sends the browser to sign in
    if not rule.allows_role(principal) or not rule.allows_site(principal, OBJECT_SITE):
        return 403
    return 200


def _cell(status: int) -> str:
    return {200: "yes", 303: "sign-in", 401: "401", 403: "403"}[status]


def markdown_table() -> str:
    """The route × caller table of docs/API.md (generated: a test compares the two)."""
    head = ["route", "site rule", *(c.label for c in CALLERS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, path), rule in RULES.items():
        cells = [_cell(expected_status(path, rule, c)) for c in CALLERS]
        site = "public" if rule.public else rule.site.value
        lines.append("| " + " | ".join([f"`{method} {path}`", site, *cells]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m phase4.monitor.api.authz > table (for docs/API.md)
    print(markdown_table(), end="")
