"""Frozen dataclasses passed between the stages (ingest, store, rank, render, deliver)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One paper (or post), identified by its canonical id (see ingest.canonical_id)."""

    id: str
    title: str
    link: str
    summary: str = ""  # plain text, HTML already stripped
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    published: dt.datetime | None = None
    version: int | None = None  # arXiv version, so a revision can update the row
    upvotes: int | None = None  # daily-papers votes, when the source has them
    pdf_url: str | None = None
    comment: str | None = None
    guid: str | None = None
    source: str = ""  # the feed this copy came from
    sources: tuple[str, ...] = ()  # every feed that carried it (filled by the store)
    first_seen: dt.datetime | None = None  # filled by the store


@dataclass(frozen=True)
class Topic:
    name: str
    keywords: tuple[str, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class Subscriber:
    id: str  # the file's stem
    email: str
    name: str
    timezone: str
    send_at: dt.time
    frequency: str = "daily"  # "daily" or "weekly:mon" .. "weekly:sun"
    max_items: int = 10
    quiet_days: str = "skip"  # "skip" or "note": what a day with nothing new sends
    topics: tuple[Topic, ...] = ()
    exclude: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    liked: tuple[str, ...] = ()
    path: Path | None = None


@dataclass(frozen=True)
class CorpusStats:
    """Document frequencies over every stored entry, so IDF does not swing with one day's pool."""

    size: int
    document_frequency: Mapping[str, int]  # keyword as the subscriber wrote it -> entries containing it


@dataclass(frozen=True)
class Reason:
    """Why an entry was picked: a topic and the terms that matched, a followed author, ..."""

    kind: str  # "topic" | "author" | "category" | "liked"
    label: str  # topic name, author name, category, liked entry id
    terms: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "topic":
            return f"{self.label}: " + ", ".join(f"“{term}”" for term in self.terms)
        if self.kind == "author":
            return f"by {self.label}, whom you follow"
        if self.kind == "category":
            return f"in {self.label}"
        return f"like a paper you liked: {self.label}"


@dataclass(frozen=True)
class ScoredEntry:
    entry: Entry
    score: float
    reasons: tuple[Reason, ...] = ()  # the strongest topic first
    highlights: tuple[str, ...] = ()  # the exact words of title/abstract that matched, to mark in the email

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(reason.label for reason in self.reasons if reason.kind == "topic")


@dataclass(frozen=True)
class Digest:
    """What one subscriber gets for one period, before rendering."""

    subscriber: Subscriber
    items: tuple[ScoredEntry, ...]
    considered: int  # how many new candidates were ranked
    period: str  # "2026-11-26" (daily) or "2026-W48" (weekly)
    created_at: dt.datetime


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class FeedReport:
    """The outcome of ingesting one feed."""

    name: str
    new: int = 0
    duplicate: int = 0
    updated: int = 0
    skipped: int = 0  # entries with neither title nor link, reported not stored
    not_modified: bool = False  # HTTP 304
    warning: str | None = None  # readable but ill-formed (feedparser bozo)
    error: str | None = None  # nothing could be read

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class DigestOutcome:
    """What happened to one subscriber's digest in a run."""

    subscriber: str
    status: str  # "sent" | "queued" | "retrying" | "unavailable" | "bounced" | "failed" | "empty" | "not-due" | "already-sent" | "gave-up" | "unsubscribed" | "dry-run"
    period: str = ""
    items: int = 0
    considered: int = 0
    detail: str = ""


@dataclass(frozen=True)
class RunReport:
    """A whole ingest or digest run: one line per feed / subscriber, plus file problems."""

    feeds: tuple[FeedReport, ...] = ()
    digests: tuple[DigestOutcome, ...] = ()
    problems: tuple[str, ...] = field(default=())  # bad subscriber files etc.

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not any(feed.failed for feed in self.feeds)
            # a server that cannot be reached, secured or logged into needs someone to look, like a failure
            and not any(outcome.status in ("failed", "bounced", "unavailable") for outcome in self.digests)
        )
