"""Wires the stages: feeds -> ingest -> store -> rank -> render -> deliver.

Each public function is what one CLI command runs. Side effects (clock, HTTP
client, transport) are parameters so tests pass real local servers instead
of monkeypatching. One bad feed or subscriber never stops the others: its
problem goes into the RunReport and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from . import ingest
from .clock import is_due, next_slot, period_of, utc_now
from .config import Config, FeedConfig
from .deliver import (
    Envelope,
    MaildirTransport,
    SmtpSettings,
    SmtpTransport,
    Transport,
    build_message,
)
from .errors import ConfigError, DeliveryError, FeedError, RenderError
from .links import LESS, MORE, DigestLinks, LinkSigner, digest_links, signer_from_env
from .lock import sender_lock
from .models import (
    CorpusStats,
    Digest,
    DigestOutcome,
    FeedReport,
    RenderedEmail,
    RunReport,
    ScoredEntry,
    Subscriber,
)
from .outbox import DeliveryPolicy, RateLimiter, deliver_outbox
from .pool import Pool
from .rank import RankSettings, rank
from .render import Branding, Renderer, subject_line
from .store import Store
from .subscribers import Defaults, LoadedSubscribers, find_subscriber, load_subscribers

Clock = Callable[[], dt.datetime]
Progress = Callable[[str, int, int], None]  # (what, done, total): the CLI draws a bar on a terminal


@contextmanager
def open_store(config: Config, *, clock: Clock = utc_now, create: bool = True) -> Iterator[Store]:
    store = Store(config.database, clock=clock, create=create)
    try:
        yield store
    finally:
        store.close()


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
    own_client = client is None
    client = client or http_client(config)
    reports = []
    try:
        with open_store(config, clock=clock) as store:
            for done, feed in enumerate(feeds):
                if progress:
                    progress(f"ingesting {feed.name}", done, len(feeds))
                report = _ingest_one(feed, store=store, client=client, config=config)
                reports.append(report)
                if on_feed:
                    on_feed(report)
            if progress:
                progress("ingesting", len(feeds), len(feeds))
    finally:
        if own_client:
            client.close()
    return RunReport(feeds=tuple(reports))


def _ingest_one(feed: FeedConfig, *, store: Store, client: httpx.Client, config: Config) -> FeedReport:
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


def _defaults(config: Config) -> Defaults:
    return Defaults(timezone=config.timezone, send_at=config.send_at, max_items=config.max_items, quiet_days=config.quiet_days)


def subscribers_of(config: Config) -> LoadedSubscribers:
    return load_subscribers(config.subscribers, defaults=_defaults(config))


def candidate_pool(config: Config, store: Store, subscribers: Sequence[Subscriber], *, now: dt.datetime) -> Pool:
    """Every entry first seen within lookback_days, analysed once for all these subscribers."""
    keywords = {keyword for subscriber in subscribers for topic in subscriber.topics for keyword in topic.keywords}
    corpus = CorpusStats(size=store.count_entries(), document_frequency=store.document_frequencies(keywords))
    return Pool(store.entries_since(now - dt.timedelta(days=config.lookback_days)), corpus=corpus)


def build_digest(
    config: Config, store: Store, subscriber: Subscriber, *, now: dt.datetime, pool: Pool | None = None,
    limit: int | None = None, include_below_threshold: bool = False,
) -> Digest:
    pool = pool if pool is not None else candidate_pool(config, store, [subscriber], now=now)
    already_sent = store.sent_ids_since(subscriber.id, since=now - dt.timedelta(days=config.lookback_days))
    feedback = store.feedback_of(subscriber.id)  # "more like this" / "not for me" clicks from earlier emails
    liked = [*subscriber.liked, *(entry_id for entry_id, kind in feedback.items() if kind == MORE)]
    disliked = [entry_id for entry_id, kind in feedback.items() if kind == LESS]
    items = rank(
        subscriber, pool, max_items=limit or subscriber.max_items,
        liked=store.entries_by_id(dict.fromkeys(liked)), disliked=store.entries_by_id(disliked),
        settings=RankSettings(min_score=config.min_score, diversity=config.diversity, now=now),
        skip_ids=already_sent, include_below_threshold=include_below_threshold,
    )
    period = period_of(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency)
    considered = len(pool) - sum(1 for entry_id in already_sent if entry_id in pool.doc_of)
    return Digest(subscriber=subscriber, items=tuple(items), considered=considered, period=period, created_at=_local(now, subscriber))


def rank_for(
    config: Config, subscriber_id: str, *, limit: int | None = None, include_below_threshold: bool = False, clock: Clock = utc_now,
) -> list[ScoredEntry]:
    """The subscriber's next digest candidates, best first (nothing recorded); optionally every candidate."""
    subscriber = find_subscriber(config.subscribers, subscriber_id, defaults=_defaults(config))
    if include_below_threshold and limit is None:
        limit = 10_000
    with open_store(config, clock=clock, create=False) as store:
        digest = build_digest(config, store, subscriber, now=clock(), limit=limit, include_below_threshold=include_below_threshold)
        return list(digest.items)


