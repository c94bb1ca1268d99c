"""The captured record: cheap to build on the hot path, encoded to wire JSON later.

``Probe.record`` enqueues a plain tuple laid out as ``Captured`` (``Captured._make`` names it
in the sender), with features/outputs snapshotted as tuples of items. Both choices keep a
queued record out of the cyclic GC: CPython stops tracking an *exact* tuple whose items are
untracked, but never a tuple subclass nor a tuple holding a dict. A backlog of 150k tracked
records (a stuck monitor) made each full collection a 70-110 ms pause in the model's thread.
The hot path does no validation or serialisation; the study identifier is already an HMAC
pseudonym. ``encode`` runs in the spool writer thread and produces the exact wire record of
``POST /v1/records``.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from typing import NamedTuple

from phase4.probes.sanitise import StripReport, sanitise_features, sanitise_mapping, storable_text

MAX_ERROR_CHARS = 1000
NOT_A_DICT = ...  # stands in for a features/outputs value that was not a dict (dropped later)
# uuid4 layout: clear the version nibble and variant bits, then set version 4 / RFC 4122.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


class Captured(NamedTuple):
    """Field names of one inference as captured (pseudonymised, not yet sanitised)."""

    record_id: str
    study_pseudonym: str | None
    acquired_at: object
    inferred_at_s: float  # time.time() at capture; turned into a datetime by ``encode``
    features: object  # snapshot(): tuple of items, None or NOT_A_DICT
    outputs: object
    latency_s: object
    error: str | None
    model_version: object = None  # the version that produced outputs (None: the accepted one)
    shadow_outputs: object = None  # other versions' outputs: tuple of (version, snapshot)


class Pending(NamedTuple):
    """A wire-ready record; ``seq`` is its spool row id, or None while it lives in memory."""

    record_id: str
    body: str
    seq: int | None = None


def new_record_id() -> str:
    """A random (version 4) UUID as 32 hex digits, like ``uuid.uuid4().hex``.

    Same bits from ``os.urandom``, but without building a ``uuid.UUID`` object, which is
    most of uuid4()'s cost on the capture path.
    """
    bits = int.from_bytes(os.urandom(16), "big")
    return "%032x" % ((bits & _UUID4_CLEAR) | _UUID4_SET)


def snapshot(mapping: object) -> object:
    """A dict as a tuple of its items (a shallow copy the GC can forget); see module doc."""
    if isinstance(mapping, dict):
        return tuple(mapping.items())
    return None if mapping is None else NOT_A_DICT


def _restore(value: object) -> object:
    return dict(value) if isinstance(value, tuple) else value  # type: ignore[arg-type]


def describe_error(error: object, *, with_message: bool = False) -> str:
    """The exception's type name, or ``"TypeName: message"`` when the site opted in; truncated
    to 1000 chars. A str is taken as already described by the caller.

    Messages are left out by default: a model's exception text can quote a file path or a
    DICOM value that names the patient, and the probe cannot tell which ones do.
    """
    if isinstance(error, BaseException):
        name = type(error).__name__
        if not with_message:
            return name[:MAX_ERROR_CHARS]
        try:
            message = str(error)
        except Exception:  # a broken __str__ must not turn the model's error into ours
            message = "<unprintable message>"
        text = f"{name}: {message}" if message else name
    elif isinstance(error, str):
        text = str.__str__(error)
    else:
        text = type(error).__name__
    return text[:MAX_ERROR_CHARS]


CapturedTuple = tuple[
    str, str | None, object, float, object, object, object, str | None, object, object
]


class UnencodableRecord(ValueError):
    """The record cannot be sent at all; ``field`` names why (never its value)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} has no UTF-8 form or holds NUL")
        self.field = field


def encode(raw: CapturedTuple, deployment: str, report: StripReport) -> Pending:
    """Sanitise and serialise one record to its wire JSON (compact, UTF-8 safe, no NaN).

    A value that cannot be encoded is dropped from this record alone (see phase4.probes.sanitise);
    only a record whose id cannot be encoded is refused whole (``UnencodableRecord``).
    """
    captured = Captured._make(raw if len(raw) == len(Captured._fields) else (*raw, None, None))
    if not storable_text(captured.record_id):
        raise UnencodableRecord("record_id")
    error = captured.error
    if error is not None and not storable_text(error):
        report.dropped_values.append("error")
        error = "<unencodable error description>"
    inferred_at = datetime.fromtimestamp(captured.inferred_at_s, UTC)
    record = {
        "record_id": captured.record_id,
        "deployment": deployment,
        "study_pseudonym": captured.study_pseudonym,
        "acquired_at": _timestamp(captured.acquired_at, inferred_at, report),
        "inferred_at": inferred_at.isoformat(),
        "features": sanitise_features(_restore(captured.features), report),
        "outputs": sanitise_mapping(_restore(captured.outputs), "outputs", report),
        "latency_s": _latency(captured.latency_s, report),
        "error": error,
    }
    _versions(record, captured, report)
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not body.isascii():
        body.encode("utf-8")  # a last check: UnicodeEncodeError refuses this record alone
    return Pending(captured.record_id, body)


def _timestamp(value: object, default: datetime, report: StripReport) -> str:
    """ISO 8601 with offset; naive datetimes are taken as local time (DICOM's convention)."""
    if value is None:
        return default.isoformat()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    report.dropped_values.append("acquired_at")
    return default.isoformat()


def _latency(value: object, report: StripReport) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        latency_s = float(value)
        if math.isfinite(latency_s) and latency_s >= 0:
            return latency_s
    report.dropped_values.append("latency_s")
    return None


VERSION_CHARS_MAX = 64


def _version(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= VERSION_CHARS_MAX and storable_text(value):
        return value
    return None


def _versions(record: dict[str, object], captured: Captured, report: StripReport) -> None:
    """The model version and the shadow versions' outputs, only when given (a record without
    them is byte-for-byte what it was before versions existed)."""
    if captured.model_version is not None:
        version = _version(captured.model_version)
        if version is None:
            report.dropped_values.append("model_version")
        else:
            record["model_version"] = version
    if isinstance(captured.shadow_outputs, tuple):
        shadow = {}
        for name, outputs in captured.shadow_outputs:
            version = _version(name)
            if version is None or not isinstance(outputs, tuple):
                report.dropped_values.append("shadow_outputs")
                continue
            shadow[version] = sanitise_mapping(
                _restore(outputs), f"shadow_outputs.{version}", report
            )
        if shadow:
            record["shadow_outputs"] = shadow
