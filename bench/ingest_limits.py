"""What the ingest limits cost: per-record validation and the per-batch stream-name lookup.

Run:  .venv/bin/python bench/ingest_limits.py [--records 20000] [--repeats 5]

Baselines measured in the same run, on the same records:
- validation: the previous release's record model (same fields and types, its PHI and
  finite-number checks, none of the limit checks), against ``RecordIn`` with them;
- the stream-name lookup (``phase4.monitor.domain.stream_names``: one indexed query per batch, then
a dict
  check per record), against the whole in-process ``ingest_records`` of 1,000-record batches
  into SQLite, of which it is a part.
The best of ``--repeats`` is reported (the machine is shared: the minimum is the least noisy).
Writes bench/results/ingest_limits.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

sys.path.insert(0, str(Path(__file__).parent))
from ingest_http import DEPLOYMENT, make_records, prepare_db

from phase4.monitor.core.limits import DEFAULT_LIMITS
from phase4.monitor.core.privacy import phi_keys_in
from phase4.monitor.domain.ingest import ingest_records
from phase4.monitor.domain.schemas import FeatureValue, RecordIn
from phase4.monitor.domain.stream_names import KnownStreams
from phase4.monitor.store.auth import Principal, Role
from phase4.monitor.store.db import create_db_engine, session_scope


def _finite_json(value: Any, where: str) -> None:
    """The previous release's only check on outputs: no NaN or infinity (recursive)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{where}[{i}]")


class PlainRecord(BaseModel):
    """The previous release's RecordIn (the baseline): the same fields and types, its PHI and
    finite-number checks, none of the limit checks."""

    model_config = ConfigDict(extra="forbid")
    record_id: str
    deployment: str
    study_pseudonym: str | None = None
    acquired_at: AwareDatetime | None = None
    inferred_at: AwareDatetime
    features: dict[str, FeatureValue] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    latency_s: Annotated[float, Field(ge=0)] | None = None
    error: str | None = None

    @field_validator("features")
    @classmethod
    def _features_clean(cls, v: dict[str, Any]) -> dict[str, Any]:
        if phi_keys_in(v):
            raise ValueError("features contains patient identifiers")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_clean(cls, v: dict[str, Any]) -> dict[str, Any]:
        _finite_json(v, "outputs")
        if phi_keys_in(v):
            raise ValueError("outputs contains patient identifiers")
        return v


def best_of(repeats: int, run: Any) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    records = make_records(args.records)
    n = len(records)
    plain, limited = TypeAdapter(PlainRecord), TypeAdapter(RecordIn)
    context = {"limits": DEFAULT_LIMITS, "now": datetime.now(UTC)}

    plain_s = best_of(args.repeats, lambda: [plain.validate_python(r) for r in records])
    limited_s = best_of(
        args.repeats, lambda: [limited.validate_python(r, context=context) for r in records]
    )
    valid = [limited.validate_python(r, context=context) for r in records]

    with tempfile.TemporaryDirectory() as tmp:
        url, _ = prepare_db(Path(tmp) / "limits.db")
        engine = create_db_engine(url)
        principal = Principal("bench", Role.PROBE, "site-a")
        start = time.perf_counter()
        for i in range(0, n, 1000):
            with session_scope(engine) as s:
                ingest_records(s, records[i : i + 1000], principal, max_batch=1000)
        ingest_s = time.perf_counter() - start

        def streams() -> None:
            for i in range(0, n, 1000):
                with session_scope(engine) as s:
                    known = KnownStreams.load(s, [DEPLOYMENT], 200)
                    for rec in valid[i : i + 1000]:
                        known.admit(
                            rec.deployment, {"features": rec.features, "outputs": rec.outputs}
                        )

        streams_s = best_of(args.repeats, streams)
        engine.dispose()

    result = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": n,
        "validate_plain_us_per_record": 1e6 * plain_s / n,
        "validate_with_limits_us_per_record": 1e6 * limited_s / n,
        "validation_ratio": limited_s / plain_s,
        "ingest_records_us_per_record": 1e6 * ingest_s / n,
        "stream_names_us_per_record": 1e6 * streams_s / n,
        "stream_names_share_of_ingest": streams_s / ingest_s,
    }
    out = Path(__file__).parent / "results" / "ingest_limits.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
