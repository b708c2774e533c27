"""`newsletter run`: APScheduler jobs that ingest every `ingest_every` and send digests when due.

The digest job ticks every minute and asks the pipeline which readers are due
(their local send_at has passed and this period's digest is not recorded), so
time zones, DST and a scheduler that was down all follow the same
once-per-period rule as `newsletter digest` from cron. Subscriber files are
re-read on every tick, so adding or editing one needs no restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .clock import utc_now
from .config import load_config
from .errors import NewsletterError
from .models import RunReport
from .pipeline import ingest_feeds, run_digests

log = logging.getLogger("newsletter.schedule")


def build_scheduler(config_path: Path, *, on_report: Callable[[str, RunReport], None] | None = None) -> BlockingScheduler:
    config = load_config(config_path)
    scheduler = BlockingScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})

    def job(kind: str) -> None:
        try:
            current = load_config(config_path)  # pick up edits without a restart
            report = ingest_feeds(current) if kind == "ingest" else run_digests(current)
        except NewsletterError as exc:
            log.error("%s: %s", kind, exc)
            return
        if on_report:
            on_report(kind, report)

    scheduler.add_job(job, IntervalTrigger(seconds=config.ingest_every), args=["ingest"], id="ingest", name="ingest", next_run_time=utc_now())
    scheduler.add_job(job, CronTrigger(second=0), args=["digest"], id="digest", name="digests due")
    return scheduler
