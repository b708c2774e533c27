"""`newsletter run`: triggers across DST, simulated scheduler days on a real deployment, and the real process.

The simulated days call the scheduler's job methods in the order a scheduler would (each reader's
CronTrigger fire, the catch-up ticks, a restart) with the pipeline's clock fixed at each instant, so they
never sleep. Only the last test runs the real `newsletter run` process.
"""

from __future__ import annotations

import datetime as dt
import email
import mailbox
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from conftest import EXAMPLES, NOON, Deployment, fixed_clock

from newsletter.models import RunReport, Subscriber
from newsletter.schedule import (
    DIGEST_PREFIX,
    Intervals,
    Jobs,
    build_scheduler,
    digest_trigger,
    sync_jobs,
)
from newsletter.store import Store

UTC = dt.timezone.utc
LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def reader(subscriber_id: str, *, zone: str, send_at: str, frequency: str = "daily") -> str:
    """A subscriber file whose topics match the example feeds (quiet days send a note, so every day has a message)."""
    return f"""
email = "{subscriber_id}@example.org"
name = "{subscriber_id.title()}"
timezone = "{zone}"
send_at = "{send_at}"
frequency = "{frequency}"

[[topics]]
name = "LLM agents"
keywords = ["agent", "multi-agent", "tool use"]
"""


def subscriber(zone: str, send_at: str, frequency: str = "daily") -> Subscriber:
    hour, minute = map(int, send_at.split(":"))
    return Subscriber(id="r", email="r@example.org", name="R", timezone=zone, send_at=dt.time(hour, minute), frequency=frequency)