def preview(config: Config, subscriber_id: str, *, clock: Clock = utc_now) -> RenderedEmail:
    """The subscriber's next digest, rendered; nothing is sent or recorded."""
    subscriber = find_subscriber(config.subscribers, subscriber_id, defaults=_defaults(config))
    with open_store(config, clock=clock, create=False) as store:
        digest = build_digest(config, store, subscriber, now=clock())
    links = links_for(config, digest, signer=link_signer(config))
    return Renderer(config.templates).render(digest, branding=_branding(config), links=links)


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
        pool = candidate_pool(config, store, loaded.subscribers, now=now) if loaded.subscribers else None
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


@dataclass(frozen=True)
class DigestRequest:
    subscriber_ids: tuple[str, ...] = ()  # empty: everyone
    ignore_time: bool = False  # --all / --subscriber: skip the send_at check, never the once-per-period rule
    dry_run: bool = False


def run_digests(
    config: Config, request: DigestRequest = DigestRequest(), *, clock: Clock = utc_now, transport: Transport | None = None,
    on_digest: Callable[[DigestOutcome], None] | None = None, stop: threading.Event | None = None,
    limiter: RateLimiter | None = None, progress: Progress | None = None, lock: bool = False,
) -> RunReport:
    """Queue every digest that is due now (rendered, stored), then deliver the outbox.

    Nothing connects to a mail server until every due digest is stored, so a
    failure or a crash while sending loses nothing. ``stop`` (set by SIGTERM)
    ends the run after the message in flight; what is left stays queued.
    ``lock`` takes the database's sender lock for the run (the CLI's `digest`;
    the scheduler holds it for its whole life instead).
    """
    if lock:
        with sender_lock(config.database, command="digest"):
            return run_digests(
                config, request, clock=clock, transport=transport, on_digest=on_digest, stop=stop, limiter=limiter, progress=progress,
            )
    loaded = subscribers_of(config)
    problems = list(loaded.problems)
    chosen = _chosen(config, loaded, request.subscriber_ids, problems)
    renderer = functools.cache(lambda: Renderer(config.templates))  # on first need: idle scheduler ticks stay cheap
    try:
        signer = link_signer(config)
    except ConfigError as exc:  # no new digest can carry valid links; those already queued still go out
        problems.append(str(exc))
        signer, chosen = None, []
    report = _Outcomes(on_digest)
    with open_store(config, clock=clock) as store:
        built = _queue_due(
            config, store, chosen, request=request, renderer=renderer, signer=signer, clock=clock, stop=stop, report=report, progress=progress,
        )
        if not request.dry_run:
            only = [subscriber.id for subscriber in chosen] if request.subscriber_ids else None
            _deliver(
                config, store, transport, clock=clock, subscribers=only, built=built, stop=stop, limiter=limiter, report=report, progress=progress,
            )
    return RunReport(digests=tuple(report.outcomes), problems=tuple(problems))


def deliver_due(
    config: Config, *, clock: Clock = utc_now, transport: Transport | None = None, stop: threading.Event | None = None,
    on_digest: Callable[[DigestOutcome], None] | None = None,
) -> RunReport:
    """Send what waits in the outbox and is due (retries whose backoff has passed, abandoned claims)."""
    report = _Outcomes(on_digest)
    with open_store(config, clock=clock) as store:
        _deliver(config, store, transport, clock=clock, subscribers=None, built={}, stop=stop, limiter=None, report=report, progress=None)
    return RunReport(digests=tuple(report.outcomes))


