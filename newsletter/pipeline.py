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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from . import ingest
from .batch import (
    BATCH_SIZE,
    BatchJob,
    Prepared,
    Sender,
    SharedStop,
    run_batches,
    run_batches_in_workers,
)
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
from .outbox import DeliveryPolicy, RateLimiter
from .pool import Pool
from .rank import RankSettings, rank
from .render import Branding, Renderer, subject_line
from .store import NewDigest, Store
from .subscribers import (
    Defaults,
    LoadedSubscribers,
    find_subscriber,
    iter_subscribers,
    load_subscribers,
    subscriber_files,
)

Clock = Callable[[], dt.datetime]
Progress = Callable[[str, int, int], None]  # (what, done, total): the CLI draws a bar on a terminal


@contextmanager
def open_store(config: Config, *, clock: Clock = utc_now, create: bool = True) -> Iterator[Store]:
    store = Store(config.database, clock=clock, create=create)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _sending_store(config: Config, *, clock: Clock) -> Iterator[Store]:
    store = _outbox_store(config, clock=clock)
    try:
        yield store
    finally:
        store.close()


def _outbox_store(config: Config, *, clock: Clock) -> Store:
    """A connection that records deliveries: each commit fsync'd when messages leave for a mail server.

    A power cut could otherwise roll back the last "sent" marks and send those messages again.
    The local Maildir keeps WAL's cheaper commits (a killed process still loses nothing; after
    a power cut the last few messages may be written again).
    """
    store = Store(config.database, clock=clock)
    store.set_durable(config.delivery_method == "smtp")
    return store


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


def _defaults(config: Config) -> Defaults:
    return Defaults(timezone=config.timezone, send_at=config.send_at, max_items=config.max_items, quiet_days=config.quiet_days)


def subscribers_of(config: Config) -> LoadedSubscribers:
    return load_subscribers(config.subscribers, defaults=_defaults(config))


def candidate_pool(config: Config, store: Store, *, now: dt.datetime, frequencies: DocumentFrequencies | None = None) -> Pool:
    """Every entry first seen within lookback_days, analysed once for all the run's readers."""
    frequencies = DocumentFrequencies(store) if frequencies is None else frequencies
    corpus = CorpusStats(size=store.count_entries(), document_frequency=frequencies)
    return Pool(store.entries_since(now - dt.timedelta(days=config.lookback_days)), corpus=corpus)


