"""`newsletter run`: APScheduler (3.x) jobs that ingest feeds and send each digest at its reader's local time.

Jobs (all in one BackgroundScheduler; the pipeline decides what is due, the jobs only wake it up):

- ``digest:<id>``: a CronTrigger per reader at their local ``send_at`` (daily, or on their weekday) in their
  ZoneInfo zone; runs ``run_digests`` for that reader only, so the digest leaves on time.
- ``catch-up``: every few minutes ``run_digests`` for everyone. APScheduler 3's CronTrigger follows the wall
  clock: in an autumn repeated hour a send_at fires twice, and a trigger computed afresh inside a spring gap
  (a job added or changed then) skips that day. The store's once-per-period rule makes a second fire send
  nothing; this job makes a skipped one send a few minutes late instead of never.
- ``start``: once at start, ingest then the catch-up, so a digest missed while the scheduler was down goes
  out once, if it is still the reader's period (``pipeline.is_due``).
- ``deliver``: every minute ``deliver_due`` (retries whose backoff has passed, abandoned claims).
- ``ingest``: every ``ingest_every``.
- ``sync``: every ~30 s re-reads config.toml and the subscriber files and adds, removes or reschedules the
  ``digest:<id>`` jobs, so edits need no restart.

Sending jobs share one worker thread: the outbox is never sent from two threads of this process at once.
The clock the pipeline sees is a parameter (tests drive the job methods with a fixed clock); APScheduler's
own timing is real time. ``run_scheduler`` holds the database's sender lock for the scheduler's whole life.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import pipeline
from .clock import utc_now
from .config import Config, load_config
from .errors import ConfigError, NewsletterError
from .lock import sender_lock
from .models import RunReport, Subscriber

log = logging.getLogger("newsletter.schedule")

UTC = dt.timezone.utc
DIGEST_PREFIX = "digest:"
Clock = Callable[[], dt.datetime]
OnReport = Callable[[str, RunReport], None]  # (job kind, what the run did): the CLI prints it


@dataclass(frozen=True)
class Intervals:
    """Seconds between the housekeeping jobs' runs; tests shorten ``sync`` so an edit shows up fast."""

    catch_up: float = 300.0
    deliver: float = 60.0
    sync: float = 30.0


def digest_trigger(subscriber: Subscriber) -> CronTrigger:
    """The reader's local send_at, every day or on their weekday, in their own zone (DST follows the zone)."""
    weekday = subscriber.frequency.removeprefix("weekly:") if subscriber.frequency.startswith("weekly:") else None
    return CronTrigger(
        day_of_week=weekday, hour=subscriber.send_at.hour, minute=subscriber.send_at.minute, second=0,
        timezone=ZoneInfo(subscriber.timezone),
    )


def job_name(subscriber: Subscriber) -> str:
    """Names the schedule, so sync_jobs sees from the name alone whether a reader's job must change."""
    return f"digest for {subscriber.id} at {subscriber.send_at:%H:%M} {subscriber.timezone} {subscriber.frequency}"


@dataclass(frozen=True)
class SyncResult:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def sync_jobs(
    scheduler: BaseScheduler, subscribers: Iterable[Subscriber], *, send: Callable[[str], None], run_now: dt.datetime | None = None,
) -> SyncResult:
    """Make the ``digest:<id>`` jobs match the subscribers: one per reader, on that reader's trigger.

    ``run_now`` (real time) makes an added or changed reader's job run once at once: a reader added after
    today's send_at is due now, not tomorrow (the pipeline says "not due" if they are not).
    """
    wanted = {DIGEST_PREFIX + subscriber.id: subscriber for subscriber in subscribers}
    existing = {job.id: job for job in scheduler.get_jobs() if job.id.startswith(DIGEST_PREFIX)}
    removed = sorted(existing.keys() - wanted.keys())
    for job_id in removed:
        scheduler.remove_job(job_id)
    added, changed = [], []
    for job_id, subscriber in sorted(wanted.items()):
        job = existing.get(job_id)
        if job is not None and job.name == job_name(subscriber):
            continue
        (added if job is None else changed).append(subscriber.id)
        first_run: dict[str, Any] = {"next_run_time": run_now} if run_now is not None else {}
        scheduler.add_job(
            send, digest_trigger(subscriber), args=(subscriber.id,), id=job_id, name=job_name(subscriber),
            replace_existing=True, **first_run,
        )
    return SyncResult(tuple(added), tuple(changed), tuple(job_id.removeprefix(DIGEST_PREFIX) for job_id in removed))


