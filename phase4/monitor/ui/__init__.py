"""The built-in web dashboard at ``/ui`` for sites without Grafana (``docs/UI.md``).

``app.include_router(phase4.monitor.ui.router)`` adds it to the monitor's app: the pages of
``views`` and, on the same router, the workflow pages of ``workflow_views`` (incidents, phantom
sign-off, tolerances, export, tokens), registered when that module is imported here.
"""

from phase4.monitor.ui import (  # noqa: F401  (each registers its routes)
    revalidation_views,
    subgroup_views,
    workflow_views,
)
from phase4.monitor.ui.views import router

__all__ = ["router"]
