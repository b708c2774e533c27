"""Unsubscribes and per-paper feedback, as the web app records them and the pipeline reads them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._util import _dicts


class ReaderActions:
    """Unsubscribes and feedback, as the web app records them and the pipeline reads them.

    A mixin of Store (it uses Store's transaction, _query and _now), kept apart to keep each part short.
    """

    def unsubscribe(self, subscriber: str, *, via: str) -> bool:
        """Record it (idempotent: True only the first time) and cancel digests still waiting to be sent."""
        with self.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO unsubscribed (subscriber, at, via) VALUES (?, ?, ?)", [subscriber, self._now(), via])
            conn.execute("DELETE FROM sent_items WHERE digest_id IN (SELECT id FROM digests WHERE subscriber = ? AND status = 'queued')", [subscriber])
            conn.execute("DELETE FROM messages WHERE digest_id IN (SELECT id FROM digests WHERE subscriber = ? AND status = 'queued')", [subscriber])
            conn.execute(
                "UPDATE digests SET status = 'cancelled', last_error = 'unsubscribed', next_attempt_at = NULL"
                " WHERE subscriber = ? AND status = 'queued'",
                [subscriber],
            )
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
        return self.feedback_of_each([subscriber]).get(subscriber, {})

    def feedback_of_each(self, subscribers: Sequence[str]) -> dict[str, dict[str, str]]:
        """feedback_of for many readers in one query (a batch's); readers without feedback are left out."""
        found: dict[str, dict[str, str]] = {}
        rows = self._query(
            f"SELECT subscriber, entry_id, kind FROM feedback WHERE subscriber IN ({', '.join('?' * len(subscribers))})"
            " ORDER BY subscriber, at, entry_id",
            list(subscribers),
        )
        for subscriber, entry_id, kind in rows:
            found.setdefault(subscriber, {})[entry_id] = kind
        return found

    # --- subscriber files as last read (subscribers.ParsedCache) ------------------

    def cached_subscribers(self, stamps: dict[str, str]) -> dict[str, str]:
        """subscriber -> checked form, for the files (subscriber -> stamp) remembered with that same stamp; one query."""
        rows = self._query(
            "SELECT subscriber, stamp, checked FROM subscriber_cache WHERE subscriber IN (SELECT value FROM json_each(?))",
            [json.dumps(list(stamps))],
        )
        return {subscriber: checked for subscriber, stamp, checked in rows if stamps[subscriber] == stamp}

    def remember_subscribers(self, checked: list[tuple[str, str, str]]) -> None:
        """(subscriber, stamp, checked form) of files just read, in one transaction."""
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO subscriber_cache (subscriber, stamp, checked) VALUES (?, ?, ?)", checked)

    def forget_subscribers_except(self, subscriber_ids: list[str]) -> None:
        """Drop what is remembered of files that are gone (after a run that read every file)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM subscriber_cache WHERE subscriber NOT IN (SELECT value FROM json_each(?))", [json.dumps(subscriber_ids)])

    def cancel_rebuilds_except(self, subscriber_ids: list[str]) -> None:
        """Cancel the digests waiting to be built again (give_back_digest) for readers not among ``subscriber_ids``, whose
        file is gone: nothing is left to build them from, and their papers were given back when they were marked."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE digests SET status = 'cancelled' WHERE status = 'rebuild' AND subscriber NOT IN (SELECT value FROM json_each(?))",
                [json.dumps(subscriber_ids)],
            )
