"""The tables, version by version: Store._migrate runs the upgrades a database still lacks, in one transaction.

Each step takes the sqlite-utils Database; ``UPGRADES[n]`` brings a database
at ``PRAGMA user_version`` n to n + 1.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

SCHEMA_VERSION = 7


def create_v1(db: sqlite_utils.Database) -> None:
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


def upgrade_to_v2(db: sqlite_utils.Database) -> None:
    """The outbox learns retries with backoff, the server's reply, and which papers a digest carried."""
    digests = db["digests"]
    digests.add_column("next_attempt_at", str)  # a retrying digest waits until then
    digests.add_column("last_reply", str)  # the server's reply to the last attempt ("250 2.0.0 queued as ...")
    digests.add_column("item_ids", str)  # JSON list: its papers, to give back or take again on retry


def upgrade_to_v3(db: sqlite_utils.Database) -> None:
    """Readers act from the email: unsubscribes, and "more like this" / "not for me" per paper."""
    db["unsubscribed"].create({"subscriber": str, "at": str, "via": str}, pk="subscriber")
    db["feedback"].create(
        {"subscriber": str, "entry_id": str, "kind": str, "at": str},
        pk=("subscriber", "entry_id"), foreign_keys=[("entry_id", "entries", "id")],
    )


def upgrade_to_v4(db: sqlite_utils.Database) -> None:
    """Entries.save_entries indexes each batch's new rows itself; an update re-indexes only a changed text.

    The per-row insert trigger made the FTS index most of a batch's cost; and every
    merge (a new source's categories, a new upvote count) re-indexed an unchanged text.
    The delete trigger stays, so the index follows a deleted row whoever deletes it.
    """
    db.execute("DROP TRIGGER IF EXISTS entries_ai")
    db.execute("DROP TRIGGER IF EXISTS entries_au")
    db.execute(
        """CREATE TRIGGER entries_au AFTER UPDATE ON entries
           WHEN old.title IS NOT new.title OR old.summary IS NOT new.summary BEGIN
             INSERT INTO entries_fts (entries_fts, rowid, title, summary) VALUES ('delete', old.rowid, old.title, old.summary);
             INSERT INTO entries_fts (rowid, title, summary) VALUES (new.rowid, new.title, new.summary);
           END"""
    )


def upgrade_to_v5(db: sqlite_utils.Database) -> None:
    """Subscriber files as last read and checked, by stamp (size, mtime, defaults): unchanged files are not parsed again."""
    db["subscriber_cache"].create({"subscriber": str, "stamp": str, "checked": str}, pk="subscriber", not_null={"stamp", "checked"})


def upgrade_to_v6(db: sqlite_utils.Database) -> None:
    """A queued digest's message bytes move to a table of their own, ``messages``.

    SQLite rewrites a whole row on UPDATE, a 30 KB message's overflow pages included: claiming a
    digest and marking it sent (two small status changes) each copied its message into the WAL,
    a third of a run's outbox time. A digest's row is now small; its message row is deleted once sent.
    """
    db["messages"].create({"digest_id": int, "message": bytes}, pk="digest_id", not_null={"message"}, foreign_keys=[("digest_id", "digests", "id")])
    db.execute("INSERT INTO messages (digest_id, message) SELECT id, message FROM digests"
               " WHERE message IS NOT NULL AND status NOT IN ('sent', 'cancelled', 'empty')")
    db.execute("ALTER TABLE digests DROP COLUMN message")


def upgrade_to_v7(db: sqlite_utils.Database) -> None:
    """What each reader was sent, by time: a digest needs only the papers sent in the last ``lookback_days``.

    Without it, finding them walked everything the reader was ever sent and looked each paper up
    (a year of daily digests: 3,650 rows, 4.5 ms per reader per day; Entries.sent_ids_since).
    """
    db["sent_items"].create_index(["subscriber", "created_at"], if_not_exists=True)


UPGRADES: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    create_v1, upgrade_to_v2, upgrade_to_v3, upgrade_to_v4, upgrade_to_v5, upgrade_to_v6, upgrade_to_v7,
)
assert len(UPGRADES) == SCHEMA_VERSION, "one upgrade per schema version"
