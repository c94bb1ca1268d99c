"""Probe silence: learned from a clinic's own arrival pattern (nights and weekends are usual),
one alert per silence, resolved by phase4 (audited) when records resume."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from phase4.alerts import heartbeat
from phase4.alerts.config import ClinicCalendar, NotifySettings
from phase4.alerts.heartbeat import (
    HEARTBEAT_STREAM,
    SILENCE_CAUSE,
    WEEK,
    arrivals_of,
    assess,
    check_heartbeats,
    closed_seconds,
)
from phase4.alerts.notify.dispatcher import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink
from phase4.monitor.domain.alert_actions import resolve_alert
from phase4.monitor.store.audit import verify_chain
from phase4.monitor.store.db import session_scope
from phase4.monitor.store.models import Alert, AuditEntry, Deployment
from tests.alerts.conftest import T0, insert_records, settings_for
from tests.conftest import Fixture


def clinic(weeks: int, start: datetime = T0) -> list[datetime]:
    """Weekdays 08:00-17:00, a study every 30 minutes (T0 is a Monday 08:00 UTC)."""
    out = []
    for day in range(7 * weeks):
        d = start + timedelta(days=day)
        if d.weekday() >= 5:
            continue
        out += [d + timedelta(minutes=30 * k) for k in range(19)]
    return out


def test_nights_and_weekends_are_usual_a_silent_working_morning_is_not() -> None:
    settings = settings_for()
    arrivals = arrivals_of(clinic(4))
    friday_last = arrivals[-1]  # Friday 17:00 of week 4
    assert friday_last.weekday() == 4
    saturday_noon = friday_last + timedelta(hours=19)
    monday_early = friday_last + timedelta(days=2, hours=15, minutes=30)  # Monday 08:30
    for now in (friday_last + timedelta(hours=14), saturday_noon, monday_early):
        assert not assess(arrivals, now, settings).silent, now

    monday_noon = friday_last + timedelta(days=2, hours=19, minutes=30)  # Monday 12:30
    verdict = assess(arrivals, monday_noon, settings)
    assert verdict.rule == "weekly"
    assert verdict.expected_arrivals is not None and verdict.expected_arrivals >= 8
    assert verdict.weeks_compared >= 2

    # Less than a week of history: not judged (its first weekend would look like a silence).
    one_week = arrivals_of(clinic(1))
    assert assess(one_week, one_week[-1] + timedelta(days=9), settings).usual_gap_s is None
    # Two weeks: too few for the weekly rule; the gap rule has seen one weekend (63 h).
    two_weeks = arrivals_of(clinic(2))
    assert assess(two_weeks, two_weeks[-1] + timedelta(days=3), settings).rule is None
    long_silence = assess(two_weeks, two_weeks[-1] + timedelta(days=5), settings)
    assert long_silence.usual_gap_s == 63 * 3600
    assert long_silence.rule == "gap"
    assert long_silence.allowed_silence_s is not None
    assert long_silence.allowed_silence_s == 1.5 * long_silence.usual_gap_s  # type: ignore[operator]


def test_records_in_one_batch_are_one_arrival() -> None:
    t = T0
    batch = [t, t + timedelta(seconds=5), t + timedelta(seconds=30), t + timedelta(minutes=10)]
    assert arrivals_of(batch) == [t, t + timedelta(minutes=10)]


def test_a_silence_opens_one_alert_which_resumption_resolves(
    world: Fixture, sink: LocalSMTPSink
) -> None:
    settings = settings_for(sink)
    times = clinic(4)
    insert_records(world.engine, world.deployment_a, times)
    last = times[-1]  # Friday 17:00
    # A normal weekend: nothing.
    assert check_heartbeats(world.engine, settings, now=last + timedelta(days=2)) == []
    # Monday 12:30 and nothing since Friday: one alert, for deployment A only (B has no records).
    monday = last + timedelta(days=2, hours=19, minutes=30)
    [alert_id] = check_heartbeats(world.engine, settings, now=monday)
    assert check_heartbeats(world.engine, settings, now=monday + timedelta(hours=1)) == []
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        assert (alert.stream, alert.cause, alert.severity) == (
            HEARTBEAT_STREAM,
            SILENCE_CAUSE,
            "warning",
        )
        assert alert.deployment_id == world.deployment_a
        assert alert.evidence["last_record_at"] == last.isoformat()
        assert alert.evidence["rule"] == "weekly"
        assert alert.opened_at == monday

    # The silence is mailed like any alert, with the probe checklist.
    notify_pending(world.engine, settings, now=monday)
    [m] = sink.wait_for(1)
    assert "No records received from the probe of lesion-ai@site-a for 2.8 days" in m.subject
    assert "probe process" in m.part("plain")

    # Records resume: the alert is resolved by phase4, audited, with when they resumed.
    resumed = monday + timedelta(hours=2)
    insert_records(world.engine, world.deployment_a, [resumed])
    assert check_heartbeats(world.engine, settings, now=resumed + timedelta(minutes=5)) == []
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.status == "resolved"
        assert alert.resolved_by == "phase4"
        assert alert.resolution and alert.resolution.startswith("records resumed")
        assert alert.evidence["resumed_at"] == resumed.isoformat()
        entry = s.exec(
            select(AuditEntry).where(
                AuditEntry.action == "alert.resolve", AuditEntry.entity_id == str(alert_id)
            )
        ).one()
        assert entry.actor == "phase4"
        assert verify_chain(s).ok

    # A later silence is a new alert.
    [second] = check_heartbeats(world.engine, settings, now=resumed + timedelta(days=6))
    assert second != alert_id


def test_a_silence_resolved_by_a_person_does_not_reopen(world: Fixture) -> None:
    settings = settings_for()
    times = clinic(3)
    insert_records(world.engine, world.deployment_b, times)
    now = times[-1] + timedelta(days=10)
    [alert_id] = check_heartbeats(world.engine, settings, now=now)
    with session_scope(world.engine) as s:
        resolve_alert(s, alert_id, user="physicist-b", reason="site decommissioned the AI")
    assert check_heartbeats(world.engine, settings, now=now + timedelta(days=1)) == []


def test_too_little_history_is_not_judged(world: Fixture) -> None:
    times = [T0 + timedelta(minutes=30 * i) for i in range(5)]
    insert_records(world.engine, world.deployment_a, times)
    assert check_heartbeats(world.engine, settings_for(), now=T0 + timedelta(days=30)) == []
    assert check_heartbeats(world.engine, settings_for(heartbeat_enabled=False), now=T0) == []


# --- the clinic's calendar: closed days ---------------------------------------------------------


def _weeks_then_holiday_monday() -> tuple[list[datetime], datetime]:
    """Four weeks of the clinic; the Monday after is a public holiday. Returns the arrivals and
    that Monday (a date at 00:00 UTC)."""
    arrivals = arrivals_of(clinic(4))
    monday = (arrivals[-1] + timedelta(days=3)).replace(hour=0, minute=0)
    assert monday.weekday() == 0
    return arrivals, monday


def test_a_public_holiday_is_not_a_silence_but_a_dead_probe_after_it_is() -> None:
    arrivals, monday = _weeks_then_holiday_monday()
    holiday = ClinicCalendar(frozenset({monday.date()}))
    settings = settings_for()
    at_noon = monday + timedelta(hours=12, minutes=30)
    # Without the calendar the holiday looks like a probe that died over the weekend ...
    assert assess(arrivals, at_noon, settings).rule == "weekly"
    # ... with it, the holiday is expected to be quiet, and says how much of the silence it was.
    verdict = assess(arrivals, at_noon, settings, holiday)
    assert verdict.rule is None
    assert verdict.closed_s == 12.5 * 3600
    # Tuesday 08:30, before the first study of the day: still nothing to say.
    assert (
        assess(arrivals, monday + timedelta(days=1, hours=8, minutes=30), settings, holiday).rule
        is None
    )
    # Tuesday 12:30 and still nothing: a silent working morning, whatever Monday was.
    tuesday_noon = monday + timedelta(days=1, hours=12, minutes=30)
    assert assess(arrivals, tuesday_noon, settings, holiday).rule == "weekly"


def test_a_long_weekend_counts_only_its_open_hours_in_the_gap_rule() -> None:
    """Friday 17:00 to Tuesday 17:00 is longer than 1.5 x any weekend seen (63 h) only because
    Monday was closed; the gap rule alone judges (the weekly rule needs two weeks)."""
    arrivals = arrivals_of(clinic(2))
    friday_last = arrivals[-1]
    monday = (friday_last + timedelta(days=3)).replace(hour=0, minute=0)
    settings = settings_for()
    now = monday + timedelta(days=1, hours=17)  # 96 h after Friday 17:00
    assert assess(arrivals, now, settings).rule == "gap"
    verdict = assess(arrivals, now, settings, ClinicCalendar(frozenset({monday.date()})))
    assert verdict.closed_s == 24 * 3600
    assert verdict.rule is None  # 72 open hours against 1.5 x 63 = 94.5


def test_closed_days_are_local_days_of_the_clinic() -> None:
    """A clinic in Sydney (UTC+10 in April) works 08:00-17:00 local, 22:00-07:00 UTC, across
    two UTC dates: its holiday is its local date, not the UTC one."""
    sydney = ZoneInfo("Australia/Sydney")
    local_days = [datetime(2026, 3, 9, 8, tzinfo=sydney) + timedelta(days=d) for d in range(28)]
    arrivals = arrivals_of(
        [
            (day + timedelta(minutes=30 * k)).astimezone(UTC)
            for day in local_days
            if day.weekday() < 5
            for k in range(19)
        ]
    )
    holiday = datetime(2026, 4, 6, tzinfo=sydney).date()  # Easter Monday
    at = datetime(2026, 4, 6, 9, 45, tzinfo=sydney)  # before 10:00 local = 00:00 UTC
    settings = settings_for(heartbeat_expected_arrivals=3)  # 08:00-09:30 brings four
    assert assess(arrivals, at, settings).rule == "weekly"
    assert assess(arrivals, at, settings, ClinicCalendar(frozenset({holiday}), sydney)).rule is None
    # The same date read as a UTC day begins at 10:00 local: the morning is not closed.
    assert assess(arrivals, at, settings, ClinicCalendar(frozenset({holiday}))).rule == "weekly"


def test_check_heartbeats_uses_the_sites_calendar(world: Fixture) -> None:
    times = clinic(4)
    insert_records(world.engine, world.deployment_a, times)
    monday_noon = (times[-1] + timedelta(days=3)).replace(hour=12, minute=30)
    with Session(world.engine) as s:
        site = s.get(Deployment, world.deployment_a).site_id  # type: ignore[union-attr]
    other_site_closed = settings_for(site_closed_days={"elsewhere": [monday_noon.date()]})
    this_site_closed = settings_for(site_closed_days={site: [monday_noon.date()]})
    assert check_heartbeats(world.engine, this_site_closed, now=monday_noon) == []
    [alert_id] = check_heartbeats(world.engine, other_site_closed, now=monday_noon)
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.evidence["closed_s"] == 0.0


def test_calendar_settings_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASE4_CLOSED_DAYS", '["2026-12-25", "2026-12-26"]')
    monkeypatch.setenv("PHASE4_SITE_TIMEZONES", '{"site-b": "Europe/Paris"}')
    s = NotifySettings()
    assert s.calendar_for("site-a").closed == {date(2026, 12, 25), date(2026, 12, 26)}
    assert str(s.calendar_for("site-b").zone) == "Europe/Paris"
    assert str(s.calendar_for("site-a").zone) == "UTC"
    with pytest.raises(ValidationError, match="clinic_timezone: 'Europe/Berlinn' is not an IANA"):
        NotifySettings(clinic_timezone="Europe/Berlinn")
    with pytest.raises(ValidationError, match=r"site_timezones\['site-b'\]"):
        NotifySettings(site_timezones={"site-b": "CET+1"})
    with pytest.raises(ValidationError, match="closed_days"):
        NotifySettings(closed_days=["2026-12-32"])


def test_a_holiday_in_a_past_week_does_not_lower_what_a_monday_should_bring() -> None:
    """The probe dies on Monday morning; the Monday three weeks before was a holiday. That week
    brought nothing at those hours because the clinic was closed, not because Mondays are
    quiet: it is left out of the average and the alarm comes as on any Monday."""
    arrivals = arrivals_of(clinic(5))
    past_holiday = (T0 + timedelta(days=14)).date()  # Monday of week 3
    assert past_holiday.weekday() == 0
    arrivals = [t for t in arrivals if t.date() != past_holiday]
    monday = (arrivals[-1] + timedelta(days=3)).replace(hour=0, minute=0)
    settings = settings_for()
    calendar = ClinicCalendar(frozenset({past_holiday}))
    at = monday + timedelta(hours=11, minutes=30)  # 08:00-11:30 brings eight batches
    without = assess(arrivals, at, settings)  # the holiday week counts as a quiet Monday
    verdict = assess(arrivals, at, settings, calendar)
    assert (without.rule, without.weeks_compared, without.expected_arrivals) == (None, 4, 6.0)
    assert verdict.rule == "weekly"
    assert (verdict.weeks_compared, verdict.expected_arrivals) == (3, 8.0)


def test_a_closed_day_on_which_the_clocks_change_lasts_23_or_25_hours() -> None:
    berlin = ClinicCalendar(frozenset({date(2027, 3, 28)}), ZoneInfo("Europe/Berlin"))
    sydney = ClinicCalendar(frozenset({date(2026, 4, 5)}), ZoneInfo("Australia/Sydney"))
    wide = (datetime(2027, 3, 20, tzinfo=UTC), datetime(2027, 4, 5, tzinfo=UTC))
    assert closed_seconds(*wide, berlin) == 23 * 3600  # clocks forward: 02:00 is 03:00
    wide = (datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 4, 10, tzinfo=UTC))
    assert closed_seconds(*wide, sydney) == 25 * 3600  # Easter Sunday, clocks back an hour
    # Local ends are read as the instants they are.
    local = ZoneInfo("Europe/Berlin")
    start = datetime(2027, 3, 28, 1, tzinfo=local)  # 00:00 UTC
    end = datetime(2027, 3, 28, 4, tzinfo=local)  # 02:00 UTC
    assert closed_seconds(start, end, berlin) == 2 * 3600


def test_the_resumed_silence_says_how_much_of_it_was_closed(world: Fixture) -> None:
    times = clinic(4)
    insert_records(world.engine, world.deployment_a, times)
    monday = (times[-1] + timedelta(days=3)).replace(hour=0, minute=0)
    settings = settings_for()
    [alert_id] = check_heartbeats(world.engine, settings, now=monday + timedelta(hours=12))
    # The site then learns Monday was a holiday; records resume on Tuesday morning.
    with Session(world.engine) as s:
        site = s.get(Deployment, world.deployment_a).site_id  # type: ignore[union-attr]
    closed = settings_for(site_closed_days={site: [monday.date()]})
    resumed = monday + timedelta(days=1, hours=8)
    insert_records(world.engine, world.deployment_a, [resumed])
    check_heartbeats(world.engine, closed, now=resumed + timedelta(minutes=5))
    with Session(world.engine) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.status == "resolved"
        assert alert.evidence["silence_s"] == (resumed - times[-1]).total_seconds()
        assert alert.evidence["closed_s"] == 24 * 3600


def test_a_site_calendar_for_an_unknown_site_is_named_in_the_log(
    world: Fixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeat, "_warned_sites", set())  # said once per process
    insert_records(world.engine, world.deployment_a, clinic(1))
    settings = settings_for(
        site_closed_days={"site-TYPO": [date(2026, 12, 25)]}, site_timezones={"nowhere": "UTC"}
    )
    with caplog.at_level("WARNING", logger="phase4.heartbeat"):
        check_heartbeats(world.engine, settings, now=T0 + timedelta(days=5))
    said = caplog.text
    assert "PHASE4_SITE_CLOSED_DAYS names site 'site-TYPO'" in said
    assert "PHASE4_SITE_TIMEZONES names site 'nowhere'" in said
    caplog.clear()
    with caplog.at_level("WARNING", logger="phase4.heartbeat"):
        check_heartbeats(world.engine, settings, now=T0 + timedelta(days=5))
    assert caplog.text == ""


def test_a_weekday_closed_every_week_still_leaves_the_weekly_rule_its_weeks() -> None:
    """A clinic closed every Wednesday: the probe dies on Tuesday evening and is judged on
    Thursday morning. Past Wednesdays were closed exactly as this one is, so those weeks still
    say what Thursday mornings bring (they are left out only for a one-off closure)."""
    wednesdays = {(T0 + timedelta(days=2 + 7 * w)).date() for w in range(8)}
    dies = T0 + timedelta(days=29, hours=9)  # Tuesday 17:00 of week 5
    arrivals = arrivals_of([t for t in clinic(5) if t.date() not in wednesdays and t <= dies])
    at = dies + timedelta(days=1, hours=18, minutes=30)  # Thursday 11:30
    assert (arrivals[-1], at.weekday()) == (dies, 3)
    calendar = ClinicCalendar(frozenset(wednesdays))
    verdict = assess(arrivals, at, settings_for(), calendar)
    assert verdict.closed_s == 24 * 3600
    assert verdict.rule == "weekly"
    assert verdict.weeks_compared >= 3 and verdict.expected_arrivals == 8.0
    # A one-off closure in a past week is still left out: close the Thursday two weeks ago too.
    thursday = (at - 2 * WEEK).date()
    one_off = ClinicCalendar(frozenset(wednesdays | {thursday}))
    fewer = assess([t for t in arrivals if t.date() != thursday], at, settings_for(), one_off)
    assert fewer.weeks_compared == verdict.weeks_compared - 1
    assert fewer.expected_arrivals == 8.0