class Jobs:
    """What each job does, as plain methods: the scheduler calls them, tests call them with a controlled clock.

    Holds the last good config (``reload`` refreshes it). A job never raises: a NewsletterError becomes a
    problem in its report, and a job that starts after ``stop`` is set does nothing.
    """

    def __init__(self, config_path: Path, *, clock: Clock = utc_now, stop: threading.Event, on_report: OnReport | None = None) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.clock = clock
        self.stop = stop
        self.on_report = on_report
        self._file_problems: frozenset[str] = frozenset()  # reported by reload when they appear, not by every run
        self._config_problem: str | None = None

    def start(self) -> None:
        """Fresh papers first, then whatever is due: a digest missed while the scheduler was down goes out now."""
        self.ingest()
        self.catch_up()

    def ingest(self) -> None:
        self._run("ingest", lambda config: pipeline.ingest_feeds(config, clock=self.clock))

    def digest(self, subscriber_id: str) -> None:
        request = pipeline.DigestRequest(subscriber_ids=(subscriber_id,))
        self._run("digest", lambda config: pipeline.run_digests(config, request, clock=self.clock, stop=self.stop))

    def catch_up(self) -> None:
        self._run("catch-up", lambda config: pipeline.run_digests(config, clock=self.clock, stop=self.stop))

    def deliver(self) -> None:
        self._run("deliver", lambda config: pipeline.deliver_due(config, clock=self.clock, stop=self.stop))

    def reload(self) -> tuple[Subscriber, ...] | None:
        """Re-read config.toml and the subscriber files; None (keep the current jobs) while config.toml is broken."""
        try:
            self.config = load_config(self.config_path)
        except ConfigError as exc:
            if str(exc) != self._config_problem:
                self._config_problem = str(exc)
                self._report("config", RunReport(problems=(f"{exc} (still running with the last good config)",)))
            return None
        self._config_problem = None
        loaded = pipeline.subscribers_of(self.config)
        new = tuple(problem for problem in loaded.problems if problem not in self._file_problems)
        self._file_problems = frozenset(loaded.problems)
        if new:
            self._report("subscribers", RunReport(problems=new))
        return loaded.subscribers

    def _run(self, kind: str, work: Callable[[Config], RunReport]) -> None:
        if self.stop.is_set():
            return
        try:
            report = work(self.config)
        except NewsletterError as exc:
            report = RunReport(problems=(str(exc),))
        self._report(kind, replace(report, problems=tuple(p for p in report.problems if p not in self._file_problems)))

    def _report(self, kind: str, report: RunReport) -> None:
        if self.on_report:
            self.on_report(kind, report)


def build_scheduler(
    config_path: Path, *, clock: Clock = utc_now, stop: threading.Event, on_report: OnReport | None = None,
    intervals: Intervals = Intervals(),
) -> BackgroundScheduler:
    """Every job of `newsletter run`, on a scheduler not yet started; ``clock`` is what the pipeline sees."""
    jobs = Jobs(config_path, clock=clock, stop=stop, on_report=on_report)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(1), "housekeeping": ThreadPoolExecutor(2)},
        # A late run is still right (the pipeline decides what is due), so never drop one; coalesce the backlog.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    now = dt.datetime.now(UTC)
    subscribers = jobs.reload() or ()
    ingest_every = jobs.config.ingest_every

    def every(seconds: float) -> dict[str, Any]:
        return {"trigger": IntervalTrigger(seconds=seconds), "next_run_time": now + dt.timedelta(seconds=seconds)}

    scheduler.add_job(jobs.start, "date", run_date=now, id="start", name="ingest, then every digest due")
    sync_jobs(scheduler, subscribers, send=jobs.digest)
    scheduler.add_job(jobs.catch_up, id="catch-up", name="every digest due", **every(intervals.catch_up))
    scheduler.add_job(jobs.deliver, id="deliver", name="deliver retries", **every(intervals.deliver))
    scheduler.add_job(jobs.ingest, id="ingest", name="ingest", executor="housekeeping", **every(ingest_every))

    def sync() -> None:
        nonlocal ingest_every
        found = None if stop.is_set() else jobs.reload()
        if found is None:
            return
        changes = sync_jobs(scheduler, found, send=jobs.digest, run_now=dt.datetime.now(UTC))
        for what, ids in (("added", changes.added), ("rescheduled", changes.changed), ("removed", changes.removed)):
            for subscriber_id in ids:
                log.info("subscriber %s: %s", subscriber_id, what)
        if jobs.config.ingest_every != ingest_every:
            ingest_every = jobs.config.ingest_every
            scheduler.reschedule_job("ingest", trigger=IntervalTrigger(seconds=ingest_every))
            log.info("ingest now every %ss", ingest_every)

    scheduler.add_job(sync, id="sync", name="reload subscribers and config", executor="housekeeping", **every(intervals.sync))
    return scheduler


def run_scheduler(
    config_path: Path | None, *, stop: threading.Event, on_report: OnReport | None = None, clock: Clock = utc_now,
    intervals: Intervals = Intervals(),
) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT), holding the sender lock; raises LockedError if another holds it.

    On stop, the jobs finish the message in flight (the pipeline checks ``stop``) and the scheduler waits
    for them, so nothing is left half-sent.
    """
    config = load_config(config_path)
    with sender_lock(config.database, command="run"):
        scheduler = build_scheduler(config.path, clock=clock, stop=stop, on_report=on_report, intervals=intervals)
        scheduler.start()
        readers = sum(job.id.startswith(DIGEST_PREFIX) for job in scheduler.get_jobs())
        log.info("scheduler started for %s: %d readers, ingest every %ss (Ctrl-C or SIGTERM stops)",
                 config.path, readers, config.ingest_every)
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)
        log.info("scheduler stopped")
