"""Wires the stages: feeds -> ingest -> store -> rank -> render -> deliver.

Each public function is what one CLI command runs. Side effects (clock, HTTP
client, transport) are parameters so tests pass real local servers instead
of monkeypatching. One bad feed or subscriber never stops the others: its
problem goes into the RunReport and the run goes on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import ingest
from .clock import next_slot, utc_now
from .compose import (  # re-exported: the commands' callers and the tests use them through pipeline
    Clock,
    DocumentFrequencies,
    Progress,
    branding_of,
    build_digest,
    candidate_pool,
    defaults_of,
    envelope_for,
    link_signer,
    links_for,
    list_slug,
    make_transport,
    open_store,
    subscribers_of,
)
from .config import Config, FeedConfig
from .daily import (  # re-exported: `digest`, `run` and the scheduler
    DigestRequest,
    SharedStop,
    deliver_due,
    run_digests,
)
from .errors import ConfigError, FeedError, RenderError
from .models import (
    FeedReport,
    RenderedEmail,
    RunReport,
    ScoredEntry,
    Subscriber,
)
from .render import Renderer, subject_line
from .store import Store
from .subscribers import (
    find_subscriber,
)

__all__ = [
    "Clock",
    "DigestRequest",
    "DocumentFrequencies",
    "NextDigest",
    "Progress",
    "RunReport",
    "SharedStop",
    "branding_of",
    "build_digest",
    "candidate_pool",
    "check",
    "defaults_of",
    "deliver_due",
    "envelope_for",
    "ingest_feeds",
    "link_signer",
    "links_for",
    "list_slug",
    "make_transport",
    "next_digests",
    "open_store",
    "preview",
    "rank_for",
    "retry_failed",
    "run_digests",
    "status",
    "subscribers_of",
]



def http_client(config: Config) -> httpx.Client:
    return httpx.Client(timeout=config.fetch_timeout, follow_redirects=True, max_redirects=5)


# --- ingest -----------------------------------------------------------------------


def ingest_feeds(
    config: Config, *, only: str | None = None, client: httpx.Client | None = None, clock: Clock = utc_now,
    on_feed: Callable[[FeedReport], None] | None = None, progress: Progress | None = None,
) -> RunReport:
    """Fetch every configured feed (or one), store new entries, report each feed."""
    feeds = [feed for feed in config.feeds if only is None or feed.name == only]
    if only is not None and not feeds:
        known = ", ".join(feed.name for feed in config.feeds)
        raise FeedError(f'{config.path}: no feed named "{only}" (known: {known})')
    made: list[httpx.Client] = []

    def client_now() -> httpx.Client:  # made on first need: a run over local files never builds one
        if client is not None:
            return client
        if not made:
            made.append(http_client(config))
        return made[0]

    reports = []
    try:
        with open_store(config, clock=clock) as store:
            for done, feed in enumerate(feeds):
                if progress:
                    progress(f"ingesting {feed.name}", done, len(feeds))
                report = _ingest_one(feed, store=store, client=client_now, config=config)
                reports.append(report)
                if on_feed:
                    on_feed(report)
            if progress:
                progress("ingesting", len(feeds), len(feeds))
    finally:
        for own in made:
            own.close()
    return RunReport(feeds=tuple(reports))


def _ingest_one(feed: FeedConfig, *, store: Store, client: Callable[[], httpx.Client], config: Config) -> FeedReport:
    etag, last_modified = store.feed_state(feed.name, url=feed.url)
    try:
        fetched = ingest.fetch(
            feed.url, feed_name=feed.name, client=client, state=ingest.FeedState(etag=etag, last_modified=last_modified),
            max_bytes=config.max_feed_bytes, timeout=config.fetch_timeout,
        )
        if fetched.not_modified:
            store.record_fetch(feed.name, url=feed.url, status="not-modified", etag=etag, last_modified=last_modified)
            return FeedReport(feed.name, not_modified=True)
        parsed = ingest.parse(
            fetched.content or b"", feed_name=feed.name, content_type=fetched.content_type, base_url=fetched.url,
            max_entries=config.max_entries, max_summary_chars=config.max_summary_chars,
        )
    except FeedError as exc:
        store.record_fetch(feed.name, url=feed.url, status="failed", error=str(exc))
        return FeedReport(feed.name, error=str(exc))
    counts = store.save_entries(parsed.entries)
    status = "warning" if parsed.warning or parsed.skipped else "ok"
    warning = parsed.warning
    if warning is None and parsed.skipped:
        more = len(parsed.skipped) - 1
        warning = parsed.skipped[0] + (f" (+{more} more)" if more else "")
    store.record_fetch(
        feed.name, url=feed.url, status=status, error=None, etag=fetched.etag, last_modified=fetched.last_modified,
        counts=counts, skipped=len(parsed.skipped),
    )
    return FeedReport(
        feed.name, new=counts.new, duplicate=counts.duplicate, updated=counts.updated,
        skipped=len(parsed.skipped), warning=warning,
    )


# --- rank, preview --------------------------------------------------------------------


def rank_for(
    config: Config, subscriber_id: str, *, limit: int | None = None, include_below_threshold: bool = False, clock: Clock = utc_now,
) -> list[ScoredEntry]:
    """The subscriber's next digest candidates, best first (nothing recorded); optionally every candidate."""
    subscriber = find_subscriber(config.subscribers, subscriber_id, defaults=defaults_of(config))
    if include_below_threshold and limit is None:
        limit = 10_000
    with open_store(config, clock=clock, create=False) as store:
        digest = build_digest(config, store, subscriber, now=clock(), limit=limit, include_below_threshold=include_below_threshold)
        return list(digest.items)


