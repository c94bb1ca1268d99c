"""An alert's headline: one sentence, in the words a medical physicist would write.

"Liver SUVmean at University Hospital A fell 7.4% (95% CI 4.3 to 10.5%) from about 14 Aug
(detected 18 Aug 2026, 4 days later); linked to: injected activity +8.0% from 14 Aug; cylinder
recovery ratio outside tolerance from the same day."

What the sentence holds, in order: the quantity (``phase4.monitor.core.quantities``) and where
(the site, or the scanner and its site); the size of the change in the quantity's unit or as a
percentage of the reference, with its 95% confidence interval (the interval is stated in the
direction of the verb: "fell 7.4% (95% CI 4.3 to 10.5%)"); when the change began (estimated:
"about"), when it was detected and the delay, all dates of the world (the studies' acquisition,
the phantom's scan), never the time phase4 processed them; and the alerts it is linked to, each
with its own size and date. A date after the present is never shown as a date: it is said to lie
in the future (a clock or a client is wrong).

Everything here is pure formatting of what it is given: the size of the change comes from the
evidence (``evidence["change"]``, computed by ``phase4.monitor.surveillance.change_size``), the
names from the caller. ``phase4.monitor.surveillance.headline`` gathers them from the store and
writes the sentence into the alert's evidence (``evidence["headline"]``), which every surface
(alert page, email, webhook, API, export) shows as it is.

>>> from datetime import UTC, datetime
>>> from phase4.monitor.core.quantities import quantity_of
>>> change = {"stated": "pct", "size": -7.41, "ci95": [-10.46, -4.34], "kind": "numeric"}
>>> began = datetime(2026, 8, 14, 15, 25, tzinfo=UTC)
>>> detected = datetime(2026, 8, 18, 9, 11, tzinfo=UTC)
>>> link = Linked("cylinder recovery ratio outside tolerance", datetime(2026, 8, 17, tzinfo=UTC))
>>> print(change_sentence(quantity_of("features.liver_suvmean"), "at site A", change, "down",
...       began, detected, now=datetime(2026, 12, 1, tzinfo=UTC), linked=[link]))
... # doctest: +NORMALIZE_WHITESPACE
Liver SUVmean at site A fell 7.4% (95% CI 4.3 to 10.5%) from about 14 Aug (detected 18 Aug
2026, 4 days later); linked to: cylinder recovery ratio outside tolerance from 17 Aug.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from phase4.monitor.core.quantities import Quantity

# At most this many linked alerts are named in a headline; the rest are counted.
LINKED_SHOWN = 3
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
FUTURE = "a date in the future (a clock is wrong)"


def clean(value: Any, limit: int = 80) -> str:
    """One line of text: control characters (newlines too) replaced, length bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_utc(value: Any) -> datetime | None:
    """An evidence time (ISO text or datetime; naive is UTC) as an aware datetime, or None."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day(when: datetime, *, year: bool = True) -> str:
    """'14 Aug 2026' (or '14 Aug'), in UTC.

    >>> day(datetime(2026, 8, 4, 23, 0, tzinfo=UTC))
    '4 Aug 2026'
    """
    when = when.astimezone(UTC)
    text = f"{when.day} {when.strftime('%b')}"
    return f"{text} {when.year}" if year else text


def day_or_future(when: datetime | None, now: datetime, *, year: bool = True) -> str | None:
    """``day(when)``, or the words for a time after ``now`` (never shown as a date)."""
    if when is None:
        return None
    return FUTURE if when > now else day(when, year=year)


def delay_days(began: datetime | None, detected: datetime | None) -> float | None:
    """Days from the change's start to its detection (world times), to 0.1 day."""
    if began is None or detected is None:
        return None
    return round(max(0.0, (detected - began).total_seconds()) / 86400, 1)


def duration_words(seconds: float) -> str:
    """'45 s', '12 min', '2.0 h', '2.8 days'.

    >>> duration_words(7200), duration_words(3 * 86400 - 17280)
    ('2.0 h', '2.8 days')
    """
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _delay_words(began: datetime, detected: datetime) -> str:
    days = (detected.astimezone(UTC).date() - began.astimezone(UTC).date()).days
    if days <= 0:
        return "the same day"
    return "1 day later" if days == 1 else f"{days} days later"