def fires(trigger_of: Subscriber, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every fire in [start, end) as the scheduler chains them: each computed from the previous one."""
    trigger, found, previous, now = digest_trigger(trigger_of), [], None, start
    while (fire := trigger.get_next_fire_time(previous, now)) < end:
        found.append(fire.astimezone(UTC))
        previous = now = fire
    return found


# --- the triggers ------------------------------------------------------------------------------

LONDON_SPRING, NY_SPRING, LONDON_AUTUMN, NY_AUTUMN = "2026-03-28", "2026-03-07", "2026-10-24", "2026-10-31"  # the day before
DST_FIRES = [  # (zone, send_at, local day before the change, UTC fire instants over three local days)
    pytest.param("Europe/London", "07:30", LONDON_SPRING, ["2026-03-28 07:30", "2026-03-29 06:30", "2026-03-30 06:30"], id="london-spring"),
    pytest.param("Europe/London", "01:30", LONDON_SPRING, ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"], id="london-gap"),
    pytest.param("America/New_York", "06:45", NY_SPRING, ["2026-03-07 11:45", "2026-03-08 10:45", "2026-03-09 10:45"], id="ny-spring"),
    pytest.param("America/New_York", "02:30", NY_SPRING, ["2026-03-07 07:30", "2026-03-08 07:30", "2026-03-09 06:30"], id="ny-gap"),
    pytest.param("Europe/London", "07:30", LONDON_AUTUMN, ["2026-10-24 06:30", "2026-10-25 07:30", "2026-10-26 07:30"], id="london-autumn"),
    pytest.param("America/New_York", "06:45", NY_AUTUMN, ["2026-10-31 10:45", "2026-11-01 11:45", "2026-11-02 11:45"], id="ny-autumn"),
    # APScheduler 3 fires a send_at inside the repeated hour twice (01:30 summer time, then 01:30 winter time);
    # the store's once-per-period rule makes the second fire send nothing (see the simulated days below).
    pytest.param("Europe/London", "01:30", LONDON_AUTUMN,
                 ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-25 01:30", "2026-10-26 01:30"], id="london-overlap"),
    pytest.param("America/New_York", "01:30", NY_AUTUMN,
                 ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-01 06:30", "2026-11-02 06:30"], id="ny-overlap"),
]


@pytest.mark.parametrize(("zone", "send_at", "day_before", "expected"), DST_FIRES)
def test_trigger_fires_at_local_send_at_across_dst(zone: str, send_at: str, day_before: str, expected: list[str]) -> None:
    start = dt.datetime.fromisoformat(day_before).replace(tzinfo=ZoneInfo(zone))
    assert fires(subscriber(zone, send_at), start, start + dt.timedelta(days=3)) == [utc(text) for text in expected]
    # A send_at in the spring gap fires at the instant the pipeline calls due: the wall time read with the
    # offset before the change (01:30 GMT = 02:30 BST), so the trigger and the catch-up agree on when.


def test_weekly_trigger_fires_on_the_readers_weekday_in_their_zone() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=LONDON)
    sunday_gap = fires(subscriber("Europe/London", "01:30", "weekly:sun"), start, start + dt.timedelta(days=36))
    assert sunday_gap == [utc("2026-03-01 01:30"), utc("2026-03-08 01:30"), utc("2026-03-15 01:30"), utc("2026-03-22 01:30"),
                          utc("2026-03-29 01:30"), utc("2026-04-05 00:30")]
    monday_ny = fires(subscriber("America/New_York", "06:45", "weekly:mon"), start, start + dt.timedelta(days=14))
    assert [fire.astimezone(NEW_YORK).strftime("%a %H:%M") for fire in monday_ny] == ["Mon 06:45", "Mon 06:45"]


def test_trigger_computed_inside_the_spring_gap_skips_that_day() -> None:
    """APScheduler 3: a job added or rescheduled at 02:10 BST misses today's 01:30 slot (due at 02:30 BST).

    Pinned here because the catch-up job exists for it (next test): if an upgrade changes it, look again.
    """
    trigger = digest_trigger(subscriber("Europe/London", "01:30"))
    inside = dt.datetime(2026, 3, 29, 2, 10, tzinfo=LONDON)
    assert trigger.get_next_fire_time(None, inside).astimezone(UTC) == utc("2026-03-30 00:30")
    before = dt.datetime(2026, 3, 29, 0, 50, tzinfo=LONDON)
    # astimezone first: a wall time inside a gap never compares equal to another zone's datetime (PEP 495)
    assert trigger.get_next_fire_time(None, before).astimezone(UTC) == utc("2026-03-29 01:30")


# --- a simulated scheduler on a real deployment -------------------------------------------------------


class Day:
    """Runs the scheduler's jobs at the instants a scheduler would, the pipeline's clock fixed at each."""

    def __init__(self, deployment: Deployment) -> None:
        deployment.add_feed("daily", EXAMPLES / "daily-papers.xml")
        deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
        deployment.extra += '\n[delivery]\nquiet_days = "note"\n'
        self.deployment = deployment
        self.reports: list[tuple[dt.datetime, str, RunReport]] = []
        self.jobs = Jobs(deployment.config_path, clock=fixed_clock(NOON), stop=threading.Event(), on_report=self._record)

    def _record(self, kind: str, report: RunReport) -> None:
        self.reports.append((self.jobs.clock(), kind, report))

    def at(self, moment: dt.datetime, job: Callable[[], None]) -> None:
        self.jobs.clock = fixed_clock(moment.astimezone(UTC))  # like utc_now(), the production clock
        job()

    def run(self, start: dt.datetime, end: dt.datetime, *, catch_up_every: dt.timedelta) -> None:
        """[start, end): every reader's trigger fires and the catch-up ticks, in time order."""
        readers = self.jobs.reload() or ()
        events = [(fire, 0, reader.id) for reader in readers for fire in fires(reader, start, end)]
        tick = start.astimezone(UTC) + catch_up_every  # UTC: elapsed time, not wall-clock steps across a DST change
        while tick < end:
            events.append((tick, 1, ""))
            tick += catch_up_every
        for moment, kind, subscriber_id in sorted(events):
            self.at(moment, (lambda sid=subscriber_id: self.jobs.digest(sid)) if kind == 0 else self.jobs.catch_up)

    def sent(self) -> dict[str, list[dt.datetime]]:
        """Recipient -> the Date of each message in the Maildir (the pipeline's clock when it was built), sorted."""
        found: dict[str, list[dt.datetime]] = {}
        maildir = self.deployment.config().maildir
        if not maildir.exists():
            return found
        box = mailbox.Maildir(maildir, create=False)
        for key in box.iterkeys():
            message = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
            found.setdefault(str(message["To"].addresses[0].username), []).append(parsedate_to_datetime(str(message["Date"])))
        return {who: sorted(dates) for who, dates in found.items()}

    def statuses(self, kind: str, subscriber_id: str) -> list[tuple[dt.datetime, str]]:
        """(when, status) of each outcome for this reader from this kind of job."""
        return [
            (moment, outcome.status)
            for moment, job_kind, report in self.reports if job_kind == kind
            for outcome in report.digests if outcome.subscriber == subscriber_id
        ]


DST_DAYS = [  # zone, the gap/overlap send_at, the normal send_at, first local day, {reader: expected UTC message dates},
    # and what the night reader's own job did on the day of the change
    pytest.param("Europe/London", "01:30", "07:30", LONDON_SPRING, {
        "night": ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"],
        "morning": ["2026-03-28 07:30", "2026-03-29 06:30", "2026-03-30 06:30"],
        "weekly": ["2026-03-29 01:30"],
    }, ["sent"], id="london-spring"),
    pytest.param("America/New_York", "02:30", "06:45", NY_SPRING, {
        "night": ["2026-03-07 07:30", "2026-03-08 07:30", "2026-03-09 06:30"],
        "morning": ["2026-03-07 11:45", "2026-03-08 10:45", "2026-03-09 10:45"],
        "weekly": ["2026-03-08 07:30"],
    }, ["sent"], id="ny-spring"),
    pytest.param("Europe/London", "01:30", "07:30", LONDON_AUTUMN, {
        "night": ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"],
        "morning": ["2026-10-24 06:30", "2026-10-25 07:30", "2026-10-26 07:30"],
        "weekly": ["2026-10-25 00:30"],
    }, ["sent", "already-sent"], id="london-autumn"),
    pytest.param("America/New_York", "01:30", "06:45", NY_AUTUMN, {
        "night": ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"],
        "morning": ["2026-10-31 10:45", "2026-11-01 11:45", "2026-11-02 11:45"],
        "weekly": ["2026-11-01 05:30"],
    }, ["sent", "already-sent"], id="ny-autumn"),
]


@pytest.mark.parametrize(("zone", "night", "morning", "first_day", "expected", "night_job_on_sunday"), DST_DAYS)
def test_simulated_days_across_dst_send_one_digest_per_reader_per_local_day(
    deployment: Deployment, zone: str, night: str, morning: str, first_day: str, expected: dict[str, list[str]],
    night_job_on_sunday: list[str],
) -> None:
    deployment.add_subscriber("night", reader("night", zone=zone, send_at=night))
    deployment.add_subscriber("morning", reader("morning", zone=zone, send_at=morning))
    deployment.add_subscriber("weekly", reader("weekly", zone=zone, send_at=night, frequency="weekly:sun"))
    day = Day(deployment)
    start = dt.datetime.fromisoformat(first_day).replace(tzinfo=ZoneInfo(zone))
    day.at(start, day.jobs.start)
    # Hourly catch-up ticks instead of every 5 minutes keep the test quick; the triggers fire first anyway.
    day.run(start, start + dt.timedelta(days=2, hours=12), catch_up_every=dt.timedelta(hours=1))

    assert day.sent() == {who: [utc(text) for text in dates] for who, dates in expected.items()}
    sunday = dt.date.fromisoformat(first_day) + dt.timedelta(days=1)
    on_sunday = [status for moment, status in day.statuses("digest", "night") if moment.astimezone(ZoneInfo(zone)).date() == sunday]
    assert on_sunday == night_job_on_sunday  # autumn: the repeated hour fired twice, the second sent nothing


def test_catch_up_sends_a_digest_whose_fire_was_skipped_inside_the_spring_gap(deployment: Deployment) -> None:
    day = Day(deployment)
    day.at(utc("2026-03-28 12:00"), day.jobs.ingest)
    # 02:10 BST on the day of the change: a reader with send_at 01:30 London is added; sync runs the job at once.
    deployment.add_subscriber("night", reader("night", zone="Europe/London", send_at="01:30"))
    added = utc("2026-03-29 01:10")
    (night,) = day.jobs.reload() or ()
    day.at(added, lambda: day.jobs.digest("night"))
    assert day.statuses("digest", "night") == [(added, "not-due")]
    assert digest_trigger(night).get_next_fire_time(added, added).astimezone(UTC) == utc("2026-03-30 00:30")  # skips today

    day.run(added, utc("2026-03-29 03:00"), catch_up_every=Intervals().catch_up * dt.timedelta(seconds=1))
    assert day.sent() == {"night": [utc("2026-03-29 01:30")]}  # the first tick at or after 02:30 BST sent it, once
    day.at(utc("2026-03-30 00:30"), lambda: day.jobs.digest("night"))
    assert day.sent() == {"night": [utc("2026-03-29 01:30"), utc("2026-03-30 00:30")]}


def test_digest_missed_while_down_is_sent_once_at_start(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", reader("ada", zone="Europe/London", send_at="07:30"))
    deployment.add_subscriber("grace", reader("grace", zone="America/New_York", send_at="06:45"))
    day = Day(deployment)
    day.at(utc("2026-11-26 06:00"), day.jobs.start)
    day.run(utc("2026-11-26 06:00"), utc("2026-11-26 07:00"), catch_up_every=dt.timedelta(minutes=5))
    assert day.sent() == {}
    # Down from 07:00 to 15:00 UTC: both readers' send_at passed meanwhile (07:30 London, 06:45 New York).
    restart = utc("2026-11-26 15:00")
    day.at(restart, day.jobs.start)
    assert day.sent() == {"ada": [restart], "grace": [restart]}
    day.run(restart, utc("2026-11-26 18:00"), catch_up_every=dt.timedelta(minutes=30))
    day.at(utc("2026-11-26 18:30"), day.jobs.start)  # restarted again the same day
    assert day.sent() == {"ada": [restart], "grace": [restart]}


def test_digest_missed_until_the_readers_next_day_is_not_sent_late(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", reader("ada", zone="Europe/London", send_at="07:30"))
    day = Day(deployment)
    day.at(utc("2026-11-26 06:00"), day.jobs.start)
    restart = utc("2026-11-27 03:00")  # down over Ada's send_at and her midnight
    day.at(restart, day.jobs.start)
    assert day.sent() == {}
    day.run(restart, utc("2026-11-27 09:00"), catch_up_every=dt.timedelta(minutes=30))
    assert day.sent() == {"ada": [utc("2026-11-27 07:30")]}
    with Store(deployment.config().database, clock=lambda: restart) as store:
        assert store.digest_status("ada", "2026-11-26") is None


def test_deliver_job_sends_what_waits_in_the_outbox(deployment: Deployment) -> None:
    day = Day(deployment)
    config = deployment.config()
    with Store(config.database, clock=lambda: NOON) as store:  # queued by a run that died before sending
        store.queue_digest(
            subscriber="ada", period="2026-11-26", recipient="ada@example.org", subject="s", message_id="<m@x>",
            message=b"To: ada@example.org\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n",
            items=[], considered=0,
        )
    day.at(NOON, day.jobs.deliver)
    day.at(NOON, day.jobs.deliver)
    assert day.sent() == {"ada": [NOON]}
    assert [status for _, status in day.statuses("deliver", "ada")] == ["sent"]


def test_jobs_do_nothing_once_stop_is_set(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", reader("ada", zone="Europe/London", send_at="07:30"))
    day = Day(deployment)
    day.at(NOON, day.jobs.ingest)
    day.jobs.stop.set()
    for job in (day.jobs.start, day.jobs.catch_up, day.jobs.deliver, lambda: day.jobs.digest("ada")):
        day.at(NOON, job)
    assert day.sent() == {}
    assert [kind for _, kind, _ in day.reports] == ["ingest"]


# --- keeping the jobs in step with the files ---------------------------------------------------------


@pytest.fixture
def paused() -> Iterator[BackgroundScheduler]:
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)  # jobs get real next run times, nothing runs
    yield scheduler
    scheduler.shutdown(wait=False)


def test_sync_jobs_adds_reschedules_and_removes_readers(deployment: Deployment, paused: BackgroundScheduler) -> None:
    deployment.add_subscriber("ada", reader("ada", zone="Europe/London", send_at="07:30"))
    grace_file = deployment.add_subscriber("grace", reader("grace", zone="America/New_York", send_at="06:45"))
    jobs = Jobs(deployment.config_path, stop=threading.Event())
    send = jobs.digest

    first = sync_jobs(paused, jobs.reload() or (), send=send)
    assert (first.added, first.changed, first.removed) == (("ada", "grace"), (), ())
    grace = paused.get_job(DIGEST_PREFIX + "grace")
    assert grace.args == ("grace",) and "hour='6', minute='45'" in str(grace.trigger)
    assert grace.trigger.timezone == NEW_YORK and grace.next_run_time.astimezone(NEW_YORK).strftime("%H:%M") == "06:45"

    unchanged = sync_jobs(paused, jobs.reload() or (), send=send, run_now=dt.datetime.now(UTC))
    assert unchanged == type(first)()
    assert paused.get_job(DIGEST_PREFIX + "grace").next_run_time == grace.next_run_time

    grace_file.write_text(reader("grace", zone="Asia/Tokyo", send_at="08:15", frequency="weekly:fri"), encoding="utf-8")
    deployment.add_subscriber("lin", reader("lin", zone="UTC", send_at="09:00"))
    (deployment.root / "subscribers" / "ada.toml").unlink()
    now = dt.datetime.now(UTC).replace(microsecond=0)
    changes = sync_jobs(paused, jobs.reload() or (), send=send, run_now=now)
    assert (changes.added, changes.changed, changes.removed) == (("lin",), ("grace",), ("ada",))
    assert sorted(job.id for job in paused.get_jobs()) == ["digest:grace", "digest:lin"]
    grace = paused.get_job(DIGEST_PREFIX + "grace")
    assert grace.next_run_time == now  # runs once at once (due now if send_at already passed), then on its trigger
    assert grace.trigger.timezone == ZoneInfo("Asia/Tokyo") and "day_of_week='fri', hour='8', minute='15'" in str(grace.trigger)


def test_reload_follows_config_toml_and_reports_each_file_problem_once(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", 'email = "ada@example.org"\n[[topics]]\nname = "agents"\n')  # zone and send_at from config.toml
    day = Day(deployment)
    (ada,) = day.jobs.reload() or ()
    assert (ada.timezone, ada.send_at) == ("UTC", dt.time(7, 0))

    deployment.header += 'timezone = "Asia/Tokyo"\n'
    deployment.config_path  # rewrites config.toml  # noqa: B018
    (ada,) = day.jobs.reload() or ()
    assert ada.timezone == "Asia/Tokyo"

    config_file = deployment.root / "config.toml"
    good = config_file.read_text(encoding="utf-8")
    config_file.write_text(good + "\n[schedule]\ningest_every = 'often'\n", encoding="utf-8")
    assert day.jobs.reload() is None and day.jobs.reload() is None  # keeps the last good config and jobs
    assert day.jobs.config.timezone == "Asia/Tokyo"
    config_file.write_text(good, encoding="utf-8")

    deployment.add_subscriber("bad", 'email = "not an address"\n')
    day.jobs.reload()
    day.jobs.reload()
    day.at(NOON, day.jobs.catch_up)
    problems = [(kind, problem) for _, kind, report in day.reports for problem in report.problems]
    assert [kind for kind, _ in problems] == ["config", "subscribers"]
    assert "ingest_every" in problems[0][1] and "last good config" in problems[0][1]
    assert "bad.toml" in problems[1][1]


def test_build_scheduler_registers_every_job(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", reader("ada", zone="Europe/London", send_at="07:30"))
    deployment.extra += '\n[schedule]\ningest_every = "10m"\n'
    deployment.add_feed("daily", EXAMPLES / "daily-papers.xml")
    scheduler = build_scheduler(deployment.config_path, stop=threading.Event(), intervals=Intervals(sync=2.5))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert sorted(jobs) == ["catch-up", "deliver", "digest:ada", "ingest", "start", "sync"]
    assert jobs["ingest"].trigger.interval == dt.timedelta(minutes=10)
    assert jobs["sync"].trigger.interval == dt.timedelta(seconds=2.5)
    assert jobs["catch-up"].trigger.interval == dt.timedelta(minutes=5) and jobs["deliver"].trigger.interval == dt.timedelta(minutes=1)
    assert jobs["digest:ada"].trigger.timezone == LONDON


# --- the real process --------------------------------------------------------------------------------


def _zones_far_from_midnight(count: int) -> list[str]:
    """Zones whose local day will not change during the test, so each reader is due exactly once."""
    now = dt.datetime.now(UTC)
    candidates = ["UTC", "Asia/Tokyo", "America/New_York", "Australia/Sydney", "America/Los_Angeles", "Asia/Kolkata", "Europe/Berlin"]
    return [zone for zone in candidates if 1 <= now.astimezone(ZoneInfo(zone)).hour <= 22][:count]


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], logs: Path, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"`newsletter run` exited ({process.returncode}) before {what}:\n{logs.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout}s:\n{logs.read_text()}")
        time.sleep(0.2)


def test_run_process_sends_each_due_digest_once_holds_the_lock_follows_new_readers_and_stops_on_sigterm(
    deployment: Deployment,
) -> None:
    first_zone, second_zone, third_zone = _zones_far_from_midnight(3)
    deployment.add_subscriber("ada", reader("ada", zone=first_zone, send_at="00:30"))  # send_at passed today: due now
    deployment.add_subscriber("grace", reader("grace", zone=second_zone, send_at="00:30"))
    day = Day(deployment)
    config_path = deployment.config_path
    logs = deployment.root / "run.log"
    command = [sys.executable, "-m", "newsletter", "--config", str(config_path), "run"]
    with logs.open("wb") as log:
        first = subprocess.Popen([*command, "--reload-every", "0.5"], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: sorted(day.sent()) == ["ada", "grace"], first, logs, "digest for ada and grace")

        second = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        (line,) = second.stderr.strip().splitlines()
        assert "already sending for this database" in line and f"`newsletter run` (pid {first.pid})" in line

        deployment.add_subscriber("lin", reader("lin", zone=third_zone, send_at="00:30"))
        _wait_for(lambda: "lin" in day.sent(), first, logs, "digest for the reader added while running")

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 0, logs.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert {who: len(dates) for who, dates in day.sent().items()} == {"ada": 1, "grace": 1, "lin": 1}
    output = logs.read_text()
    assert "SIGTERM: stopping after the message in flight" in output and "scheduler stopped" in output
