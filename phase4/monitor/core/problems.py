"""How a validation problem is said to a person: the field's path, then what is wrong.

One convention for the API's 422 messages, the CLI's one-line errors and detection's
configuration alerts: ``monitoring.streams[2].kind: kind must be numeric, binary or
categorical``. Paths are dotted, list positions in brackets (as the ingest limits name
``outputs.a[2]``), and a key that is not printable or too long is shown escaped and cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PART_CHARS_MAX = 100

# pydantic's words for a few problems, said the way the documentation says them
_MESSAGES = {"extra_forbidden": "extra fields not permitted"}


def _part(part: object) -> str:
    text = str(part)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= PART_CHARS_MAX else text[: PART_CHARS_MAX - 3] + "..."


def field_path(loc: Sequence[str | int]) -> str:
    """``monitoring.streams[2].kind`` for ``("monitoring", "streams", 2, "kind")``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_part(part)}" if out else _part(part)
    return out


def problem(error: Mapping[str, Any], loc: Sequence[str | int] | None = None) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as ``path: message``;
    ``loc`` replaces the error's own location (to drop or add a prefix). A model-wide check
    that names the place of its problem puts it in its context as ``at`` (a location below
    the model's)."""
    at = (error.get("ctx") or {}).get("at", ())
    at = at if isinstance(at, tuple | list) else ()
    where = field_path([*(error.get("loc", ()) if loc is None else loc), *at])
    message = _MESSAGES.get(str(error.get("type", "")), str(error.get("msg", "invalid")))
    message = message.removeprefix("Value error, ")
    if not message.isprintable():
        message = repr(message)[1:-1]
    # A check that names the exact place itself (the ingest limits: monitoring.a.b: ...).
    if where and message.startswith(where) and message[len(where) : len(where) + 1] in ".:[ ":
        return message
    return f"{where}: {message}" if where else message


def problems(errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()) -> list[str]:
    """Every error as ``path: message``, each path under ``prefix``."""
    return [problem(e, (*prefix, *e.get("loc", ()))) for e in errors]