def preview(config: Config, subscriber_id: str, *, clock: Clock = utc_now) -> RenderedEmail:
    """The subscriber's next digest, rendered; nothing is sent or recorded."""
    subscriber = find_subscriber(config.subscribers, subscriber_id, defaults=defaults_of(config))
    with open_store(config, clock=clock, create=False) as store:
        digest = build_digest(config, store, subscriber, now=clock())
    links = links_for(config, digest, signer=link_signer(config))
    return Renderer(config.templates).render(digest, branding=branding_of(config), links=links)


@dataclass(frozen=True)
class NextDigest:
    """One line of the preview page: who gets what next, and when."""

    subscriber: Subscriber
    send_at: dt.datetime  # aware, in the reader's zone; "now" when due and not yet sent
    period_status: str | None  # this period's outbox status ("sent", "empty", ...) or None
    subject: str
    picks: int
    considered: int
    unsubscribed: bool = False  # the reader unsubscribed from an email: nothing goes out until `resubscribe`


def next_digests(config: Config, *, clock: Clock = utc_now) -> tuple[list[NextDigest], list[str]]:
    """Every subscriber's next digest (ranked, not rendered) with its send time; plus file problems."""
    loaded = subscribers_of(config)
    now = clock()
    found = []
    with open_store(config, clock=clock, create=False) as store:
        pool = candidate_pool(config, store, now=now) if loaded.subscribers else None
        gone = store.unsubscribed()
        for subscriber in loaded.subscribers:
            digest = build_digest(config, store, subscriber, now=now, pool=pool)
            status = store.digest_status(subscriber.id, digest.period)
            send_at = next_slot(
                now=now, timezone=subscriber.timezone, frequency=subscriber.frequency, send_at=subscriber.send_at,
                sent_this_period=status not in (None, "empty"),
            )
            period_word = "this week" if subscriber.frequency.startswith("weekly") else "today"
            subject = subject_line(config.title, digest.items, period_word=period_word)
            found.append(NextDigest(
                subscriber, send_at, status, subject, len(digest.items), digest.considered, unsubscribed=subscriber.id in gone,
            ))
    return found, list(loaded.problems)


# --- digests ------------------------------------------------------------------------------


def retry_failed(config: Config, *, subscriber_id: str | None = None, clock: Clock = utc_now) -> list[tuple[str, str, str]]:
    """Failed and bounced digests back into the outbox: (subscriber, period, what happened)."""
    with open_store(config, clock=clock, create=False) as store:
        return store.requeue_failed(subscriber=subscriber_id)


# --- check, status -------------------------------------------------------------------------


def check(config: Config) -> list[str]:
    """Every problem with the deployment's files, one line each (config.toml already parsed)."""
    problems = list(subscribers_of(config).problems)
    for feed in config.feeds:
        if not feed.is_remote and not _is_file(feed.url):
            problems.append(f'{config.path}: feed "{feed.name}": file {feed.url} not found')
    try:
        Renderer(config.templates)  # compiles both templates and inlines the HTML one's CSS
    except RenderError as exc:
        problems.append(str(exc))
    try:
        link_signer(config)
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


def _is_file(path: str) -> bool:
    return Path(path).is_file()


def status(config: Config, *, clock: Clock = utc_now) -> dict[str, Any]:
    """Feeds' health, the store's size and the outbox per day."""
    with open_store(config, clock=clock, create=False) as store:
        return {
            "database": str(config.database),
            "entries": store.count_entries(),
            "feeds": store.feeds(),
            "digests": store.digest_summary(),
            "subscribers": len(subscribers_of(config).subscribers),
            "unsubscribed": store.unsubscribed(),
        }
