"""Coverage-guided fuzzing (atheris, libFuzzer) of the ingest validator from raw bytes.

The property: whatever bytes arrive, the validator either refuses them the way the API does (a
JSON error, a ``ValidationError`` turned into a one-line message) or accepts a record that every
reader of the store can use: serialisable as JSON without NaN, readable back through
``RecordOut``, its times in UTC, its numbers convertible to float (as detection does), its
text encodable as UTF-8 (as both databases need). Anything else raised is a finding.

Run for as long as you like (crashing inputs are written as ``crash-*`` files; keep them in
``tests/fuzz/corpus_ingest/`` as regression cases)::

    .venv/bin/python tests/fuzz/fuzz_ingest.py tests/fuzz/corpus_ingest -max_total_time=300
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import atheris
import sqlalchemy  # noqa: F401  (imported uninstrumented: only the validator is fuzzed)
import sqlmodel  # noqa: F401
from pydantic import TypeAdapter, ValidationError

with atheris.instrument_imports(include=["phase4.monitor", "phase4.probes"]):
    from phase4.monitor.core.limits import IngestLimits
    from phase4.monitor.domain.ingest import describe_validation_error
    from phase4.monitor.domain.schemas import FeedbackIn, RecordIn, RecordOut

_RECORD = TypeAdapter(RecordIn)
_FEEDBACK = TypeAdapter(FeedbackIn)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
CONTEXT = {"limits": IngestLimits(), "now": NOW}


def _usable_number(value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        float(value)  # what detection does with a numeric value; must not overflow


def _check_record(rec: RecordIn) -> None:
    text = json.dumps({"f": rec.features, "o": rec.outputs}, allow_nan=False)
    text.encode("utf-8")
    for value in rec.features.values():
        _usable_number(value)
    for value in rec.outputs.values():
        _usable_number(value)
    out = RecordOut(
        record_id=rec.record_id,
        deployment=rec.deployment,
        study_pseudonym=rec.study_pseudonym,
        acquired_at=rec.acquired_at or rec.inferred_at,
        inferred_at=rec.inferred_at,
        received_at=NOW,
        features=rec.features,
        outputs=rec.outputs,
        latency_s=rec.latency_s,
        error=rec.error,
    )
    out.model_dump_json().encode("utf-8")
    assert rec.inferred_at.astimezone(UTC).year >= 1970


def _items(data: bytes) -> list[Any]:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # the API answers 400 or 422 for these
        return []
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        return list(body["records"][:20])
    if isinstance(body, dict) and isinstance(body.get("feedback"), list):
        return list(body["feedback"][:20])
    return [body]


def test_one_input(data: bytes) -> None:
    for raw in _items(data):
        for adapter in (_RECORD, _FEEDBACK):
            try:
                item = adapter.validate_python(raw, context=CONTEXT)
            except ValidationError as exc:
                message = describe_validation_error(exc)
                assert message and "\n" not in message
                continue
            if isinstance(item, RecordIn):
                _check_record(item)
            else:
                json.dumps(item.ground_truth, allow_nan=False).encode("utf-8")


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