class DocumentFrequencies(Mapping[str, int]):
    """How many stored entries hold each keyword (the corpus side of IDF), counted the first time a reader's keyword asks.

    Readers are read batch by batch, so their keywords are not known up front. ``store`` is the
    connection to count with: a forked worker points it at its own.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._counts: dict[str, int] = {}

    def __getitem__(self, phrase: str) -> int:
        count = self._counts.get(phrase)
        if count is None:
            if self.store is None:
                raise KeyError(phrase)
            count = self._counts[phrase] = self.store.document_frequencies([phrase])[phrase]
        return count

    def __contains__(self, phrase: object) -> bool:
        return isinstance(phrase, str) and (self.store is not None or phrase in self._counts)

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


def build_digest(
    config: Config, store: Store, subscriber: Subscriber, *, now: dt.datetime, pool: Pool | None = None,
    limit: int | None = None, include_below_threshold: bool = False,
) -> Digest:
    pool = pool if pool is not None else candidate_pool(config, store, now=now)
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


@dataclass(frozen=True)
class DigestRequest:
    subscriber_ids: tuple[str, ...] = ()  # empty: everyone
    ignore_time: bool = False  # --all / --subscriber: skip the send_at check, never the once-per-period rule
    dry_run: bool = False


def run_digests(
    config: Config, request: DigestRequest = DigestRequest(), *, clock: Clock = utc_now, transport: Transport | None = None,
    on_digest: Callable[[DigestOutcome], None] | None = None, stop: threading.Event | SharedStop | None = None,
    limiter: RateLimiter | None = None, progress: Progress | None = None, lock: bool = False, workers: int = 1,
    batch_size: int = BATCH_SIZE,
) -> RunReport:
    """Every digest that is due now: prepared, queued and sent batch by batch (batch.py).

    What waits in the outbox from earlier runs (retries whose time has come,
    abandoned claims) goes first. Within a batch every message is stored as
    queued before any is sent, so a failure or a crash while sending loses
    nothing. ``stop`` (set by SIGTERM) ends the run after the message in
    flight; what is queued stays queued, what is not built is built next run (a SharedStop
    reaches worker processes at once).
    ``lock`` takes the database's sender lock for the run (the CLI's `digest`;
    the scheduler holds it for its whole life instead). ``workers`` > 1 forks
    that many processes, each with its own connection and transport (so
    ``transport`` must then be None). ``batch_size`` readers are queued per commit.
    """
    if lock:
        with sender_lock(config.database, command="digest"):
            return run_digests(
                config, request, clock=clock, transport=transport, on_digest=on_digest, stop=stop, limiter=limiter,
                progress=progress, workers=workers, batch_size=batch_size,
            )
    if workers > 1 and transport is not None:
        raise ValueError("worker processes make their own transports: pass transport=None with workers > 1")
    problems: list[str] = []
    try:
        signer = link_signer(config)
        readers, total = _readers(config, request.subscriber_ids, problems, clock=clock)
    except ConfigError as exc:  # no new digest can carry valid links; those already queued still go out
        problems.append(str(exc))
        signer, readers, total = None, iter(()), 0
    report = _Outcomes(on_digest, progress, total=total)
    with _sending_store(config, clock=clock) as store:
        unsubscribed = store.unsubscribed()
        job = _digest_job(config, request, clock=clock, signer=signer, unsubscribed=unsubscribed)
        sender = Sender(job, store, stop=stop, limiter=limiter, transport=transport)
        try:
            if not request.dry_run:  # what waits from earlier runs goes first
                only = list(request.subscriber_ids) or None
                for outcome in sender.deliver(subscribers=only):
                    report(outcome, counted=False)
            if workers <= 1:
                run_batches(job, readers, sender=sender, stop=stop, report=report, size=batch_size)
        finally:
            sender.close()
    if workers > 1:
        run_batches_in_workers(job, readers, workers=workers, stop=stop, report=report, warm=job.warm, size=batch_size)
    report.finish()
    return RunReport(digests=tuple(report.outcomes), problems=tuple(problems))


def deliver_due(
    config: Config, *, clock: Clock = utc_now, transport: Transport | None = None, stop: threading.Event | None = None,
    on_digest: Callable[[DigestOutcome], None] | None = None,
) -> RunReport:
    """Send what waits in the outbox and is due (retries whose backoff has passed, abandoned claims)."""
    report = _Outcomes(on_digest, None, total=0)
    job = BatchJob(prepare=_nothing_to_prepare, open_store=_no_store, make_transport=lambda: make_transport(config),
                   policy=_delivery_policy(config), clock=clock)
    with _sending_store(config, clock=clock) as store:
        sender = Sender(job, store, stop=stop, transport=transport)
        try:
            for outcome in sender.deliver():
                report(outcome)
        finally:
            sender.close()
    return RunReport(digests=tuple(report.outcomes))


def _nothing_to_prepare(store: Store, subscriber: Subscriber) -> Prepared:
    raise AssertionError("deliver_due prepares no digest")


def _no_store() -> Store:
    raise AssertionError("deliver_due uses the store it opened")


class _Outcomes:
    """Collects a run's outcomes, passes each on as it happens (the CLI prints them live) and counts progress."""

    def __init__(self, on_digest: Callable[[DigestOutcome], None] | None, progress: Progress | None, *, total: int) -> None:
        self.outcomes: list[DigestOutcome] = []
        self._on_digest = on_digest
        self._progress = progress
        self._total = total
        self._done = 0
        self._sent_first: set[str] = set()

    def __call__(self, outcome: DigestOutcome, *, counted: bool = True) -> None:
        """One outcome; ``counted=False`` for the digests of earlier runs sent first, which the readers' turn then skips."""
        if not counted:
            self._sent_first.add(outcome.subscriber)
        # "this period's digest was sent" after the digest itself was reported a moment ago says nothing new
        repeated = counted and outcome.subscriber in self._sent_first and outcome.status in _EARLIER_STATUSES
        if not repeated:
            self.outcomes.append(outcome)
            if self._on_digest:
                self._on_digest(outcome)
        if counted and self._progress:
            self._done += 1
            self._progress("digests", min(self._done, self._total), self._total)

    def finish(self) -> None:
        if self._progress:
            self._progress("digests", self._total, self._total)


