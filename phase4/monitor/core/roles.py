"""The roles a bearer token can hold (see ``phase4.monitor.store.auth`` for what each may do).

Kept apart from ``phase4.monitor.store.auth`` so that naming a role (the CLI's ``--role`` option)
does not
load the database layer.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PROBE = "probe"
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"
