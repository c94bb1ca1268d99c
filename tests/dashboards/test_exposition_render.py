"""/metrics writes the store's families directly (``StoreCollector.render``) rather than through
prometheus_client's metric objects: checked here against ``generate_latest`` of the same
families (the reference) on a populated store with awkward label
values, byte for byte at a fixed time, sample for sample through prometheus_client's own parser,
through every cache (detector state, records tally, phantom text) and by promtool."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import col

from phase4.monitor.api.metrics import StoreCollector, _fmt
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import (
    DetectorState,
    Device,
    InferenceRecord,
    PhantomResult,
    PhantomTolerance,
)
from phase4.monitor.surveillance.detection import detect_all
from tests.conftest import Fixture, LiveMonitor
from tests.dashboards import data
from tests.dashboards.conftest import tool

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
AWKWARD_MODEL = 'Vision "600" \\ edge'
AWKWARD_SERIAL = "X\\9\nB"
AWKWARD_METRIC = 'contrast "hot"\\sphere\n10mm'


class _Families:
    """A collector of a fixed list of metrics, to hand to generate_latest."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def reference(engine: Engine, now: datetime) -> str:
    """generate_latest of the store's families as prometheus_client metric objects, by a
    collector with nothing cached."""
    return generate_latest(_Families(list(StoreCollector(engine).collect(now)))).decode()


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, key
            out[key] = s.value
    return out


def without_ages(text: str) -> str:
    return re.sub(r"^(phase4_\w*_age_seconds(?:\{.*\})?) \S+$", r"\1 AGE", text, flags=re.M)


def add_awkward_phantom(engine: Engine, now: datetime) -> None:
    """A scanner whose model and serial, and a metric whose name, hold a backslash, a double
    quote and a newline; tolerances that print with exponents."""
    with session_scope(engine) as s:
        device = Device(
            site_id="site-a", manufacturer="M", model=AWKWARD_MODEL, serial=AWKWARD_SERIAL
        )
        s.add(device)
        s.flush()
        assert device.id is not None
        s.add(
            PhantomTolerance(
                device_id=device.id,
                kind="nema_iq",
                metric=AWKWARD_METRIC,
                version=1,
                lower_action=-1.5e-7,
                lower_tolerance=0.25,
                upper_tolerance=12345678.5,
                upper_action=1e22,
                created_by="physicist",
            )
        )
        s.add(
            PhantomResult(
                result_id=uuid.uuid4().hex,
                device_id=device.id,
                kind="nema_iq",
                acquired_at=now - timedelta(hours=5),
                metrics={AWKWARD_METRIC: 2.0e-5, "count": 1234567, "bad": "n/a", "neg": -3},
                verdicts={
                    AWKWARD_METRIC: "tolerance",
                    "count": "pass",
                    "neg": {"verdict": "action"},
                },
            )
        )


def add_records(engine: Engine, deployment: str, n: int) -> None:
    at = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(InferenceRecord),
            [
                {
                    "record_id": uuid.uuid4().hex,
                    "deployment_id": deployment,
                    "acquired_at": at,
                    "inferred_at": at,
                    "received_at": at + timedelta(seconds=i),
                    "features": {"x": 1.0},
                    "outputs": {},
                }
                for i in range(n)
            ],
        )


