"""Property-based tests of every operation in /openapi.json (schemathesis, bounded).

Each generated request is sent to the real app (ASGI) over a real SQLite store, with an admin
token so that validation and storage are reached, and every response is checked: no server
error, a status the OpenAPI lists, its content type, its schema, its headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from phase4.monitor.core.settings import Settings, sqlite_url
from phase4.monitor.store.db import create_db_engine, upgrade
from phase4.service import create_app
from tests.conftest import populate


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("schemathesis") / "phase4.db"
    url = sqlite_url(path)
    upgrade(url)
    engine = create_db_engine(url)
    world = populate(engine)
    app = create_app(Settings(database_url=url, detection_interval_s=0), engine=engine)
    app.state.test_auth = world.auth(world.admin)
    yield app
    engine.dispose()


# Inputs whose validity no JSON Schema can state, so that a schema-valid one is rightly refused
# (422) and this one check is off for these operations only: a cursor is opaque (only one this
# API returned is valid); a deployment's `monitoring` may not list one stream twice (the same
# field and subgroup) and its strings obey the limits of docs/API.md (no NUL or lone
# surrogate), and so do a device identity's (which names a deployment that must exist); a
# deployment's id must be a slug; a token's site must be one the
# store holds, and a probe token must name one; a tolerance needs at least one level, and its
# levels in order (lower action <= lower tolerance <= upper tolerance <= upper action); a time
# of the world (an incident's awareness, a report) lies between 1970 and the monitor's clock.
OPAQUE_INPUTS = {
    "GET /v1/records": [positive_data_acceptance],
    "POST /v1/deployments": [positive_data_acceptance],
    "PUT /v1/deployments/{deployment_id}/identity": [positive_data_acceptance],
    "POST /v1/tokens": [positive_data_acceptance],
    "POST /v1/phantom-tolerances": [positive_data_acceptance],
    "POST /v1/incidents": [positive_data_acceptance],
    "POST /v1/incidents/{incident_id}/reports": [positive_data_acceptance],
}


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def _check(operation: Any, auth: dict[str, str], excluded: list[Any] | None) -> None:
    """Up to 8 generated requests on one operation, every default check on each response."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, excluded_checks=excluded)

    run()


def test_every_operation_conforms(admin_app: Any) -> None:
    failures: list[str] = []
    checked = 0
    for operation in _operations(admin_app):
        label = f"{operation.method.upper()} {operation.path}"
        try:
            _check(operation, admin_app.state.test_auth, OPAQUE_INPUTS.get(label))
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:1500]}")
        checked += 1
    assert checked >= 20
    assert not failures, "\n\n".join(failures)