class _Outcomes:
    """Collects a run's outcomes and passes each on as it happens (the CLI prints them live)."""

    def __init__(self, on_digest: Callable[[DigestOutcome], None] | None) -> None:
        self.outcomes: list[DigestOutcome] = []
        self._on_digest = on_digest

    def __call__(self, outcome: DigestOutcome) -> None:
        self.outcomes.append(outcome)
        if self._on_digest:
            self._on_digest(outcome)


def _chosen(config: Config, loaded: LoadedSubscribers, wanted: Sequence[str], problems: list[str]) -> list[Subscriber]:
    if not wanted:
        return list(loaded.subscribers)
    by_id = {subscriber.id: subscriber for subscriber in loaded.subscribers}
    for sid in wanted:
        already_reported = any(f"{sid}.toml:" in problem for problem in problems)
        if sid not in by_id and not already_reported:
            problems.append(f'no subscriber "{sid}": {config.subscribers / (sid + ".toml")} does not exist')
    return [by_id[sid] for sid in wanted if sid in by_id]


def _queue_due(
    config: Config, store: Store, chosen: list[Subscriber], *, request: DigestRequest, renderer: Callable[[], Renderer],
    signer: LinkSigner | None, clock: Clock, stop: threading.Event | None, report: Callable[[DigestOutcome], None],
    progress: Progress | None,
) -> dict[int, DigestOutcome]:
    """Render and store every due digest; returns the queued ones' outcomes by digest id (for the send phase)."""
    pools: list[Pool] = []

    def pool() -> Pool:  # built on first need: a cron tick where nobody is due costs no per-entry work
        if not pools:
            pools.append(candidate_pool(config, store, chosen, now=clock()))
        return pools[0]

    built: dict[int, DigestOutcome] = {}
    unsubscribed = store.unsubscribed()
    for done, subscriber in enumerate(chosen):
        if progress:
            progress("building digests", done, len(chosen))
        if stop is not None and stop.is_set():
            break
        if subscriber.id in unsubscribed:
            left = unsubscribed[subscriber.id]
            report(DigestOutcome(subscriber.id, "unsubscribed", detail=f"unsubscribed {left['at']} ({left['via']}); `newsletter resubscribe {subscriber.id}` undoes it"))
            continue
        outcome, digest_id = _queue_digest(config, store, subscriber, request=request, renderer=renderer, now=clock(), pool=pool, signer=signer)
        if digest_id is None:
            report(outcome)
        else:
            built[digest_id] = outcome
    if progress:
        progress("building digests", len(chosen), len(chosen))
    return built


def _deliver(
    config: Config, store: Store, transport: Transport | None, *, clock: Clock, subscribers: list[str] | None,
    built: dict[int, DigestOutcome], stop: threading.Event | None, limiter: RateLimiter | None,
    report: Callable[[DigestOutcome], None], progress: Progress | None,
) -> None:
    due = len(store.pending_digests(subscribers, due_by=clock()))
    if not due:
        return  # nothing to send: no connection to the mail server at all
    own_transport = transport is None
    transport = transport or make_transport(config)
    policy = DeliveryPolicy(sender=config.sender, max_attempts=config.max_attempts, retry_after=config.retry_after, rate_limit=config.rate_limit)
    try:
        outcomes = deliver_outbox(store, transport, policy=policy, clock=clock, subscribers=subscribers, built=built, stop=stop, limiter=limiter)
        for done, outcome in enumerate(outcomes, start=1):
            report(outcome)
            if progress:
                progress("sending", min(done, due), due)
    finally:
        if own_transport:
            transport.close()


def make_transport(config: Config) -> Transport:
    if config.delivery_method == "smtp":
        s = config.smtp
        return SmtpTransport(SmtpSettings(
            host=s.host, port=s.port, security=s.security, username=s.username, password_env=s.password_env,
            timeout=s.timeout, ca_file=s.ca_file,
        ))
    return MaildirTransport(config.maildir)


