"""One run's digests: which readers are due, each one's message prepared, queued and sent in batches.

Part of the pipeline layer: ``run_digests`` and ``deliver_due`` are what `digest`,
`run` and the scheduler call (through ``pipeline``); ``batch`` does the batches and
the worker processes, ``compose`` builds each reader's digest.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .batch import (
    BATCH_SIZE,
    BatchJob,
    Prepared,
    Sender,
    Sending,
    SharedStop,
    run_batches,
    run_batches_in_workers,
)
from .clock import is_due, period_of, utc_now
from .compose import (
    Clock,
    DocumentFrequencies,
    Progress,
    branding_of,
    build_digest,
    ReaderHistory,
    candidate_pool,
    defaults_of,
    envelope_for,
    link_signer,
    links_for,
    make_transport,
    open_store,
    reader_histories,
    subscribers_of,
)
from .config import Config
from .deliver import (
    Transport,
    build_message,
)
from .errors import ConfigError, DeliveryError, RenderError
from .links import LinkSigner
from .lock import sender_lock
from .models import (
    DigestOutcome,
    RunReport,
    Subscriber,
)
from .outbox import DeliveryPolicy, RateLimiter
from .pool import Pool
from .render import Renderer
from .store import NewDigest, Store
from .subscribers import (
    Remembered,
    iter_readers,
    subscriber_files,
)


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
        readers, total = _readers(config, request.subscriber_ids, problems, clock=clock, dry_run=request.dry_run)
    except ConfigError as exc:  # no new digest can carry valid links; those already queued still go out
        problems.append(str(exc))
        signer, readers, total = None, iter(()), 0
    report = _Outcomes(on_digest, progress, total=total)
    with _sending_store(config, clock=clock) as store:
        unsubscribed = store.unsubscribed()
        rebuilds: dict[str, str] = {}
        job = _digest_job(config, request, clock=clock, signer=signer, unsubscribed=unsubscribed, rebuilds=rebuilds)
        sender = Sender(job.sending, store, stop=stop, limiter=limiter, transport=transport)
        try:
            if not request.dry_run:  # what waits from earlier runs goes first
                only = list(request.subscriber_ids) or None
                for outcome in sender.deliver(subscribers=only):
                    report(outcome, counted=False)
            rebuilds.update(store.rebuild_periods())  # digests whose bytes died with their process (given back just now or before)
            if workers <= 1:
                run_batches(job, readers, sender=sender, stop=stop, report=report, size=batch_size)
        finally:
            sender.close()
    if workers > 1:
        problems.extend(run_batches_in_workers(job, readers, workers=workers, stop=stop, report=report, size=batch_size))  # workers lost
    report.finish()
    return RunReport(digests=tuple(report.outcomes), problems=tuple(problems))


def deliver_due(
    config: Config, *, clock: Clock = utc_now, transport: Transport | None = None, stop: threading.Event | None = None,
    on_digest: Callable[[DigestOutcome], None] | None = None,
) -> RunReport:
    """Send what waits in the outbox and is due (retries whose backoff has passed, abandoned claims)."""
    report = _Outcomes(on_digest, None, total=0)
    with _sending_store(config, clock=clock) as store:
        sender = Sender(_sending(config, clock=clock), store, stop=stop, transport=transport)
        try:
            for outcome in sender.deliver():
                report(outcome)
        finally:
            sender.close()
    return RunReport(digests=tuple(report.outcomes))


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
        # "this period's digest was sent" after the digest itself was reported a moment ago says nothing new (but a
        # digest given back and built again that a stop then leaves queued does)
        repeated = counted and outcome.subscriber in self._sent_first and (outcome.status, outcome.detail) in _EARLIER_LINES
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


def _readers(
    config: Config, wanted: Sequence[str], problems: list[str], *, clock: Clock, dry_run: bool,
) -> tuple[Iterator[Subscriber | Remembered], int]:
    """The readers this run is for, read from their files as the batches need them; and how many files that is."""
    if not wanted:
        files = subscriber_files(config.subscribers)
        return _every_reader(config, files, problems, clock=clock, dry_run=dry_run), len(files)
    loaded = subscribers_of(config)  # every file: an address used twice is refused in favour of the first file
    problems.extend(loaded.problems)
    by_id = {subscriber.id: subscriber for subscriber in loaded.subscribers}
    for sid in wanted:
        already_reported = any(f"{sid}.toml:" in problem for problem in problems)
        if sid not in by_id and not already_reported:
            problems.append(f'no subscriber "{sid}": {config.subscribers / (sid + ".toml")} does not exist')
    chosen = [by_id[sid] for sid in wanted if sid in by_id]
    return iter(chosen), len(chosen)


def _every_reader(
    config: Config, files: list[Path], problems: list[str], *, clock: Clock, dry_run: bool,
) -> Iterator[Subscriber | Remembered]:
    """Every reader in file order; unchanged files come from what the store remembers of them (not parsed again), as
    Remembered: made Subscribers by BatchJob.load where the batch is prepared (in a worker, with --workers)."""
    with open_store(config, clock=clock) as store:
        remembered = _RememberedFiles(store)
        try:
            yield from iter_readers(config.subscribers, defaults=defaults_of(config), on_problem=problems.append, files=files, cache=remembered)
        finally:
            remembered.flush()
        present = [path.stem for path in files]
        store.forget_subscribers_except(present)  # only after reading every file
        if files and not dry_run:  # no files at all is more likely a directory not there yet than every reader gone
            store.cancel_rebuilds_except(present)


class _RememberedFiles:
    """subscribers.ParsedCache over the store, writing what it learns a few hundred files at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._new: list[tuple[str, str, str]] = []

    def cached_subscribers(self, stamps: dict[str, str]) -> dict[str, str]:
        return self.store.cached_subscribers(stamps)

    def remember_subscriber(self, subscriber_id: str, stamp: str, checked: str) -> None:
        self._new.append((subscriber_id, stamp, checked))
        if len(self._new) >= 500:
            self.flush()

    def flush(self) -> None:
        if self._new:
            self.store.remember_subscribers(self._new)
            self._new = []


