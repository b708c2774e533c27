"""Time helpers shared by config, subscribers and the pipeline: HH:MM, zones, periods.

A subscriber's *period* is the unit they get one digest for: their local
calendar day ("2026-11-26") or, for weekly readers, their local ISO week
("2026-W48"). The once-per-period rule is keyed on it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hhmm(value: Any) -> dt.time | None:
    """"07:30" -> time(7, 30); anything else -> None."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    return dt.time(int(match.group(1)), int(match.group(2))) if match else None


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return False
    return True


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def period_of(*, now: dt.datetime, timezone: str, frequency: str) -> str:
    """The reader's current period: local date for daily, local ISO week for weekly."""
    local = now.astimezone(ZoneInfo(timezone))
    if frequency == "daily":
        return local.date().isoformat()
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def slot_of(*, now: dt.datetime, timezone: str, frequency: str, send_at: dt.time) -> dt.datetime:
    """When this period's digest is due, as an aware local datetime.

    zoneinfo resolves a send_at that falls in a DST gap forward (fold=0 uses
    the offset before the change), so a 02:30 slot on a spring-forward day
    still exists and is due once.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    day = local.date()
    if frequency != "daily":
        day = day - dt.timedelta(days=day.weekday()) + dt.timedelta(days=WEEKDAYS.index(frequency[7:]))
    return dt.datetime.combine(day, send_at, tzinfo=zone)


def is_due(*, now: dt.datetime, timezone: str, frequency: str, send_at: dt.time) -> bool:
    # Compared in UTC: two datetimes in the same zone compare by wall time, which is wrong inside a DST gap.
    slot = slot_of(now=now, timezone=timezone, frequency=frequency, send_at=send_at)
    return now.astimezone(dt.timezone.utc) >= slot.astimezone(dt.timezone.utc)


def next_slot(*, now: dt.datetime, timezone: str, frequency: str, send_at: dt.time, sent_this_period: bool) -> dt.datetime:
    """When the reader's next digest goes out: this period's slot unless it was sent, else the next period's.

    A slot already past but not sent means "due now" (the scheduler sends it at once): ``now`` is returned.
    """
    slot = slot_of(now=now, timezone=timezone, frequency=frequency, send_at=send_at)
    if not sent_this_period:
        return max(slot, now)
    step = dt.timedelta(days=1 if frequency == "daily" else 7)
    later = (slot.replace(tzinfo=None) + step).replace(tzinfo=slot.tzinfo)  # wall-clock step: DST keeps 07:30 at 07:30
    return slot_of(now=later, timezone=timezone, frequency=frequency, send_at=send_at)
