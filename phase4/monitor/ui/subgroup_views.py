"""The subgroup page (``/ui/deployments/{id}/subgroups``): the deployment's subgroup table and
the disparity monitor's verdicts, as ``GET /v1/deployments/{id}/subgroups`` gives them
(``phase4.monitor.surveillance.subgroups``; docs/SUBGROUPS.md). Registered on the dashboard's
router when this module is imported (``phase4.monitor.ui``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from phase4.monitor.api.deps import SessionDep
from phase4.monitor.surveillance.subgroups import subgroup_table
from phase4.monitor.ui.security import principal_from_cookie
from phase4.monitor.ui.views import _deployment, _page, render, router


@router.get("/deployments/{deployment_id}/subgroups", response_class=HTMLResponse)
@_page
def subgroups_page(request: Request, deployment_id: str, session: SessionDep) -> Response:
    principal = principal_from_cookie(session, request)
    dep = _deployment(session, principal, deployment_id)
    table = subgroup_table(session, dep)
    by_dimension: dict[str, list[dict]] = {}
    for row in table.get("groups", []):
        by_dimension.setdefault(row["dimension"], []).append(row)
    return render(
        request,
        "subgroups.html",
        principal=principal,
        title=f"Subgroups of {dep.id}",
        dep=dep,
        table=table,
        by_dimension=by_dimension,
    )
