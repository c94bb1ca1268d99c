"""One error for what a person asked that the domain cannot do, with the HTTP status it means.

404: it names nothing that exists; 409: it does not fit the current state (an alert already
resolved, a result already signed off); 422: it is invalid (a blank reason, unordered levels).
"""

from __future__ import annotations


class ActionRefused(ValueError):
    """The message names what is wrong; ``status_code`` is 404, 409 or 422."""

    default_status = 422

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code or self.default_status
