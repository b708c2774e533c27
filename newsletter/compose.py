"""A reader's digest, composed: the candidate pool, the ranking, the links and the envelope; the shared plumbing.

Part of the pipeline layer (it wires store, rank, render and deliver): ``pipeline``
(the commands) and ``daily`` (one run's digests, in batches) both build on it.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .clock import period_of, utc_now
from .config import Config
from .deliver import (
    Envelope,
    MaildirTransport,
    SmtpSettings,
    SmtpTransport,
    Transport,
)
from .links import LESS, MORE, DigestLinks, LinkSigner, digest_links, signer_from_env
from .models import (
    CorpusStats,
    Digest,
    Subscriber,
)
from .pool import Pool
from .rank import RankSettings, rank
from .render import Branding
from .store import Store
from .subscribers import (
    Defaults,
    LoadedSubscribers,
    load_subscribers,
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


def defaults_of(config: Config) -> Defaults:
    return Defaults(timezone=config.timezone, send_at=config.send_at, max_items=config.max_items, quiet_days=config.quiet_days)


def subscribers_of(config: Config) -> LoadedSubscribers:
    return load_subscribers(config.subscribers, defaults=defaults_of(config))


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


@dataclass(frozen=True)
class ReaderHistory:
    """What the store holds of a reader that ranking needs, read for a whole batch of readers at once."""

    sent: set[str]  # the papers of the lookback period already sent to them
    feedback: dict[str, str]  # "more like this" / "not for me" clicks from earlier emails


def reader_histories(config: Config, store: Store, readers: Sequence[str], *, now: dt.datetime) -> dict[str, ReaderHistory]:
    """Each reader's history in two queries: a batch's readers do not pay a query each."""
    sent = store.sent_ids_since_each(readers, since=now - dt.timedelta(days=config.lookback_days))
    feedback = store.feedback_of_each(readers)
    return {reader: ReaderHistory(sent.get(reader, set()), feedback.get(reader, {})) for reader in readers}


def build_digest(
    config: Config, store: Store, subscriber: Subscriber, *, now: dt.datetime, pool: Pool | None = None,
    limit: int | None = None, include_below_threshold: bool = False, history: ReaderHistory | None = None,
) -> Digest:
    """``history``: the reader's, read with their batch's (reader_histories at ``now``); else read here."""
    pool = pool if pool is not None else candidate_pool(config, store, now=now)
    history = history or reader_histories(config, store, [subscriber.id], now=now)[subscriber.id]
    already_sent, feedback = history.sent, history.feedback
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


def make_transport(config: Config) -> Transport:
    if config.delivery_method == "smtp":
        s = config.smtp
        return SmtpTransport(SmtpSettings(
            host=s.host, port=s.port, security=s.security, username=s.username, password_env=s.password_env,
            timeout=s.timeout, ca_file=s.ca_file,
        ))
    return MaildirTransport(config.maildir)


def branding_of(config: Config) -> Branding:
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


def envelope_for(config: Config, subscriber: Subscriber, links: DigestLinks) -> Envelope:
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