def _readers(config: Config, wanted: Sequence[str], problems: list[str], *, clock: Clock) -> tuple[Iterator[Subscriber], int]:
    """The readers this run is for, read from their files as the batches need them; and how many files that is."""
    if not wanted:
        files = subscriber_files(config.subscribers)
        return _every_reader(config, files, problems, clock=clock), len(files)
    loaded = subscribers_of(config)  # every file: an address used twice is refused in favour of the first file
    problems.extend(loaded.problems)
    by_id = {subscriber.id: subscriber for subscriber in loaded.subscribers}
    for sid in wanted:
        already_reported = any(f"{sid}.toml:" in problem for problem in problems)
        if sid not in by_id and not already_reported:
            problems.append(f'no subscriber "{sid}": {config.subscribers / (sid + ".toml")} does not exist')
    chosen = [by_id[sid] for sid in wanted if sid in by_id]
    return iter(chosen), len(chosen)


def _every_reader(config: Config, files: list[Path], problems: list[str], *, clock: Clock) -> Iterator[Subscriber]:
    """Every reader in file order; unchanged files come from what the store remembers of them (not parsed again)."""
    with open_store(config, clock=clock) as store:
        remembered = _RememberedFiles(store)
        try:
            yield from iter_subscribers(config.subscribers, defaults=_defaults(config), on_problem=problems.append, files=files, cache=remembered)
        finally:
            remembered.flush()
        store.forget_subscribers_except([path.stem for path in files])  # only after reading every file


class _RememberedFiles:
    """subscribers.ParsedCache over the store, writing what it learns a few hundred files at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._new: list[tuple[str, str, str]] = []

    def cached_subscriber(self, subscriber_id: str, stamp: str) -> str | None:
        return self.store.cached_subscriber(subscriber_id, stamp)

    def remember_subscriber(self, subscriber_id: str, stamp: str, checked: str) -> None:
        self._new.append((subscriber_id, stamp, checked))
        if len(self._new) >= 500:
            self.flush()

    def flush(self) -> None:
        if self._new:
            self.store.remember_subscribers(self._new)
            self._new = []


def _delivery_policy(config: Config) -> DeliveryPolicy:
    return DeliveryPolicy(sender=config.sender, max_attempts=config.max_attempts, retry_after=config.retry_after, rate_limit=config.rate_limit)


@dataclass(frozen=True)
class _DigestJob(BatchJob):
    warm: Callable[[], None] = lambda: None  # builds the pool and templates before worker processes fork


def _digest_job(
    config: Config, request: DigestRequest, *, clock: Clock, signer: LinkSigner | None, unsubscribed: dict[str, dict[str, str]],
) -> _DigestJob:
    """What batch.py needs to prepare each reader's digest; the pool and templates are built on first need."""
    frequencies = DocumentFrequencies()
    pools: list[Pool] = []

    def pool_with(store: Store) -> Pool:  # built on first need: a cron tick where nobody is due costs no per-entry work
        if not pools:
            pools.append(candidate_pool(config, store, now=clock(), frequencies=frequencies))
        return pools[0]

    renderer = functools.cache(lambda: Renderer(config.templates))

    def prepare(store: Store, reader: Subscriber) -> Prepared:
        frequencies.store = store  # this process's connection (a forked worker has its own)
        if reader.id in unsubscribed:
            left = unsubscribed[reader.id]
            detail = f"unsubscribed {left['at']} ({left['via']}); `newsletter resubscribe {reader.id}` undoes it"
            return Prepared(DigestOutcome(reader.id, "unsubscribed", detail=detail))
        return _prepare_digest(
            config, store, reader, request=request, renderer=renderer, now=clock(), pool=lambda: pool_with(store), signer=signer,
        )

    def warm() -> None:
        with open_store(config, clock=clock) as store:
            frequencies.store = store
            pool_with(store)
        frequencies.store = None
        renderer()

    return _DigestJob(
        prepare=prepare, open_store=lambda: _outbox_store(config, clock=clock), make_transport=lambda: make_transport(config),
        policy=_delivery_policy(config), clock=clock, send=not request.dry_run, warm=warm,
    )


