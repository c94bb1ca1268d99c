"""Reporting clocks against dates computed by hand (calendar for 2024-12 to 2025-04:
2025-03-03 is a Monday, 2025-03-07 a Friday, 2024-12-27 a Friday)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from phase4.alerts.export.clocks import (
    EU_AI_ACT,
    EU_MDR,
    FDA_803,
    ClockError,
    add_work_days,
    clock,
    deadline,
    incident_clocks,
    unknown_regimes,
)

MON = date(2025, 3, 3)


def _due(regime: str, seriousness: str, aware: date = MON, remedial: bool = False) -> date:
    return clock(
        regime,
        seriousness=seriousness,
        remedial_action_needed=remedial,
        aware_at=aware,
        reported=None,
        as_of=aware,
    ).due


@pytest.mark.parametrize(
    ("seriousness", "due"),
    [
        ("serious_harm", date(2025, 3, 18)),  # 15 days
        ("malfunction", date(2025, 3, 18)),
        ("death", date(2025, 3, 13)),  # 10 days
        ("widespread", date(2025, 3, 5)),  # 2 days
        ("critical_infrastructure", date(2025, 3, 5)),
    ],
)
def test_eu_ai_act_art73(seriousness: str, due: date) -> None:
    assert _due(EU_AI_ACT, seriousness) == due


@pytest.mark.parametrize(
    ("seriousness", "due"),
    [
        ("malfunction", date(2025, 3, 18)),  # 15 days
        ("critical_infrastructure", date(2025, 3, 18)),  # not an MDR category: 15 days
        ("death", date(2025, 3, 13)),  # 10 days
        ("serious_harm", date(2025, 3, 13)),  # unanticipated serious deterioration: 10 days
        ("widespread", date(2025, 3, 5)),  # serious public health threat: 2 days
    ],
)
def test_eu_mdr_art87(seriousness: str, due: date) -> None:
    assert _due(EU_MDR, seriousness) == due


def test_fda_803_thirty_calendar_days_across_months_and_years() -> None:
    assert _due(FDA_803, "serious_harm") == date(2025, 4, 2)
    assert _due(FDA_803, "malfunction", aware=date(2024, 12, 27)) == date(2025, 1, 26)
    # remedial action does not change the EU clocks
    assert _due(EU_AI_ACT, "malfunction", remedial=True) == date(2025, 3, 18)


@pytest.mark.parametrize(
    ("aware", "due"),
    [
        (date(2025, 3, 3), date(2025, 3, 10)),  # Mon -> next Mon
        (date(2025, 3, 6), date(2025, 3, 13)),  # Thu: Fri, Mon, Tue, Wed, Thu
        (date(2025, 3, 7), date(2025, 3, 14)),  # Fri: the weekend does not count
        (date(2025, 3, 8), date(2025, 3, 14)),  # Sat: Mon..Fri
        (date(2025, 3, 9), date(2025, 3, 14)),  # Sun: Mon..Fri
        (date(2024, 12, 27), date(2025, 1, 3)),  # Fri over New Year (holidays not modelled)
    ],
)
def test_fda_803_five_work_days_when_remedial_action_is_needed(aware: date, due: date) -> None:
    assert _due(FDA_803, "serious_harm", aware=aware, remedial=True) == due
    assert deadline(FDA_803, "serious_harm", True).kind == "work"


def test_add_work_days_zero_and_negative() -> None:
    assert add_work_days(date(2025, 3, 8), 0) == date(2025, 3, 8)
    with pytest.raises(ClockError):
        add_work_days(MON, -1)


def test_statuses_on_the_boundaries() -> None:
    def at(reported: date | None, as_of: date) -> tuple[str, int | None, int | None]:
        c = clock(
            EU_AI_ACT,
            seriousness="death",
            remedial_action_needed=False,
            aware_at=MON,
            reported=reported,
            as_of=as_of,
        )
        return c.status, c.days_left, c.days_overdue

    due = date(2025, 3, 13)
    assert at(due, due + timedelta(days=30)) == ("reported_on_time", None, None)
    assert at(due + timedelta(days=1), due) == ("reported_late", None, 1)
    assert at(None, MON) == ("open", 10, None)
    assert at(None, due) == ("open", 0, None)
    assert at(None, due + timedelta(days=2)) == ("overdue", None, 2)
    c = clock(
        EU_AI_ACT,
        seriousness="death",
        remedial_action_needed=False,
        aware_at=MON,
        reported=None,
        as_of=due + timedelta(days=2),
    )
    assert c.summary == "overdue by 2 days"
    assert c.to_dict()["due"] == "2025-03-13"


def test_awareness_is_the_utc_date_and_reports_may_be_datetimes() -> None:
    # 01:00 on 4 March in UTC+2 is 23:00 on 3 March UTC
    aware = datetime(2025, 3, 4, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    c = clock(
        EU_AI_ACT,
        seriousness="serious_harm",
        remedial_action_needed=False,
        aware_at=aware,
        reported="2025-03-18T22:00:00+00:00",
        as_of=date(2025, 4, 1),
    )
    assert (c.aware_on, c.due, c.status) == (MON, date(2025, 3, 18), "reported_on_time")
    with pytest.raises(ClockError, match="time zone"):
        clock(
            EU_AI_ACT,
            seriousness="death",
            remedial_action_needed=False,
            aware_at=datetime(2025, 3, 3),
            reported=None,
            as_of=MON,
        )


def test_incident_clocks_and_bad_data_are_named() -> None:
    clocks = incident_clocks(
        seriousness="death",
        remedial_action_needed=True,
        aware_at=datetime(2025, 3, 7, 9, tzinfo=UTC),
        reports={EU_MDR: "2025-03-10", "fda": "2025-03-10"},
        as_of=date(2025, 3, 12),
    )
    assert [(c.regime, c.due.isoformat(), c.status) for c in clocks] == [
        (EU_AI_ACT, "2025-03-17", "open"),
        (EU_MDR, "2025-03-17", "reported_on_time"),
        (FDA_803, "2025-03-14", "open"),
    ]
    assert unknown_regimes({EU_MDR: "x", "fda": "y"}) == ["fda"]
    with pytest.raises(ClockError, match="unknown seriousness 'bad'"):
        deadline(EU_AI_ACT, "bad")
    with pytest.raises(ClockError, match="unknown regime"):
        deadline("hipaa", "death")
    with pytest.raises(ClockError, match="not an ISO date"):
        clock(
            EU_MDR,
            seriousness="death",
            remedial_action_needed=False,
            aware_at=MON,
            reported="last Tuesday",
            as_of=MON,
        )