def _queue_digest(
    config: Config, store: Store, subscriber: Subscriber, *, request: DigestRequest, renderer: Callable[[], Renderer],
    now: dt.datetime, pool: Callable[[], Pool], signer: LinkSigner | None,
) -> tuple[DigestOutcome, int | None]:
    """This reader's digest for the current period, rendered and queued when due: (outcome, digest id if queued)."""
    period = period_of(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency)
    earlier = store.digest_status(subscriber.id, period)
    if earlier not in (None, "empty", "cancelled"):  # an empty period may still get papers that arrived later
        status, detail = _EARLIER[earlier]
        return DigestOutcome(subscriber.id, status, period, detail=detail), None
    if not request.ignore_time and not is_due(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency, send_at=subscriber.send_at):
        return DigestOutcome(subscriber.id, "not-due", period, detail=f"due at {subscriber.send_at:%H:%M} {subscriber.timezone}"), None
    try:
        digest = build_digest(config, store, subscriber, now=now, pool=pool())
        if not digest.items and subscriber.quiet_days == "skip":
            if not request.dry_run:
                store.record_empty(subscriber=subscriber.id, period=period, considered=digest.considered)
            return DigestOutcome(subscriber.id, "empty", period, considered=digest.considered, detail="nothing new passed the threshold"), None
        links = links_for(config, digest, signer=signer)
        email = renderer().render(digest, branding=_branding(config), links=links)
        message_id, message = build_message(email, envelope=_envelope(config, subscriber, links), now=now)
    except (RenderError, DeliveryError) as exc:
        return DigestOutcome(subscriber.id, "failed", period, detail=str(exc)), None
    counts = {"items": len(digest.items), "considered": digest.considered}
    if request.dry_run:
        return DigestOutcome(subscriber.id, "dry-run", period, detail=email.subject, **counts), None
    digest_id = store.queue_digest(
        subscriber=subscriber.id, period=period, recipient=subscriber.email, subject=email.subject,
        message_id=message_id, message=message, items=[(item.entry.id, item.score) for item in digest.items],
        considered=digest.considered,
    )
    if digest_id is None:
        return DigestOutcome(subscriber.id, "queued", period, detail="another run queued it first"), None
    return DigestOutcome(subscriber.id, "queued", period, detail=email.subject, **counts), digest_id


_EARLIER = {
    "sent": ("already-sent", "this period's digest was sent"),
    "queued": ("queued", "this period's digest waits in the outbox"),
    "sending": ("queued", "this period's digest is being sent"),
    "failed": ("gave-up", "this period's digest could not be delivered; see `newsletter status`, then `newsletter retry`"),
    "bounced": ("bounced", "the server refused this reader's address; see `newsletter status`"),
}


def retry_failed(config: Config, *, subscriber_id: str | None = None, clock: Clock = utc_now) -> list[tuple[str, str, str]]:
    """Failed and bounced digests back into the outbox: (subscriber, period, what happened)."""
    with open_store(config, clock=clock, create=False) as store:
        return store.requeue_failed(subscriber=subscriber_id)


def _branding(config: Config) -> Branding:
    return Branding(title=config.title, sender=config.sender)


def link_signer(config: Config) -> LinkSigner | None:
    """Signs the https links when base_url is set; raises ConfigError naming the variable if its secret is missing."""
    if config.base_url is None:
        return None
    return signer_from_env(secret_env=config.secret_env, config_path=config.path, feedback_days=config.link_days)


def links_for(config: Config, digest: Digest, *, signer: LinkSigner | None) -> DigestLinks:
    """The digest's links, dated by the reader's local day: the same in `preview` and in the email sent that day."""
    return digest_links(
        subscriber_id=digest.subscriber.id, sender=config.sender, base_url=config.base_url, signer=signer,
        issued=digest.created_at.date(), entry_ids=[item.entry.id for item in digest.items],
    )


def _envelope(config: Config, subscriber: Subscriber, links: DigestLinks) -> Envelope:
    domain = config.sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    slug = list_slug(config.title)
    return Envelope(
        sender=config.sender, recipient=subscriber.email, recipient_name=subscriber.name,
        list_id=f"{config.title} <{slug}.{domain}>",
        unsubscribe_mailto=links.unsubscribe_mailto, unsubscribe_https=links.unsubscribe_https,
    )


def list_slug(title: str) -> str:
    """The List-Id's label (RFC 2919 allows only letters, digits and hyphens): "Päpers: AI & ML" -> "papers-ai-ml"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_title.lower())) or "digest"


def _local(now: dt.datetime, subscriber: Subscriber) -> dt.datetime:
    return now.astimezone(ZoneInfo(subscriber.timezone))


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