def test_rendered_families_are_generate_latest_byte_for_byte(
    live_monitor: LiveMonitor, tmp_path: Path
) -> None:
    data.load(live_monitor.url, live_monitor.world, tmp_path, records=250)
    engine = live_monitor.engine
    now = datetime.now(UTC)
    add_awkward_phantom(engine, now)
    store = StoreCollector(engine)  # lives across the steps below, caches and all

    def check(step: str) -> str:
        at = datetime.now(UTC)
        expected = reference(engine, at)
        assert store.render(at) == expected, step
        assert store.render(at) == expected, f"{step}, warm"
        return expected

    text = check("cold")
    parsed = samples(text)
    device = f"site-a/{AWKWARD_MODEL}/{AWKWARD_SERIAL}"
    labels = {"site": "site-a", "device": device, "kind": "nema_iq", "metric": AWKWARD_METRIC}
    key = tuple(sorted(labels.items()))
    assert parsed["phase4_phantom_metric", key] == 2.0e-5
    assert parsed["phase4_phantom_verdict_level", key] == 1
    bound = tuple(sorted({**labels, "bound": "upper_action"}.items()))
    assert parsed["phase4_phantom_tolerance", bound] == 1e22
    assert r"X\\9\nB" in text and r"contrast \"hot\"\\sphere\n10mm" in text
    assert 'site="site-a"} 1e+22\n' in text and "} 1.23456785e+07\n" in text

    add_records(engine, data.STEADY, 30)  # only added rows: the tally grows
    check("records added")
    newest = sa.select(sa.func.max(InferenceRecord.id)).scalar_subquery()
    with engine.begin() as conn:  # a deletion: the tally is regrouped
        conn.execute(sa.delete(InferenceRecord).where(col(InferenceRecord.id) == newest))
    check("a record deleted")
    with engine.begin() as conn:  # a deletion, then rows added: regrouped too
        conn.execute(sa.delete(InferenceRecord).where(col(InferenceRecord.id) == newest))
    add_records(engine, data.DRIFTING, 200)
    check("a record deleted, then records added")
    detect_all(engine)  # the detector state changes
    check("detector state saved")
    with engine.begin() as conn:
        conn.execute(sa.update(PhantomTolerance).values(upper_action=99.0))
        conn.execute(sa.delete(DetectorState))
    check("tolerances changed, detector state gone")


def test_the_served_exposition_matches_the_reference_and_passes_promtool(
    live_monitor: LiveMonitor, tmp_path: Path
) -> None:
    data.load(live_monitor.url, live_monitor.world, tmp_path, records=250)
    add_awkward_phantom(live_monitor.engine, datetime.now(UTC))
    for _ in range(2):  # cold, then warm
        served = httpx.get(f"{live_monitor.url}/metrics", timeout=30).text
        expected = reference(live_monitor.engine, datetime.now(UTC))
        assert without_ages(served).startswith(without_ages(expected))
        served_samples, expected_samples = samples(served), samples(expected)
        store_names = {name for name, _ in expected_samples}
        assert {k for k in served_samples if k[0] in store_names} == set(expected_samples)
        for key, value in expected_samples.items():
            if "_age_seconds" in key[0]:
                assert abs(served_samples[key] - value) < 60, key
            else:
                assert served_samples[key] == value, key
        # The in-process families follow, as generate_latest writes them (counters with
        # _created, the latency histogram, the probes).
        assert "# TYPE phase4_ingest_items_created gauge\n" in served
        assert 'phase4_inference_latency_seconds_bucket{deployment="' in served
        lint = subprocess.run(
            [tool("promtool"), "check", "metrics"],
            input=served,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
            lint.stdout + lint.stderr
        )


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 7, 999_999, 1_000_000, -1_000_000, 123_456_789, 2**60, -(2**60), 0.0, -0.0,
     0.5, 1e-7, -2.5e-12, 1234567.0, 12345678.9, 1e22, -1e22, float("inf"), float("-inf"),
     float("nan"), True, False],
)  # fmt: skip
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert _fmt(value) == floatToGoString(value)


def test_added_records_are_counted_without_regrouping_the_table(world: Fixture) -> None:
    engine = world.engine
    add_records(engine, world.deployment_a, 20)
    store = StoreCollector(engine)
    store.render()
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        store.render()
        unchanged = list(statements)
        statements.clear()
        add_records(engine, world.deployment_b, 5)
        statements.clear()
        at = datetime.now(UTC)
        text = store.render(at)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert text == reference(engine, at)
    groups = [s for s in statements if "GROUP BY inference_record.deployment_id" in s]
    assert len(groups) == 1 and "WHERE inference_record.id >" in groups[0]
    assert not any("GROUP BY inference_record" in s for s in unchanged)
    assert (
        f'phase4_records_stored_total{{deployment="{world.deployment_b}",site="site-b"}} 5.0'
        in (store.render())
    )
