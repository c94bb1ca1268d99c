"""The service's worker builds evidently reports in a child process: the process that answers
the probes never imports evidently, and every drift alert still gets its report, once."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phase4.monitor.surveillance.detection import detect_deployment
from tests.conftest import Fixture
from tests.monitor.test_detection import CONFIG, _configure, _send, _study

WORKER = """
import json, sys
from phase4.monitor.store.db import create_db_engine
from phase4.service import DetectionWorker
engine = create_db_engine(sys.argv[1])
worker = DetectionWorker(engine, interval_s=3600)
worker._reports()
worker._reports()  # nothing pending: no second process, no second report
print(json.dumps({"evidently_here": "evidently" in sys.modules}))
"""


def _reports(world: Fixture) -> list[int]:
    with world.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT alert_id FROM drift_report")).scalars())


def test_reports_are_built_outside_the_serving_process(
    client: TestClient, world: Fixture, db_url: str
) -> None:
    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(6)
    _send(client, world, [_study(g, i, changed=i >= 400) for i in range(600)])
    detect_deployment(world.engine, world.deployment_b)
    with world.engine.connect() as conn:
        drift_alerts = set(
            conn.execute(sa.text("SELECT id FROM alert WHERE cause = 'drift'")).scalars()
        )
    assert drift_alerts and _reports(world) == []
    done = subprocess.run(
        [sys.executable, "-c", WORKER, db_url],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"evidently_here": False}
    built = _reports(world)
    assert sorted(built) == sorted(drift_alerts)  # each alert once, none twice


def test_a_server_that_does_not_detect_still_runs_the_other_steps(
    client: TestClient, world: Fixture, db_url: str
) -> None:
    """PHASE4_DETECTION_IN_SERVER=false: `phase4 detect --loop` analyses; the server's worker
    leaves the records alone and still builds the reports of the alerts the other opened."""
    from phase4.monitor.core.settings import Settings
    from phase4.service import create_app

    _configure(world.engine, world.deployment_b, CONFIG)
    g = np.random.default_rng(6)
    _send(client, world, [_study(g, i, changed=i >= 400) for i in range(600)])
    settings = Settings(database_url=db_url, detection_interval_s=3600, detection_in_server=False)
    worker = create_app(settings, engine=world.engine).state.worker
    assert not worker.detects
    worker.run_once()

    def unanalysed() -> int:
        with world.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM inference_record WHERE drift_processed_at IS NULL"
                    )
                ).scalar_one()
            )

    assert unanalysed() == 600  # the server did not detect
    detect_deployment(world.engine, world.deployment_b)  # the `phase4 detect` worker's part
    assert unanalysed() == 0
    worker.run_once()
    with world.engine.connect() as conn:
        drift_alerts = set(
            conn.execute(sa.text("SELECT id FROM alert WHERE cause = 'drift'")).scalars()
        )
    assert drift_alerts and sorted(_reports(world)) == sorted(drift_alerts)
