"""The only module that touches SQLite (through sqlite-utils).

Tables: ``entries`` (primary key = canonical id, the contract other tools
read), ``entry_sources`` (every feed that carried an entry), ``entries_fts``
(FTS5, porter stemming, over title and summary), ``feeds`` (conditional-GET
state and health), ``digests`` (the outbox: one row per subscriber and
period, with the rendered message) and ``sent_items`` (what each subscriber
has received, so nothing is sent twice).

Writes run in explicit ``BEGIN IMMEDIATE`` transactions so a crash leaves
either all or none of a batch, and two processes never interleave half-writes.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import StoreError
from .models import Entry

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class SaveCounts:
    new: int = 0
    duplicate: int = 0
    updated: int = 0


@dataclass(frozen=True)
class QueuedDigest:
    id: int
    subscriber: str
    period: str
    recipient: str
    message: bytes
    attempts: int
    status: str  # "queued", or "sending" when a process claimed it (and may have died)
    claimed_by: str | None
    claimed_at: str | None


class ReaderActions:
    """Unsubscribes and feedback, as the web app records them and the pipeline reads them.

    A mixin of Store (it uses Store's transaction, _query and _now), kept apart to keep each part short.
    """

    def unsubscribe(self, subscriber: str, *, via: str) -> bool:
        """Record it (idempotent: True only the first time) and cancel digests still waiting to be sent."""
        with self.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO unsubscribed (subscriber, at, via) VALUES (?, ?, ?)", [subscriber, self._now(), via])
            conn.execute("DELETE FROM sent_items WHERE digest_id IN (SELECT id FROM digests WHERE subscriber = ? AND status = 'queued')", [subscriber])
            conn.execute(
                "UPDATE digests SET status = 'cancelled', last_error = 'unsubscribed', next_attempt_at = NULL"
                " WHERE subscriber = ? AND status = 'queued'",
                [subscriber],
            )
        return cursor.rowcount == 1

    def cancel_if_unsubscribed(self, digest_id: int) -> bool:
        """Just before sending: a reader who unsubscribed while the run was building gets nothing (True: cancelled)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE digests SET status = 'cancelled', last_error = 'unsubscribed', next_attempt_at = NULL,"
                " claimed_by = NULL, claimed_at = NULL"
                " WHERE id = ? AND status IN ('queued', 'sending') AND subscriber IN (SELECT subscriber FROM unsubscribed)",
                [digest_id],
            )
            if cursor.rowcount:
                conn.execute("DELETE FROM sent_items WHERE digest_id = ?", [digest_id])
        return cursor.rowcount == 1

    def resubscribe(self, subscriber: str) -> bool:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM unsubscribed WHERE subscriber = ?", [subscriber]).rowcount == 1

    def unsubscribed(self) -> dict[str, dict[str, str]]:
        """subscriber -> {"at", "via"}."""
        return {row["subscriber"]: row for row in _dicts(self._query("SELECT subscriber, at, via FROM unsubscribed ORDER BY subscriber"))}

    def record_feedback(self, subscriber: str, entry_id: str, *, kind: str) -> bool:
        """"more" or "less" for one paper; the last click wins, the same click twice counts once. True if it changed."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO feedback (subscriber, entry_id, kind, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (subscriber, entry_id) DO UPDATE SET kind = excluded.kind, at = excluded.at WHERE kind != excluded.kind",
                [subscriber, entry_id, kind, self._now()],
            )
        return cursor.rowcount == 1

    def feedback_of(self, subscriber: str) -> dict[str, str]:
        """entry id -> "more" | "less", oldest first."""
        rows = self._query("SELECT entry_id, kind FROM feedback WHERE subscriber = ? ORDER BY at, entry_id", [subscriber])
        return {entry_id: kind for entry_id, kind in rows}


class Store(ReaderActions):
    def __init__(self, path: Path, *, clock: Callable[[], dt.datetime], create: bool = True) -> None:
        self.path = path
        self._clock = clock
        if path.exists() and not path.is_file():
            raise StoreError(f"{path}: database path is not a file")
        if not create and not path.exists():
            raise StoreError(f"{path}: no database yet; run `newsletter ingest` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self.db = sqlite_utils.Database(conn)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise _store_error(path, exc) from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the database: {exc.strerror}") from None

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: database is busy ({exc}); try again") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise _store_error(self.path, exc) from None
            raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """A read; a damaged file becomes a StoreError naming it."""
        try:
            return self.db.execute(sql, list(params))
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

    def _now(self) -> str:
        return _iso(self._clock())

    # --- schema -------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: database schema {version} is newer than this program ({SCHEMA_VERSION}); upgrade newsletter")
        if version == SCHEMA_VERSION:
            return
        upgrades = [self._create_v1, self._upgrade_to_v2, self._upgrade_to_v3]
        with self.transaction():
            for upgrade in upgrades[version:]:
                upgrade()
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _create_v1(self) -> None:
        db = self.db
        db["entries"].create(
            {
                "id": str, "title": str, "link": str, "summary": str, "authors": str, "categories": str,
                "published": str, "version": int, "upvotes": int, "pdf_url": str, "comment": str,
                "first_seen": str, "updated_at": str,
            },
            pk="id", not_null={"title", "link", "first_seen"},
        )
        db["entries"].create_index(["first_seen"])
        db["entry_sources"].create(
            {"entry_id": str, "feed": str, "guid": str, "first_seen": str},
            pk=("entry_id", "feed"), foreign_keys=[("entry_id", "entries", "id")],
        )
        db["feeds"].create(
            {
                "name": str, "url": str, "etag": str, "last_modified": str, "last_fetch": str,
                "last_success": str, "last_status": str, "last_error": str,
                "new": int, "duplicate": int, "updated": int, "skipped": int,
            },
            pk="name",
        )
        db["digests"].create(
            {
                "id": int, "subscriber": str, "period": str, "status": str, "recipient": str,
                "subject": str, "message_id": str, "message": bytes, "items": int, "considered": int,
                "attempts": int, "created_at": str, "sent_at": str, "last_error": str,
                "claimed_by": str, "claimed_at": str,
            },
            pk="id", not_null={"subscriber", "period", "status"},
        )
        db["digests"].create_index(["subscriber", "period"], unique=True)
        db["digests"].create_index(["status"])
        db["sent_items"].create(
            {"subscriber": str, "entry_id": str, "digest_id": int, "rank": int, "score": float, "created_at": str},
            pk=("subscriber", "entry_id"), foreign_keys=[("digest_id", "digests", "id")],
        )
        db["entries"].enable_fts(["title", "summary"], tokenize="porter", create_triggers=True)

    def _upgrade_to_v2(self) -> None:
        """The outbox learns retries with backoff, the server's reply, and which papers a digest carried."""
        digests = self.db["digests"]
        digests.add_column("next_attempt_at", str)  # a retrying digest waits until then
        digests.add_column("last_reply", str)  # the server's reply to the last attempt ("250 2.0.0 queued as ...")
        digests.add_column("item_ids", str)  # JSON list: its papers, to give back or take again on retry

    def _upgrade_to_v3(self) -> None:
        """Readers act from the email: unsubscribes, and "more like this" / "not for me" per paper."""
        self.db["unsubscribed"].create({"subscriber": str, "at": str, "via": str}, pk="subscriber")
        self.db["feedback"].create(
            {"subscriber": str, "entry_id": str, "kind": str, "at": str},
            pk=("subscriber", "entry_id"), foreign_keys=[("entry_id", "entries", "id")],
        )

    # --- feeds --------------------------------------------------------------

    def feed_state(self, name: str, *, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) from the last successful fetch of this feed at this URL.

        A feed whose url changed in config.toml starts afresh: the old validators
        would make the new server answer 304 for content never fetched.
        """
        row = self._query("SELECT etag, last_modified FROM feeds WHERE name = ? AND url = ?", [name, url]).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def record_fetch(
        self, name: str, *, url: str, status: str, error: str | None = None,
        etag: str | None = None, last_modified: str | None = None, counts: SaveCounts = SaveCounts(), skipped: int = 0,
    ) -> None:
        now = self._now()
        ok = error is None
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO feeds (name, url, last_fetch, last_status, last_error, etag, last_modified,
                                      last_success, new, duplicate, updated, skipped)
                   VALUES (:name, :url, :now, :status, :error, :etag, :lm, :success, :new, :dup, :upd, :skipped)
                   ON CONFLICT(name) DO UPDATE SET
                     url = :url, last_fetch = :now, last_status = :status, last_error = :error,
                     etag = CASE WHEN :ok THEN :etag ELSE etag END,
                     last_modified = CASE WHEN :ok THEN :lm ELSE last_modified END,
                     last_success = CASE WHEN :ok THEN :now ELSE last_success END,
                     new = :new, duplicate = :dup, updated = :upd, skipped = :skipped""",
                {
                    "name": name, "url": url, "now": now, "status": status, "error": error, "ok": ok,
                    "etag": etag, "lm": last_modified, "success": now if ok else None,
                    "new": counts.new, "dup": counts.duplicate, "upd": counts.updated, "skipped": skipped,
                },
            )

    def feeds(self) -> list[dict[str, Any]]:
        return _dicts(self._query("SELECT * FROM feeds ORDER BY name"))

    # --- entries ------------------------------------------------------------

    def save_entries(self, entries: Iterable[Entry]) -> SaveCounts:
        """Insert new entries, merge known ones (a new source, a newer version); one transaction."""
        new = duplicate = updated = 0
        now = self._now()
        with self.transaction() as conn:
            for entry in entries:
                existing = self._entry_row(entry.id)
                if existing is None:
                    conn.execute(
                        "INSERT INTO entries (id, title, link, summary, authors, categories, published, version,"
                        " upvotes, pdf_url, comment, first_seen, updated_at)"
                        " VALUES (:id, :title, :link, :summary, :authors, :categories, :published, :version,"
                        " :upvotes, :pdf_url, :comment, :now, :now)",
                        {**_entry_to_row(entry), "now": now},
                    )
                    new += 1
                else:
                    merged = _merge(existing, entry)
                    if merged != existing:
                        conn.execute(
                            "UPDATE entries SET title = :title, link = :link, summary = :summary, authors = :authors,"
                            " categories = :categories, published = :published, version = :version, upvotes = :upvotes,"
                            " pdf_url = :pdf_url, comment = :comment, updated_at = :now WHERE id = :id",
                            {**merged, "now": now},
                        )
                        updated += 1
                    else:
                        duplicate += 1
                conn.execute(
                    "INSERT OR IGNORE INTO entry_sources (entry_id, feed, guid, first_seen) VALUES (?, ?, ?, ?)",
                    [entry.id, entry.source, entry.guid, now],
                )
        return SaveCounts(new=new, duplicate=duplicate, updated=updated)

    def _entry_row(self, entry_id: str) -> dict[str, Any] | None:
        rows = _dicts(self._query(
            "SELECT id, title, link, summary, authors, categories, published, version, upvotes, pdf_url, comment"
            " FROM entries WHERE id = ?",
            [entry_id],
        ))
        return rows[0] if rows else None

    def entries_since(self, since: dt.datetime) -> list[Entry]:
        """Entries first seen since ``since``: a run's candidate pool."""
        return self._select_entries("e.first_seen >= ?", [_iso(since)])

    def sent_ids_since(self, subscriber: str, *, since: dt.datetime) -> set[str]:
        """Which of the entries first seen since ``since`` this subscriber has already received."""
        cursor = self._query(
            "SELECT s.entry_id FROM sent_items s JOIN entries e ON e.id = s.entry_id WHERE s.subscriber = ? AND e.first_seen >= ?",
            [subscriber, _iso(since)],
        )
        return {row[0] for row in cursor}

    def entries_by_id(self, ids: Iterable[str]) -> list[Entry]:
        wanted = list(ids)
        if not wanted:
            return []
        return self._select_entries(f"e.id IN ({', '.join('?' * len(wanted))})", wanted)

    def _select_entries(self, where: str, params: list[Any]) -> list[Entry]:
        cursor = self._query(
            "SELECT e.*, (SELECT group_concat(feed, char(31)) FROM entry_sources s WHERE s.entry_id = e.id) AS sources"
            f" FROM entries e WHERE {where} ORDER BY e.first_seen DESC, e.id",
            params,
        )
        return [_row_to_entry(row) for row in _dicts(cursor)]

    def document_frequencies(self, phrases: Iterable[str]) -> dict[str, int]:
        """How many stored entries contain each phrase (FTS5, porter stemming): the corpus side of IDF."""
        counts = {}
        for phrase in set(phrases):
            query = '"' + phrase.replace('"', '""') + '"'
            counts[phrase] = self._query("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH ?", [query]).fetchone()[0]
        return counts

    def sources_of(self, entry_id: str) -> list[str]:
        return [row[0] for row in self._query("SELECT feed FROM entry_sources WHERE entry_id = ? ORDER BY feed", [entry_id])]

    def count_entries(self) -> int:
        return int(self._query("SELECT count(*) FROM entries").fetchone()[0])

    # --- digests (the outbox) -----------------------------------------------

    def digest_status(self, subscriber: str, period: str) -> str | None:
        row = self._query("SELECT status FROM digests WHERE subscriber = ? AND period = ?", [subscriber, period]).fetchone()
        return row[0] if row else None

    def queue_digest(
        self, *, subscriber: str, period: str, recipient: str, subject: str, message_id: str, message: bytes,
        items: list[tuple[str, float]], considered: int,
    ) -> int | None:
        """Store the rendered digest as queued and its items as sent, atomically.

        An "empty" row for the period gives way (new papers arrived later that
        day). Returns the digest id, or None if the period already has a real
        digest (another process got there first).
        """
        now = self._now()
        with self.transaction() as conn:
            conn.execute("DELETE FROM digests WHERE subscriber = ? AND period = ? AND status IN ('empty', 'cancelled')", [subscriber, period])
            try:
                cursor = conn.execute(
                    "INSERT INTO digests (subscriber, period, status, recipient, subject, message_id, message, items,"
                    " considered, attempts, created_at, next_attempt_at, item_ids)"
                    " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    [subscriber, period, recipient, subject, message_id, message, len(items), considered, now, now,
                     json.dumps([entry_id for entry_id, _ in items])],
                )
            except sqlite3.IntegrityError:
                return None
            digest_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT OR IGNORE INTO sent_items (subscriber, entry_id, digest_id, rank, score, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(subscriber, entry_id, digest_id, rank, score, now) for rank, (entry_id, score) in enumerate(items, 1)],
            )
        return digest_id

    def record_empty(self, *, subscriber: str, period: str, considered: int) -> None:
        """Remember that nothing matched (status shows it); a later run this period may still send."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO digests (subscriber, period, status, items, considered, attempts, created_at)"
                " VALUES (?, ?, 'empty', 0, ?, 0, ?)"
                " ON CONFLICT (subscriber, period) DO UPDATE SET considered = excluded.considered,"
                " created_at = excluded.created_at WHERE status = 'empty'",
                [subscriber, period, considered, self._now()],
            )

    def pending_digests(self, subscribers: Iterable[str] | None = None, *, due_by: dt.datetime | None = None) -> list[QueuedDigest]:
        """Queued digests whose (re)try time has come, and ones claimed for sending (their sender may have died)."""
        due = _iso(due_by or self._clock())
        where, params = "(status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) OR status = 'sending')", [due]
        if subscribers is not None:
            chosen = list(subscribers)
            where += f" AND subscriber IN ({', '.join('?' * len(chosen))})"
            params += chosen
        cursor = self._query(
            "SELECT id, subscriber, period, recipient, message, attempts, status, claimed_by, claimed_at"
            f" FROM digests WHERE {where} ORDER BY id",
            params,
        )
        return [QueuedDigest(*row) for row in cursor]

    def next_retry_at(self) -> dt.datetime | None:
        row = self._query("SELECT min(next_attempt_at) FROM digests WHERE status = 'queued'").fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def claim_digest(self, digest: QueuedDigest, *, owner: str) -> bool:
        """Mark it "sending" by ``owner``, unless another process changed it since it was read."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE digests SET status = 'sending', claimed_by = ?, claimed_at = ?"
                " WHERE id = ? AND status = ? AND claimed_at IS ?",
                [owner, self._now(), digest.id, digest.status, digest.claimed_at],
            )
        return cursor.rowcount == 1

    def finish_digest(self, digest_id: int, outcome: DeliveryOutcome) -> str:
        """Record one attempt; returns the new status: "sent", "queued" (to retry), "failed" or "bounced".

        A transient failure waits ``retry_after`` doubled for each earlier attempt;
        a digest that bounced or finally failed gives its papers back, so a later
        digest can carry them.
        """
        now = self._clock()
        with self.transaction() as conn:
            if outcome.error is None:
                conn.execute(
                    "UPDATE digests SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, last_reply = ?,"
                    " next_attempt_at = NULL WHERE id = ?",
                    [_iso(now), outcome.reply, digest_id],
                )
                return "sent"
            attempts = conn.execute("SELECT attempts + 1 FROM digests WHERE id = ?", [digest_id]).fetchone()[0]
            status = "bounced" if outcome.permanent else "failed" if attempts >= outcome.max_attempts else "queued"
            retry_at = now + dt.timedelta(seconds=outcome.retry_after * 2 ** (attempts - 1)) if status == "queued" else None
            conn.execute(
                "UPDATE digests SET status = ?, attempts = ?, last_error = ?, last_reply = ?, next_attempt_at = ?,"
                " claimed_by = NULL, claimed_at = NULL WHERE id = ?",
                [status, attempts, outcome.error, outcome.reply, _iso(retry_at) if retry_at else None, digest_id],
            )
            if status in ("failed", "bounced"):
                conn.execute("DELETE FROM sent_items WHERE digest_id = ?", [digest_id])
            return status

    def release_digest(self, digest_id: int, *, error: str | None = None) -> None:
        """Give a claimed digest back to the queue without counting an attempt (the run stopped, or the server was unavailable).

        ``error`` (why it was not sent) is kept as its last error, for `status`.
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE digests SET status = 'queued', claimed_by = NULL, claimed_at = NULL, last_error = coalesce(?, last_error)"
                " WHERE id = ? AND status = 'sending'",
                [error, digest_id],
            )

    def requeue_failed(self, *, subscriber: str | None = None) -> list[tuple[str, str, str]]:
        """Failed and bounced digests back to the queue: (subscriber, period, "requeued" | why not).

        A digest whose papers have meanwhile gone out in another digest stays as
        it is: sending it now would give the reader those papers twice. So does
        one of a reader who unsubscribed since.
        """
        where, params = "status IN ('failed', 'bounced')", []
        if subscriber is not None:
            where, params = where + " AND subscriber = ?", [subscriber]
        results = []
        with self.transaction() as conn:
            rows = conn.execute(f"SELECT id, subscriber, period, item_ids, created_at FROM digests WHERE {where} ORDER BY id", params).fetchall()
            gone = {row[0] for row in conn.execute("SELECT subscriber FROM unsubscribed")}
            for digest_id, owner, period, item_ids, created_at in rows:
                if owner in gone:  # unsubscribed since: nothing more goes to them
                    results.append((owner, period, "not requeued: the reader unsubscribed"))
                    continue
                items = json.loads(item_ids or "[]")
                taken = conn.execute(
                    f"SELECT count(*) FROM sent_items WHERE subscriber = ? AND entry_id IN ({', '.join('?' * len(items))})",
                    [owner, *items],
                ).fetchone()[0] if items else 0
                if taken:
                    results.append((owner, period, f"not requeued: {taken} of its {len(items)} papers went out in a later digest"))
                    continue
                conn.execute(
                    "UPDATE digests SET status = 'queued', attempts = 0, next_attempt_at = ?, claimed_by = NULL, claimed_at = NULL"
                    " WHERE id = ?",
                    [self._now(), digest_id],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO sent_items (subscriber, entry_id, digest_id, rank, score, created_at) VALUES (?, ?, ?, ?, NULL, ?)",
                    [(owner, entry_id, digest_id, rank, created_at) for rank, entry_id in enumerate(items, 1)],
                )
                results.append((owner, period, "requeued"))
        return results

    def digest_summary(self, *, days: int = 14) -> list[dict[str, Any]]:
        """Per period: how many digests are sent, queued, retrying, sending, bounced, failed or empty; the last error."""
        return _dicts(self._query(
            "SELECT period,"
            " sum(status = 'sent') AS sent,"
            " sum(status = 'queued' AND attempts = 0) AS queued,"
            " sum(status = 'queued' AND attempts > 0) AS retrying,"
            " sum(status = 'sending') AS sending,"
            " sum(status = 'bounced') AS bounced,"
            " sum(status = 'failed') AS failed,"
            " sum(status = 'empty') AS empty,"
            " sum(status = 'cancelled') AS cancelled,"
            " (SELECT d2.last_error FROM digests d2 WHERE d2.period = d.period AND d2.last_error IS NOT NULL"
            "   ORDER BY d2.id DESC LIMIT 1) AS last_error"
            " FROM digests d GROUP BY period ORDER BY period DESC LIMIT ?",
            [days],
        ))


@dataclass(frozen=True)
class DeliveryOutcome:
    """One delivery attempt, as finish_digest records it."""

    max_attempts: int
    retry_after: int  # seconds; doubled for each earlier attempt
    reply: str | None = None  # the server's reply
    error: str | None = None  # None: sent
    permanent: bool = False  # a 5xx for the recipient: bounced, never retried


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreError(f"{path}: database is busy ({exc}); try again")
    return StoreError(f"{path}: the database is damaged or not a newsletter database ({exc}); it was left as it is — restore a backup or point newsletter.database elsewhere")


# --- row <-> Entry -------------------------------------------------------------

_LIST_SEPARATOR = "\x1f"


def _entry_to_row(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id, "title": entry.title, "link": entry.link, "summary": entry.summary,
        "authors": json.dumps(list(entry.authors), ensure_ascii=False),
        "categories": json.dumps(list(entry.categories), ensure_ascii=False),
        "published": entry.published.isoformat() if entry.published else None,
        "version": entry.version, "upvotes": entry.upvotes, "pdf_url": entry.pdf_url, "comment": entry.comment,
    }


def _row_to_entry(row: dict[str, Any]) -> Entry:
    return Entry(
        id=row["id"], title=row["title"], link=row["link"], summary=row["summary"] or "",
        authors=tuple(json.loads(row["authors"] or "[]")), categories=tuple(json.loads(row["categories"] or "[]")),
        published=dt.datetime.fromisoformat(row["published"]) if row["published"] else None,
        version=row["version"], upvotes=row["upvotes"], pdf_url=row["pdf_url"], comment=row["comment"],
        sources=tuple(sorted((row.get("sources") or "").split(_LIST_SEPARATOR))) if row.get("sources") else (),
        first_seen=dt.datetime.fromisoformat(row["first_seen"]) if row.get("first_seen") else None,
    )


def _merge(existing: dict[str, Any], entry: Entry) -> dict[str, Any]:
    """The stored row after seeing ``entry`` again, from the same or another feed.

    A newer arXiv version replaces the text; an older or unversioned copy only
    fills what is missing. Categories are united, upvotes take the latest count.
    """
    incoming = _entry_to_row(entry)
    merged = dict(existing)
    newer = entry.version is not None and (existing["version"] is None or entry.version > existing["version"])
    for key in ("title", "summary", "authors", "link", "comment"):
        empty = existing[key] in (None, "", "[]")
        if incoming[key] not in (None, "", "[]") and (newer or empty):
            merged[key] = incoming[key]
    if newer:
        merged["version"] = entry.version
    categories = list(dict.fromkeys(json.loads(existing["categories"] or "[]") + list(entry.categories)))
    merged["categories"] = json.dumps(categories, ensure_ascii=False)
    if entry.upvotes is not None:
        merged["upvotes"] = entry.upvotes
    for key in ("pdf_url", "published"):
        merged[key] = existing[key] or incoming[key]
    return merged

