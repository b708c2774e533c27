"""Each reader's period and send time across DST changes: no skipped and no doubled digest."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from newsletter.clock import is_due, period_of

UTC = dt.timezone.utc
# (zone, a day before a DST change in 2026): spring forward and fall back on both sides of the Atlantic.
TRANSITIONS = [
    ("Europe/London", dt.date(2026, 3, 28)),
    ("Europe/London", dt.date(2026, 10, 24)),
    ("America/New_York", dt.date(2026, 3, 7)),
    ("America/New_York", dt.date(2026, 10, 31)),
]


def _first_due_per_period(zone: str, start: dt.date, send_at: dt.time, frequency: str = "daily") -> dict[str, dt.datetime]:
    """Tick every 5 minutes for 4 days, like a cron job, and note when each period first became due."""
    first: dict[str, dt.datetime] = {}
    now = dt.datetime.combine(start, dt.time(0), tzinfo=UTC)
    while now < dt.datetime.combine(start + dt.timedelta(days=4), dt.time(0), tzinfo=UTC):
        period = period_of(now=now, timezone=zone, frequency=frequency)
        if period not in first and is_due(now=now, timezone=zone, frequency=frequency, send_at=send_at):
            first[period] = now
        now += dt.timedelta(minutes=5)
    return first


@pytest.mark.parametrize(("zone", "start"), TRANSITIONS)
@pytest.mark.parametrize("send_at", [dt.time(7, 0), dt.time(1, 30), dt.time(2, 30)])
def test_one_digest_per_local_day_across_dst(zone: str, start: dt.date, send_at: dt.time) -> None:
    first = _first_due_per_period(zone, start, send_at)
    local_days = [(start + dt.timedelta(days=n)).isoformat() for n in range(1, 4)]
    for day in local_days:  # every full local day in the window is due exactly once (a dict key)
        assert day in first
        local = first[day].astimezone(ZoneInfo(zone))
        assert local.date().isoformat() == day
        # Due at send_at local time; in a spring-forward gap, within the hour after it.
        wanted = dt.datetime.combine(local.date(), send_at)
        assert dt.timedelta(0) <= local.replace(tzinfo=None) - wanted <= dt.timedelta(hours=1)


def test_weekly_reader_is_due_once_a_week_on_their_day() -> None:
    """From Friday: that week's Monday digest is already due (missed, sent once); next week's on Monday 08:00."""
    first = _first_due_per_period("Asia/Tokyo", dt.date(2026, 11, 20), dt.time(8, 0), frequency="weekly:mon")
    due = {period: moment.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%a %H:%M") for period, moment in first.items()}
    assert due == {"2026-W47": "Fri 09:00", "2026-W48": "Mon 08:00"}


def test_autumn_repeated_hour_does_not_double_a_digest() -> None:
    """01:30 happens twice in London on 2026-10-25; the digest is due at the first and not again."""
    first = _first_due_per_period("Europe/London", dt.date(2026, 10, 24), dt.time(1, 30))
    assert first["2026-10-25"] == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST


def test_a_clock_in_the_readers_own_zone_is_due_at_the_same_instant_as_utc() -> None:
    """Inside the spring gap a local "now" must not compare by wall time (02:10 BST is 01:10 UTC, before a 01:30 GMT slot)."""
    london = ZoneInfo("Europe/London")
    for utc_minute in range(0, 24 * 60, 10):
        now_utc = dt.datetime(2026, 3, 29, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=utc_minute)
        kwargs = {"timezone": "Europe/London", "frequency": "daily", "send_at": dt.time(1, 30)}
        assert is_due(now=now_utc.astimezone(london), **kwargs) == is_due(now=now_utc, **kwargs), now_utc
