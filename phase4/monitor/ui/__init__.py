"""The built-in web dashboard at ``/ui`` for sites without Grafana (``docs/UI.md``).

``app.include_router(phase4.monitor.ui.router)`` adds it to the monitor's app.
"""

from phase4.monitor.ui.views import router

__all__ = ["router"]
