"""Keeping received values out of the listener's logs.

pydicom and pynetdicom report a value that breaks its VR (PS3.5 §6.2) by quoting it, in a log
line and, for pydicom, a UserWarning too ("Invalid value for VR UI: '...'"). A sender controls
those values: a malformed UID can be a path, and a malformed name or ID is the patient's. The
listener's filter replaces every quoted value of such a message with ``'<redacted>'``, and the
warnings (which say nothing the log line does not) are not shown.
"""

from __future__ import annotations

import logging
import re
import warnings

_ABOUT_A_VALUE = re.compile(r"invalid|value", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
LIBRARY_LOGGERS = ("pydicom", "pynetdicom")


class RedactQuotedValues(logging.Filter):
    """Masks quoted text in messages about values; keeps the record (the event is useful)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        if _ABOUT_A_VALUE.search(message):
            record.msg = _QUOTED.sub("'<redacted>'", message)
            record.args = ()
        return True


def redact_library_logs() -> None:
    """Install the filter on pydicom's and pynetdicom's loggers and their children (a
    logger's filters do not see its children's records), once per process."""
    names = [
        name
        for name in [*LIBRARY_LOGGERS, *logging.root.manager.loggerDict]
        if name.split(".")[0] in LIBRARY_LOGGERS
    ]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuotedValues) for f in logger.filters):
            logger.addFilter(RedactQuotedValues())
    warnings.filterwarnings("ignore", message=r"Invalid value for VR", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"The value length .* exceeds", category=UserWarning)
