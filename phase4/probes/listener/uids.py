"""The UID grammar of DICOM PS3.5 §9.1, checked on what a sender puts in a C-STORE.

A UID is at most 64 characters of digits and dots; its components (between dots) are not
empty and have no leading zero unless the component is the single digit "0". A value that
breaks the grammar is not a UID and is refused: it must never become part of a path, a key or a
message. PS3.5 §6.4 lets a value of even length be padded with one trailing NUL, which pydicom
leaves in place; that pad is removed before the check.
"""

from __future__ import annotations

import re

MAX_UID_CHARS = 64
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


class UidError(ValueError):
    """An attribute whose value is not a UID; names the attribute, never the value."""


def valid_uid(value: object) -> bool:
    """True if ``value`` is a PS3.5 §9.1 UID (a str, trailing NUL pad allowed)."""
    if not isinstance(value, str):
        return False
    text = value.removesuffix("\0")
    return 0 < len(text) <= MAX_UID_CHARS and _UID.fullmatch(text) is not None


def checked_uid(value: object, keyword: str) -> str:
    """The UID without its pad, or UidError naming ``keyword`` (the value is not quoted: a
    malformed one may be a path or carry an identifier)."""
    if value is None or value == "":
        raise UidError(f"{keyword} is missing")
    text = str(value)
    if not valid_uid(text):
        raise UidError(
            f"{keyword} is not a UID (PS3.5 9.1: at most 64 digits and dots, components "
            "without leading zeros)"
        )
    return text.removesuffix("\0")
