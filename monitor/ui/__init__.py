"""The built-in web dashboard at ``/ui`` for sites without Grafana (``docs/UI.md``).

``app.include_router(monitor.ui.router)`` adds it to the monitor's app.
"""

from monitor.ui.views import router

__all__ = ["router"]