def make_transport(config: Config) -> Transport:
    if config.delivery_method == "smtp":
        s = config.smtp
        return SmtpTransport(SmtpSettings(
            host=s.host, port=s.port, security=s.security, username=s.username, password_env=s.password_env,
            timeout=s.timeout, ca_file=s.ca_file,
        ))
    return MaildirTransport(config.maildir)


def _prepare_digest(
    config: Config, store: Store, subscriber: Subscriber, *, request: DigestRequest, renderer: Callable[[], Renderer],
    now: dt.datetime, pool: Callable[[], Pool], signer: LinkSigner | None,
) -> Prepared:
    """This reader's digest for the current period, rendered into a message when due (not yet stored)."""
    period = period_of(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency)
    earlier = store.digest_status(subscriber.id, period)
    if earlier not in (None, "empty", "cancelled"):  # an empty period may still get papers that arrived later
        status, detail = _EARLIER[earlier]
        return Prepared(DigestOutcome(subscriber.id, status, period, detail=detail))
    if not request.ignore_time and not is_due(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency, send_at=subscriber.send_at):
        return Prepared(DigestOutcome(subscriber.id, "not-due", period, detail=f"due at {subscriber.send_at:%H:%M} {subscriber.timezone}"))
    try:
        digest = build_digest(config, store, subscriber, now=now, pool=pool())
        if not digest.items and subscriber.quiet_days == "skip":
            if not request.dry_run:
                store.record_empty(subscriber=subscriber.id, period=period, considered=digest.considered)
            return Prepared(DigestOutcome(subscriber.id, "empty", period, considered=digest.considered, detail="nothing new passed the threshold"))
        links = links_for(config, digest, signer=signer)
        email = renderer().render(digest, branding=_branding(config), links=links)
        message_id, message = build_message(email, envelope=_envelope(config, subscriber, links), now=now)
    except (RenderError, DeliveryError) as exc:
        return Prepared(DigestOutcome(subscriber.id, "failed", period, detail=str(exc)))
    counts = {"items": len(digest.items), "considered": digest.considered}
    if request.dry_run:
        return Prepared(DigestOutcome(subscriber.id, "dry-run", period, detail=email.subject, **counts))
    items = tuple((item.entry.id, item.score) for item in digest.items)
    return Prepared(
        DigestOutcome(subscriber.id, "queued", period, detail=email.subject, **counts),
        NewDigest(subscriber.id, period, subscriber.email, email.subject, message_id, message, items, digest.considered),
    )


_EARLIER = {
    "sent": ("already-sent", "this period's digest was sent"),
    "queued": ("queued", "this period's digest waits in the outbox"),
    "sending": ("queued", "this period's digest is being sent"),
    "failed": ("gave-up", "this period's digest could not be delivered; see `newsletter status`, then `newsletter retry`"),
    "bounced": ("bounced", "the server refused this reader's address; see `newsletter status`"),
}
_EARLIER_STATUSES = {status for status, _ in _EARLIER.values()}


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