def when_words(began: datetime | None, detected: datetime | None, now: datetime) -> str:
    """'from about 14 Aug (detected 18 Aug 2026, 4 days later)'.

    >>> now = datetime(2026, 12, 1, tzinfo=UTC)
    >>> when_words(datetime(2025, 12, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), now)
    'from about 30 Dec 2025 (detected 2 Jan 2026, 3 days later)'
    >>> when_words(None, datetime(2027, 1, 2, tzinfo=UTC), now)
    '(detected on a date in the future (a clock is wrong))'
    """
    if detected is not None and detected > now:
        began_text = day_or_future(began, now)
        start = f"from about {began_text} " if began_text else ""
        return f"{start}(detected on {FUTURE})"
    if began is None or began > now:
        return f"(detected {day(detected)})" if detected is not None else ""
    if detected is None:
        return f"from about {day(began)}"
    same_year = began.astimezone(UTC).year == detected.astimezone(UTC).year
    return (
        f"from about {day(began, year=not same_year)} "
        f"(detected {day(detected)}, {_delay_words(began, detected)})"
    )


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _decimals(half_width: float | None, value: float) -> int:
    """Decimals that show a number to about two significant digits of its uncertainty."""
    scale = half_width if half_width and half_width > 0 else abs(value)
    if not scale:
        return 2
    return max(0, min(6, 1 - math.floor(math.log10(scale))))


