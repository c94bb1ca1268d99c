"""`phase4 replay`: a CSV backtest through the service's own detection code."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from phase4.cli import app

runner = CliRunner()


def _write_events(path: Path, n: int = 1500, change_at: int = 1000, shuffle: bool = False) -> None:
    g = np.random.default_rng(8)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        after = i >= change_at
        rows.append(
            {
                "timestamp": (t0 + timedelta(hours=i)).isoformat(),
                "liver_suvmean": round(float(g.normal(2.2 * (1.2 if after else 1.0), 0.2)), 3),
                "reconstruction": "BSREM" if after else "OSEM",
                "artifact": "1" if g.random() < (0.02 if i < change_at else 0.2) else "0",
            }
        )
    order = list(range(n))
    if shuffle:
        g.shuffle(order)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for i in order:
            w.writerow(rows[i])


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    # The console wraps long lines (a long temporary path): compare words, not line breaks.
    return result.exit_code, " ".join(result.output.split())


def test_replay_writes_alarms_with_the_documented_keys(tmp_path: Path) -> None:
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    _write_events(events)
    code, output = _run(
        [
            "replay",
            str(events),
            "--reference-size",
            "300",
            "--studies-per-day",
            "24",
            "--false-alarms-per-year",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0, output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines
    for line in lines:
        assert {
            "stream",
            "index",
            "timestamp",
            "detector",
            "change_index_estimate",
            "statistic",
            "threshold",
        } <= set(line)
    by_stream = {}
    for line in lines:
        by_stream.setdefault(line["stream"], []).append(line)
    assert set(by_stream) == {"liver_suvmean", "reconstruction", "artifact"}
    first_suv = min(by_stream["liver_suvmean"], key=lambda x: x["index"])
    assert 1000 <= first_suv["index"] < 1030
    assert abs(first_suv["change_index_estimate"] - 1000) <= 10
    assert by_stream["reconstruction"][0]["detector"] == "new_category"
    assert by_stream["reconstruction"][0]["index"] == 1000
    assert all(x["index"] >= 1000 for x in lines), "alarm before the change"
    assert "liver_suvmean (numeric)" in output and "artifact (binary)" in output


def test_replay_sorts_by_time_and_reports_csv_rows(tmp_path: Path) -> None:
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    _write_events(events, shuffle=True)
    code, output = _run(
        [
            "replay",
            str(events),
            "--reference-size",
            "300",
            "--numeric",
            "liver_suvmean",
            "--out",
            str(out),
        ]
    )
    assert code == 0, output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    with events.open() as fh:
        rows = list(csv.DictReader(fh))
    first = min(lines, key=lambda x: x["timestamp"])
    assert rows[first["index"]]["timestamp"] == first["timestamp"]
    assert {x["stream"] for x in lines} == {"liver_suvmean"}


def test_replay_errors_name_what_is_wrong(tmp_path: Path) -> None:
    out = tmp_path / "alarms.jsonl"
    missing = _run(["replay", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert missing[0] == 2 and "no such file" in missing[1]
    no_ts = tmp_path / "no_ts.csv"
    no_ts.write_text("time,x\n1,2\n")
    code, output = _run(["replay", str(no_ts), "--out", str(out)])
    assert code == 2 and "no 'timestamp' column (columns: time, x)" in output
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text(
        "timestamp,x\n"
        + "".join(f"2025-01-01T00:00:{i:02d},1\n" for i in range(40))
        + "yesterday,2\n"
    )
    code, output = _run(["replay", str(bad_time), "--reference-size", "30", "--out", str(out)])
    assert code == 2 and "row 40: timestamp 'yesterday'" in output
    events = tmp_path / "events.csv"
    _write_events(events, n=400)
    code, output = _run(["replay", str(events), "--numeric", "weight", "--out", str(out)])
    assert code == 2 and "--numeric names column 'weight'" in output
    code, output = _run(["replay", str(events), "--reference-size", "500", "--out", str(out)])
    assert code == 2 and "nothing is left to monitor" in output


def _write_rare_flag(path: Path, n: int = 3000, change_at: int = 1500) -> list[dict[str, str]]:
    """An artifact flag at 2% that triples at ``change_at``, and a numeric feature."""
    g = np.random.default_rng(3)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [
        {
            "timestamp": (t0 + timedelta(hours=i)).isoformat(),
            "art": "1" if g.random() < (0.02 if i < change_at else 0.06) else "0",
            "suv": f"{g.normal(2.0, 0.2):.3f}",
        }
        for i in range(n)
    ]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_replay_says_when_a_binary_reference_grew_and_writes_the_sidecar(tmp_path: Path) -> None:
    """The earlier rule, still available: a reference that waits for 50 events reaches past
    the change, and the console and the sidecar say so."""
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    rows = _write_rare_flag(events)
    # The rule, from the data: the reference is at least 500 rows and ends at the row holding
    # its 50th event.
    events_seen = 0
    expected_rows = None
    for i, r in enumerate(rows):
        events_seen += r["art"] == "1"
        if i + 1 >= 500 and events_seen >= 50:
            expected_rows = i + 1
            break
    assert expected_rows is not None and expected_rows > 1500, "the data must make it grow"
    code, output = _run(
        [
            "replay",
            str(events),
            "--reference-size",
            "500",
            "--binary",
            "art",
            "--numeric",
            "suv",
            "--reference-events-min",
            "50",
            "--reference-events-target",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0, output
    side = json.loads((tmp_path / "alarms.reference.json").read_text())
    by_name = {s["name"]: s for s in side}
    art = by_name["art"]
    assert art["kind"] == "binary"
    assert art["grew"] is True and art["growth_steps"] == []
    assert art["reference_rows"] == expected_rows
    assert art["grew_by_rows"] == expected_rows - 500
    assert art["reference_events"] == 50
    assert (art["first_row"], art["last_row"]) == (0, expected_rows - 1)
    assert art["first_timestamp"] == rows[0]["timestamp"]
    assert art["last_timestamp"] == rows[expected_rows - 1]["timestamp"]
    assert (
        f"art: reference grew from 500 to {expected_rows:,} rows to hold 50 events "
        f"({expected_rows - 500:,} more); it reaches row {expected_rows - 1:,}"
    ) in output
    suv = by_name["suv"]
    assert suv["grew"] is False and suv["grew_by_rows"] == 0
    assert suv["reference_rows"] == 500 and suv["reference_events"] is None
    assert (suv["first_row"], suv["last_row"]) == (0, 499)
    assert suv["last_timestamp"] == rows[499]["timestamp"]
    assert "suv: reference of 500 rows; rows 0 to 499" in output
    assert "grew" not in output.split("suv: ")[1].split("art: ")[0]


def test_replay_reference_rows_follow_time_order_and_skip_missing_values(
    tmp_path: Path,
) -> None:
    """Rows out of time order and a missing value: the reference is the first 300 present
    values in time order, and its first and last rows are CSV rows."""
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    g = np.random.default_rng(5)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    n = 800
    values = [f"{g.normal(2.0, 0.2):.3f}" for _ in range(n)]
    values[10] = ""  # missing: not part of the reference
    order = list(range(n))
    order.reverse()  # CSV row k holds time n-1-k
    with events.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "suv"])
        for t in order:
            w.writerow([(t0 + timedelta(hours=t)).isoformat(), values[t]])
    code, output = _run(
        ["replay", str(events), "--reference-size", "300", "--numeric", "suv", "--out", str(out)]
    )
    assert code == 0, output
    (suv,) = json.loads((tmp_path / "alarms.reference.json").read_text())
    assert suv["reference_rows"] == 300 and suv["grew"] is False
    # times 0..300 minus the missing time 10; CSV row of time t is n-1-t
    assert suv["first_row"] == n - 1 and suv["last_row"] == n - 1 - 300
    assert suv["last_timestamp"] == (t0 + timedelta(hours=300)).isoformat()


def test_replay_prints_each_growth_step_and_stops_growth_at_the_first_alarm(
    tmp_path: Path,
) -> None:
    """With growth on, the same flag is monitored from row 500; its reference grows in steps
    from rows past the guard lag, each step on the console and in the sidecar, and stops at
    the first alarm, before the change at row 1,500 can join."""
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    rows = _write_rare_flag(events, n=6000)
    code, output = _run(
        [
            "replay",
            str(events),
            "--reference-size",
            "500",
            "--binary",
            "art",
            "--reference-events-target",
            "200",
            "--out",
            str(out),
        ]
    )
    assert code == 0, output
    (art,) = json.loads((tmp_path / "alarms.reference.json").read_text())
    assert art["reference_rows"] == 500 and art["grew"] is False
    assert art["last_timestamp"] == rows[499]["timestamp"]
    first_events = sum(r["art"] == "1" for r in rows[:500])
    assert art["reference_events"] == first_events
    assert f"art: reference of 500 rows, {first_events} events; rows 0 to 499" in output
    alarms = [json.loads(line) for line in out.read_text().splitlines()]
    assert alarms and art["growth_held_at"] == alarms[0]["timestamp"]
    assert f"art: reference growth stopped at the alarm of {alarms[0]['timestamp']}" in output
    for step in art["growth_steps"]:
        added = step["added"]
        assert added["last_row"] < alarms[0]["change_index_estimate"] <= 1500 + 500
        assert (
            f"art: reference step {step['step']} at {step['at']}: rows {added['first_row']:,} "
            f"to {added['last_row']:,}"
        ) in output
    joined = sum(s["added"]["observations"] for s in art["growth_steps"])
    assert art["final_rows"] == 500 + joined
    assert art["final_events"] == sum(r["art"] == "1" for r in rows[: 500 + joined])


def test_replay_says_when_a_reference_never_completed(tmp_path: Path) -> None:
    """A flag too rare to give 50 events before the table ends (when the reference is told to
    wait for them): never monitored, and said so."""
    events, out = tmp_path / "events.csv", tmp_path / "alarms.jsonl"
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    n = 700
    flags = ["1" if i % 100 == 7 else "0" for i in range(n)]  # 7 events in all
    with events.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "art"])
        w.writerows([(t0 + timedelta(hours=i)).isoformat(), flags[i]] for i in range(n))
    code, output = _run(
        [
            "replay",
            str(events),
            "--reference-size",
            "500",
            "--binary",
            "art",
            "--reference-events-min",
            "50",
            "--out",
            str(out),
        ]
    )
    assert code == 0, output
    (art,) = json.loads((tmp_path / "alarms.reference.json").read_text())
    assert art["complete"] is False
    assert art["reference_rows"] == n and art["reference_events"] == flags.count("1")
    assert art["last_row"] == n - 1
    assert f"art: reference incomplete at the end of the table ({n} rows, 7 of 50 events" in output
    assert "not monitored" in output