def _sending(config: Config, *, clock: Clock) -> Sending:
    policy = DeliveryPolicy(sender=config.sender, max_attempts=config.max_attempts, retry_after=config.retry_after, rate_limit=config.rate_limit)
    return Sending(make_transport=lambda: make_transport(config), policy=policy, clock=clock)


def _digest_job(
    config: Config, request: DigestRequest, *, clock: Clock, signer: LinkSigner | None, unsubscribed: dict[str, dict[str, str]],
    rebuilds: dict[str, str],
) -> BatchJob:
    """What batch.py needs to prepare each reader's digest; the pool and templates are built on first need.

    ``rebuilds``: reader -> a period whose digest is built again now, whatever the time (store.rebuild_periods).
    """
    frequencies = DocumentFrequencies()
    pools: list[Pool] = []

    def pool_with(store: Store) -> Pool:  # built on first need: a cron tick where nobody is due costs no per-entry work
        if not pools:
            pools.append(candidate_pool(config, store, now=clock(), frequencies=frequencies))
        return pools[0]

    renderer = functools.cache(lambda: Renderer(config.templates))

    batch = _BatchRead()

    def start_batch(store: Store, readers: Sequence[Subscriber]) -> None:
        batch.read(config, store, [reader for reader in readers if reader.id not in unsubscribed], now=clock())

    def prepare(store: Store, reader: Subscriber) -> Prepared:
        frequencies.store = store  # this process's connection (a forked worker has its own)
        if reader.id in unsubscribed:
            left = unsubscribed[reader.id]
            detail = f"unsubscribed {left['at']} ({left['via']}); `newsletter resubscribe {reader.id}` undoes it"
            return Prepared(DigestOutcome(reader.id, "unsubscribed", detail=detail))
        return _prepare_digest(
            config, store, reader, request=request, renderer=renderer, now=clock(), pool=lambda: pool_with(store), signer=signer,
            overdue=rebuilds.get(reader.id), batch=batch,
        )

    def warm() -> None:
        with open_store(config, clock=clock) as store:
            frequencies.store = store
            pool_with(store)
        frequencies.store = None
        renderer()

    return BatchJob(
        prepare=prepare, open_store=lambda: _outbox_store(config, clock=clock), sending=_sending(config, clock=clock), warm=warm,
        start_batch=start_batch,
    )


class _BatchRead:
    """What the store holds of a batch's readers, read in a few queries: their current period's digest status and history.

    Per reader these were five queries (85 us of a digest's ~2.5 ms at 10,000 readers).
    """

    def __init__(self) -> None:
        self.periods: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        self.histories: dict[str, ReaderHistory] = {}

    def read(self, config: Config, store: Store, readers: Sequence[Subscriber], *, now: dt.datetime) -> None:
        self.periods = {reader.id: period_of(now=now, timezone=reader.timezone, frequency=reader.frequency) for reader in readers}
        self.statuses = store.digest_statuses(self.periods) if readers else {}
        self.histories = reader_histories(config, store, list(self.periods), now=now) if readers else {}

    def status(self, store: Store, reader: str, period: str) -> str | None:
        if self.periods.get(reader) == period:
            return self.statuses.get(reader)
        return store.digest_status(reader, period)  # not in this batch, or its period turned meanwhile

    def history(self, reader: str) -> ReaderHistory | None:
        """Read at the batch's start, moments before: its earlier ``since`` can only add papers sent, never drop one."""
        return self.histories.get(reader)


def _prepare_digest(
    config: Config, store: Store, subscriber: Subscriber, *, request: DigestRequest, renderer: Callable[[], Renderer],
    now: dt.datetime, pool: Callable[[], Pool], signer: LinkSigner | None, batch: _BatchRead, overdue: str | None = None,
) -> Prepared:
    """This reader's digest for the current period, rendered into a message when due (not yet stored).

    ``overdue``: an earlier period whose digest died with the process sending it: that one is built, now.
    """
    if overdue is not None:
        period = overdue
    else:
        period = period_of(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency)
        earlier = batch.status(store, subscriber.id, period)
        if earlier not in (None, "empty", "cancelled", "rebuild"):  # an empty period may still get papers that arrived later
            status, detail = _EARLIER[earlier]
            return Prepared(DigestOutcome(subscriber.id, status, period, detail=detail))
        if not request.ignore_time and not is_due(now=now, timezone=subscriber.timezone, frequency=subscriber.frequency, send_at=subscriber.send_at):
            return Prepared(DigestOutcome(subscriber.id, "not-due", period, detail=f"due at {subscriber.send_at:%H:%M} {subscriber.timezone}"))
    try:
        digest = build_digest(config, store, subscriber, now=now, pool=pool(), history=batch.history(subscriber.id))
        if not digest.items and subscriber.quiet_days == "skip":
            if not request.dry_run:
                store.record_empty(subscriber=subscriber.id, period=period, considered=digest.considered)
            return Prepared(DigestOutcome(subscriber.id, "empty", period, considered=digest.considered, detail="nothing new passed the threshold"))
        links = links_for(config, digest, signer=signer)
        email = renderer().render(digest, branding=branding_of(config), links=links)
        message_id, message = build_message(email, envelope=envelope_for(config, subscriber, links), now=now)
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
_EARLIER_LINES = set(_EARLIER.values())