def _fmt(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text.replace("-", "−")


def _interval(change: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = change.get("ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        low, high = _num(ci[0]), _num(ci[1])
        if low is not None and high is not None:
            return low, high
    return None


def size_words(quantity: Quantity, change: Mapping[str, Any], direction: str | None) -> str:
    """'fell 7.4% (95% CI 4.3 to 10.5%)', 'rose 12 s (95% CI 8 to 16 s)',
    'rose from 44.0% to 61.2% (+17.2 points, 95% CI 10.1 to 24.0)'; '' when the change has
    no size."""
    size = _num(change.get("size"))
    stated = change.get("stated")
    if size is None or stated not in ("pct", "delta", "points"):
        return ""
    ci = _interval(change)
    if stated == "points":
        before, after = _num(change.get("before")), _num(change.get("after"))
        verb = "rose" if size > 0 else "fell" if size < 0 else "did not change"
        ci_text = f", 95% CI {_fmt(ci[0], 1)} to {_fmt(ci[1], 1)}" if ci else ""
        sign = "+" if size > 0 else ""
        if before is None or after is None:
            return f"{verb} {sign}{_fmt(size, 1)} points{ci_text}"
        return (
            f"{verb} from {_fmt(100 * before, 1)}% to {_fmt(100 * after, 1)}% "
            f"({sign}{_fmt(size, 1)} points{ci_text})"
        )
    if size == 0:
        verb, sign = "did not change", 1.0
    elif size < 0:
        verb, sign = "fell", -1.0
    else:
        verb, sign = "rose", 1.0
    if stated == "pct":
        unit, decimals = "%", 1
    else:
        half = (ci[1] - ci[0]) / 2 if ci else None
        decimals = _decimals(half, size)
        unit = (
            " percentage points"
            if quantity.unit == "%"
            else f" {quantity.unit}"
            if quantity.unit
            else ""
        )
    shown = f"{_fmt(sign * size, decimals)}{unit}"
    if ci is None:
        return f"{verb} {shown} (no confidence interval: too few values)"
    low, high = sorted((sign * ci[0], sign * ci[1]))
    ci_unit = "%" if stated == "pct" else ("" if quantity.unit == "%" else unit)
    return f"{verb} {shown} (95% CI {_fmt(low, decimals)} to {_fmt(high, decimals)}{ci_unit})"


def short_size(change: Mapping[str, Any] | None) -> str:
    """The size alone, signed, for a linked alert: '+8.0%', '−0.16 SUV', '+17.2 points'."""
    if not change:
        return ""
    size = _num(change.get("size"))
    stated = change.get("stated")
    if size is None:
        return ""
    sign = "+" if size > 0 else ""
    if stated == "pct":
        return f"{sign}{_fmt(size, 1)}%"
    if stated == "points":
        return f"{sign}{_fmt(size, 1)} points"
    if stated == "delta":
        ci = _interval(change)
        unit = change.get("unit") or ""
        decimals = _decimals((ci[1] - ci[0]) / 2 if ci else None, size)
        return f"{sign}{_fmt(size, decimals)}{' ' + unit if unit else ''}"
    return ""


def size_text(change: Mapping[str, Any] | None) -> str:
    """The size with its interval, signed, for a table: '−7.8% (95% CI −8.6 to −6.9%)',
    '+17.4 points (95% CI 12.5 to 22.1)'; '' without a size.

    >>> size_text({"stated": "pct", "size": -7.75, "ci95": [-8.62, -6.87]})
    '−7.8% (95% CI −8.6 to −6.9%)'
    """
    shown = short_size(change)
    if not shown or change is None:
        return ""
    ci = _interval(change)
    if ci is None:
        return shown
    stated = change.get("stated")
    if stated in ("pct", "points"):
        decimals, unit = 1, "%" if stated == "pct" else ""
    else:
        decimals = _decimals((ci[1] - ci[0]) / 2, float(change.get("size") or 0))
        unit = f" {change['unit']}" if change.get("unit") else ""
    return f"{shown} (95% CI {_fmt(ci[0], decimals)} to {_fmt(ci[1], decimals)}{unit})"


@dataclass(frozen=True, slots=True)
class Linked:
    """A linked alert in words ('injected activity +8.0%') and when its change began."""

    phrase: str
    began: datetime | None


def linked_words(linked: Sequence[Linked], began: datetime | None, now: datetime) -> str:
    """'linked to: injected activity +8.0% from 14 Aug; ...' ('' with none), each dated
    against this alert's own start ('from the same day')."""
    if not linked:
        return ""
    items = []
    for item in sorted(linked, key=lambda i: (i.began is None, i.began or now))[:LINKED_SHOWN]:
        when = item.began
        if when is None:
            items.append(item.phrase)
        elif when > now:
            items.append(f"{item.phrase} from {FUTURE}")
        elif began is not None and when.date() == began.astimezone(UTC).date():
            items.append(f"{item.phrase} from the same day")
        else:
            same_year = began is not None and began.year == when.year
            items.append(f"{item.phrase} from {day(when, year=not same_year)}")
    more = len(linked) - LINKED_SHOWN
    if more > 0:
        items.append(f"{more} more")
    return "linked to: " + "; ".join(items)


def _sentence(main: str, linked: str) -> str:
    main = main[:1].upper() + main[1:]
    return f"{main}; {linked}." if linked else f"{main}."


def change_sentence(
    quantity: Quantity,
    where: str,
    change: Mapping[str, Any] | None,
    direction: str | None,
    began: datetime | None,
    detected: datetime | None,
    *,
    now: datetime,
    linked: Sequence[Linked] = (),
) -> str:
    """The headline of a drift alert (a numeric, binary or categorical stream)."""
    change = change or {}
    when = when_words(began, detected, now)
    category = change.get("category")
    if change.get("kind") == "categorical" and isinstance(category, str):
        new = " (new)" if change.get("new") else ""
        size = size_words(quantity, change, None)
        main = f"{quantity.label} {where}: share of {clean(category, 60)!r}{new} {size} {when}"
    else:
        size = size_words(quantity, change, direction)
        if not size:
            size = {"up": "rose", "down": "fell"}.get(direction or "", "changed")
            if size == "changed":
                main = f"the distribution of {quantity.label} {where} changed {when}"
                return _sentence(main.strip(), linked_words(linked, began, now))
        main = f"{quantity.label} {where} {size} {when}"
    return _sentence(" ".join(main.split()), linked_words(linked, began, now))


def notice_sentence(
    quantity: Quantity,
    where: str,
    value: Any,
    first_seen: datetime | None,
    *,
    now: datetime,
    linked: Sequence[Linked] = (),
) -> str:
    """A new category: 'New reconstruction at site B: 'Q.Clear', first seen 5 Jun 2026 (never
    among the reference values).'"""
    seen = day_or_future(first_seen, now)
    when = f", first seen {seen}" if seen else ""
    main = (
        f"new {quantity.label} {where}: {clean(value, 60)!r}{when} "
        "(never among the reference values)"
    )
    return _sentence(main, linked_words(linked, first_seen, now))


def _level_text(x: float) -> str:
    """A stated level as it is usually written: '0.90', '1.05', '110'.

    >>> _level_text(0.9), _level_text(1.05), _level_text(110.0)
    ('0.90', '1.05', '110')
    """
    text = f"{x:g}"
    if "e" in text or "." not in text:
        return text
    decimals = len(text.split(".")[1])
    return f"{x:.{max(2, decimals)}f}"


def limit_sentence(
    quantity: Quantity,
    where: str,
    value: float,
    limit: Mapping[str, Any] | None,
    at: datetime | None,
    *,
    now: datetime,
    repeats: int = 0,
    linked: Sequence[Linked] = (),
) -> str:
    """A phantom result beyond a level: 'Cylinder recovery ratio on Biograph Vision 600 (site A)
    0.899, below its action level 0.90, on 1 Sep 2026.'"""
    limit = limit or {}
    level = {"tolerance": "tolerance level", "action": "action level"}.get(
        str(limit.get("level")), "level"
    )
    bound = _num(limit.get("value"))
    side = limit.get("side")
    unit = f" {quantity.unit}" if quantity.unit else ""
    beyond = (
        f", {side} its {level} {_level_text(bound)}{unit}"
        if bound is not None and side in ("below", "above")
        else f", outside its {level}"
    )
    on = day_or_future(at, now)
    when = f", on {on}" if on else ""
    more = f" ({repeats} more result(s) outside it since)" if repeats else ""
    main = f"{quantity.label} {where} {value:.3g}{unit}{beyond}{when}{more}"
    return _sentence(main, linked_words(linked, at, now))


def event_sentence(
    subject: str,
    at: datetime | None,
    detail: str = "",
    *,
    now: datetime,
    linked: Sequence[Linked] = (),
) -> str:
    """Something that happened on a day: '<subject> on 8 Jun 2026: <detail>'."""
    on = day_or_future(at, now)
    main = f"{subject} on {on}" if on else subject
    if detail:
        main += f": {detail}"
    return _sentence(" ".join(main.split()), linked_words(linked, at, now))
