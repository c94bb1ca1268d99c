"""The monitor: stores what probes send, runs the surveillance passes, serves the API, /metrics
and the web UI.

Layers, each importing only those below it (``tests/test_import_graph.py`` checks it):

- ``drift`` and ``core``: statistics and contracts, no SQL, no HTTP;
- ``store``: tables, engines, migrations, locks, the audit trail, tokens;
- ``domain``: ingest, the registry, alert actions, incidents, schemas;
- ``surveillance``: the drift pass, phantom QC, reports, replay;
- ``api``, ``ui`` and ``app``: HTTP, /metrics and the web pages.
"""
