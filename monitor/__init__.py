"""The monitor: stores what probes send, runs detectors, serves the API, /metrics and the UI.

Layers (data flows one way): ``api`` (HTTP, thin) -> ``ingest``/``registry``/``auth``
(domain operations on a session) -> ``models`` (SQLModel tables) -> ``db`` (engine, migrations).
"""
