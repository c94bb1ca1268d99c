"""What authentication and the authorisation table cost per request, and what keeping a token's
last use to the minute saves.

Run:  .venv/bin/python bench/authz_overhead.py [--calls 2000] [--rounds 5]

In-process, SQLite in WAL mode (as ``phase4 serve``), each step of a request's authorisation timed
on its own, rounds interleaved, best round kept (the machine is shared: the best round is the
least disturbed). Baseline in the same run: the primary-key read every route does to load its
object (``session.get(Alert, id)``), so the costs are ratios against one indexed SELECT:

- ``check_token``: SHA-256 of the secret, one indexed SELECT, revocation and expiry checks;
- ``rule_for`` + ``allows_role`` + ``allows_site``: the table's decision;
- ``note_use`` within the minute: the check that skips the write (every request but one a minute);
- ``note_use`` writing: the UPDATE and commit that would run on every request without the minute.

Writes bench/results/authz_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from phase4.monitor.api.authz import rule_for
from phase4.monitor.core.settings import sqlite_url
from phase4.monitor.domain.registry import create_deployment
from phase4.monitor.store.auth import Principal, Role, check_token, create_token, note_use
from phase4.monitor.store.db import create_db_engine, session_scope, upgrade
from phase4.monitor.store.models import Alert, utcnow

RESULTS = Path(__file__).parent / "results" / "authz_overhead.json"


def prepare(workdir: Path) -> tuple[str, str, int]:
    url = sqlite_url(workdir / "authz.db")
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as s:
        for site in ("site-a", "site-b"):
            create_deployment(
                s,
                deployment_id=f"lesion-ai@{site}",
                site_id=site,
                model_name="PETLesionDetect",
                model_version="2.1.0",
                actor="bench",
            )
        token = create_token(s, name="probe-a", role=Role.PROBE, site_id="site-a", actor="bench")
        alert = Alert(
            deployment_id="lesion-ai@site-a",
            stream="features.injected_activity_mbq",
            cause="cusum",
            severity="warning",
            title="bench",
            evidence={"statistic": 7.0, "threshold": 5.0},
        )
        s.add(alert)
        s.flush()
        alert_id = alert.id or 0
    engine.dispose()
    return url, token, alert_id


def best_us(step: Callable[[], object], calls: int, rounds: int) -> list[float]:
    """Per-call microseconds of each round."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        out.append((time.perf_counter() - start) / calls * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url, token, alert_id = prepare(Path(tmp))
        engine = create_db_engine(url)
        session = Session(engine)
        principal = check_token(session, token)
        fresh = Principal(
            principal.name, principal.role, principal.site_id, principal.token_id, utcnow()
        )
        never = Principal(principal.name, principal.role, principal.site_id, principal.token_id)

        def pk_read() -> object:
            session.expunge_all()
            return session.get(Alert, alert_id)

        def authenticate() -> object:
            session.expunge_all()
            return check_token(session, token)

        def decide() -> object:
            rule = rule_for("POST", "/v1/alerts/{alert_id}/acknowledge")
            return rule.allows_role(principal) and rule.allows_site(principal, "site-a")

        steps: dict[str, Callable[[], object]] = {
            "baseline_pk_read": pk_read,
            "check_token": authenticate,
            "table_decision": decide,
            "note_use_within_minute": lambda: note_use(engine, fresh),
            "note_use_writing": lambda: note_use(engine, never),
        }
        rounds: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):  # interleaved: each round of each step, in turn
            for name, step in steps.items():
                rounds[name] += best_us(step, args.calls, 1)
        session.close()
        engine.dispose()

    best = {name: min(v) for name, v in rounds.items()}
    base = best["baseline_pk_read"]
    result: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "us_per_call_each_round": rounds,
        "us_per_call_best": best,
        "over_baseline": {name: v / base for name, v in best.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
