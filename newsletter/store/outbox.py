"""The outbox: one ``digests`` row per subscriber and period, its rendered message in ``messages`` until sent, and ``sent_items``.

A digest is queued with its papers already marked as sent (atomically), then
claimed, sent and finished; one that bounced or finally failed gives its
papers back.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from ._util import _dicts, _iso


@dataclass(frozen=True)
class QueuedDigest:
    """A row of the outbox waiting to be sent; its message bytes are read only when it is sent (message_of)."""

    id: int
    subscriber: str
    period: str
    recipient: str
    attempts: int
    status: str  # "queued", or "sending" when a process claimed it (and may have died)
    claimed_by: str | None  # "sending": who claimed it; "queued" without its bytes: the process that queued it
    claimed_at: str | None
    kept: bool = True  # its message bytes are in the outbox; False: only its queuing process has them (queue_digests)


@dataclass(frozen=True)
class NewDigest:
    """A rendered digest to queue: its message bytes and the (entry id, score) of its papers, best first."""

    subscriber: str
    period: str
    recipient: str
    subject: str
    message_id: str
    message: bytes
    items: tuple[tuple[str, float], ...]
    considered: int


@dataclass(frozen=True)
class DeliveryOutcome:
    """One delivery attempt, as finish_digest records it."""

    max_attempts: int
    retry_after: int  # seconds; doubled for each earlier attempt
    reply: str | None = None  # the server's reply
    error: str | None = None  # None: sent
    permanent: bool = False  # a 5xx for the recipient: bounced, never retried


class Digests:
    """The digests waiting to go out, going out, and gone, as the pipeline and the outbox record them.

    A mixin of Store (it uses Store's transaction, _query, _now and _clock), kept apart to keep each part short.
    """

    def digest_status(self, subscriber: str, period: str) -> str | None:
        row = self._query("SELECT status FROM digests WHERE subscriber = ? AND period = ?", [subscriber, period]).fetchone()
        return row[0] if row else None

    def digest_statuses(self, periods: dict[str, str]) -> dict[str, str]:
        """digest_status for many readers (reader -> period) in one query (a batch's); readers without a row are left out."""
        rows = self._query(
            f"SELECT subscriber, period, status FROM digests WHERE subscriber IN ({', '.join('?' * len(periods))})"
            f" AND period IN ({', '.join('?' * len(set(periods.values())))})",
            [*periods, *set(periods.values())],
        )
        return {subscriber: status for subscriber, period, status in rows if periods[subscriber] == period}

    def queue_digest(
        self, *, subscriber: str, period: str, recipient: str, subject: str, message_id: str, message: bytes,
        items: list[tuple[str, float]], considered: int,
    ) -> int | None:
        """Store one rendered digest as queued and its items as sent, atomically (see queue_digests)."""
        return self.queue_digests([NewDigest(subscriber, period, recipient, subject, message_id, message, tuple(items), considered)])[0]

    def queue_digests(self, digests: Sequence[NewDigest], *, sender: str | None = None) -> list[int | None]:
        """Store a batch of rendered digests as queued, and their items as sent, in one transaction.

        An "empty", "cancelled" or "rebuild" row for the period gives way (new papers arrived later that
        day). Each digest's id, or None where the period already has a real digest (another
        process got there first). One commit for the batch: a run of 100,000 digests does not
        pay a commit per digest, and a crash leaves all or none of a batch.

        ``sender`` (host:pid): that process sends the batch at once from the bytes it holds, so they
        are not stored; the rows name it as their holder. It keeps the bytes of any it does not send
        (finish_digest, release_digest, keep_messages). If it dies first, give_back_digest lets the
        next run build those digests again. Storing 30 KB per message only to delete it a moment
        later was about 8% of a run's CPU time (10,000 readers).
        """
        now = self._now()
        ids: list[int | None] = []
        with self.transaction() as conn:
            _drop_sent_messages(conn)
            for new in digests:
                ids.append(_insert_digest(conn, new, now, sender=sender))
        return ids

    def keep_messages(self, messages: dict[int, bytes]) -> None:
        """Store the bytes of queued digests this process holds and will not send now (a stop, a server down, a bug),
        and let them go: any later run sends them."""
        with self.transaction() as conn:
            for digest_id, message in messages.items():
                _keep_message(conn, digest_id, message)

    def give_back_digest(self, digest: QueuedDigest) -> bool:
        """A queued or claimed digest whose bytes died with the process that held them: marked "rebuild" for its period,
        its papers given back; the next run builds it again at once (rebuild_periods). False if the row changed meanwhile."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE digests SET claimed_by = NULL, claimed_at = NULL, next_attempt_at = NULL, status ="
                " CASE WHEN subscriber IN (SELECT subscriber FROM unsubscribed) THEN 'cancelled' ELSE 'rebuild' END"
                " WHERE id = ? AND status = ? AND claimed_at IS ? AND NOT EXISTS (SELECT 1 FROM messages WHERE digest_id = digests.id)",
                [digest.id, digest.status, digest.claimed_at],
            )
            if cursor.rowcount:
                conn.execute("DELETE FROM sent_items WHERE digest_id = ?", [digest.id])
        return bool(cursor.rowcount)

    def rebuild_periods(self) -> dict[str, str]:
        """subscriber -> the (earliest) period whose digest is to be built again (give_back_digest)."""
        return dict(self._query("SELECT subscriber, min(period) FROM digests WHERE status = 'rebuild' GROUP BY subscriber").fetchall())

    def forget_sent_messages(self) -> None:
        """Drop the bytes of the messages already sent (queue_digests does it batch by batch; this at a run's end)."""
        with self.transaction() as conn:
            _drop_sent_messages(conn)

    def record_empty(self, *, subscriber: str, period: str, considered: int) -> None:
        """Remember that nothing matched (status shows it); a later run this period may still send."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO digests (subscriber, period, status, items, considered, attempts, created_at)"
                " VALUES (?, ?, 'empty', 0, ?, 0, ?)"
                " ON CONFLICT (subscriber, period) DO UPDATE SET status = 'empty', considered = excluded.considered,"
                " created_at = excluded.created_at WHERE status IN ('empty', 'rebuild')",
                [subscriber, period, considered, self._now()],
            )

    def pending_digests(
        self, subscribers: Iterable[str] | None = None, *, ids: Iterable[int] | None = None, due_by: dt.datetime | None = None,
    ) -> list[QueuedDigest]:
        """Queued digests whose (re)try time has come, and ones claimed for sending (their sender may have died).

        ``subscribers`` or ``ids`` narrow it to those readers or those digests.
        """
        due = _iso(due_by or self._clock())
        where, params = "(status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) OR status = 'sending')", [due]
        for column, chosen in (("subscriber", subscribers), ("id", ids)):
            if chosen is not None:
                values = list(chosen)
                where += f" AND {column} IN ({', '.join('?' * len(values))})"
                params += values
        cursor = self._query(
            "SELECT id, subscriber, period, recipient, attempts, status, claimed_by, claimed_at,"
            " EXISTS (SELECT 1 FROM messages WHERE digest_id = digests.id)"
            f" FROM digests WHERE {where} ORDER BY id",
            params,
        )
        return [QueuedDigest(*row[:8], kept=bool(row[8])) for row in cursor]

    def message_of(self, digest_id: int) -> bytes:
        """The stored message, read one at a time: a batch never holds every digest's bytes in memory."""
        row = self._query("SELECT message FROM messages WHERE digest_id = ?", [digest_id]).fetchone()
        if row is None:  # deliver_outbox gives such a row back instead; only a bug gets here
            raise StoreError(f"{self.path}: digest {digest_id} has no stored message (its sending process held it)")
        return bytes(row[0])

    def next_retry_at(self) -> dt.datetime | None:
        row = self._query("SELECT min(next_attempt_at) FROM digests WHERE status = 'queued'").fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def claim_digest(self, digest: QueuedDigest, *, owner: str, after: tuple[int, DeliveryOutcome] | None = None) -> str:
        """Mark it "sending" by ``owner`` in one transaction: "claimed"; "cancelled" if the reader has
        unsubscribed meanwhile (nothing goes to them; the papers are given back); "taken" if another
        process changed the row since it was read.

        ``after``: the digest this process sent just before, recorded in the same transaction
        (finish_digest's work): one commit per message instead of two, and still never more
        than one claimed message whose fate is unrecorded.
        """
        with self.transaction() as conn:
            if after is not None:
                _record_attempt(conn, *after, now=self._clock())
            cursor = conn.execute(
                "UPDATE digests SET status = 'cancelled', last_error = 'unsubscribed', next_attempt_at = NULL,"
                " claimed_by = NULL, claimed_at = NULL"
                " WHERE id = ? AND status IN ('queued', 'sending') AND subscriber IN (SELECT subscriber FROM unsubscribed)",
                [digest.id],
            )
            if cursor.rowcount:
                conn.execute("DELETE FROM sent_items WHERE digest_id = ?", [digest.id])
                conn.execute("DELETE FROM messages WHERE digest_id = ?", [digest.id])
                return "cancelled"
            cursor = conn.execute(
                "UPDATE digests SET status = 'sending', claimed_by = ?, claimed_at = ?"
                " WHERE id = ? AND status = ? AND claimed_at IS ?",
                [owner, self._now(), digest.id, digest.status, digest.claimed_at],
            )
        return "claimed" if cursor.rowcount == 1 else "taken"

    def finish_digest(self, digest_id: int, outcome: DeliveryOutcome, *, message: bytes | None = None) -> str:
        """Record one attempt; returns the new status: "sent", "queued" (to retry), "failed" or "bounced".

        A transient failure waits ``retry_after`` doubled for each earlier attempt;
        a digest that bounced or finally failed gives its papers back, so a later
        digest can carry them. ``message``: its bytes, stored with a failure when the outbox
        has not kept them (a retry, or `retry` after a bounce, sends them).
        """
        with self.transaction() as conn:
            status = _record_attempt(conn, digest_id, outcome, now=self._clock())
            if message is not None and status != "sent":
                _keep_message(conn, digest_id, message)
            return status

    def release_digest(self, digest_id: int, *, error: str | None = None, message: bytes | None = None) -> None:
        """Give a claimed digest back to the queue without counting an attempt (the run stopped, or the server was unavailable).

        ``error`` (why it was not sent) is kept as its last error, for `status`; ``message`` as for finish_digest.
        """
        with self.transaction() as conn:
            if message is not None:
                _keep_message(conn, digest_id, message)
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
            " sum(status = 'queued' AND attempts = 0 OR status = 'rebuild') AS queued,"
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


_INSERT_DIGEST = (
    "INSERT INTO digests (subscriber, period, status, recipient, subject, message_id, items,"
    " considered, attempts, created_at, next_attempt_at, item_ids, claimed_by, claimed_at)"
    " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)"
)


def _record_attempt(conn: sqlite3.Connection, digest_id: int, outcome: DeliveryOutcome, *, now: dt.datetime) -> str:
    """finish_digest's work, inside the caller's transaction."""
    if outcome.error is None:
        conn.execute(
            "UPDATE digests SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, last_reply = ?,"
            " next_attempt_at = NULL WHERE id = ?",
            [_iso(now), outcome.reply, digest_id],
        )
        return "sent"  # its bytes go with the next batch queued (_drop_sent_messages)
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


def _drop_sent_messages(conn: sqlite3.Connection) -> None:
    """The bytes of sent digests are not needed (sent_items keeps what each carried): the database stays small.

    They are dropped a batch at a time, in the transaction that queues the next batch, whose messages
    take the pages just freed: a third less written per message than freeing them one by one as each is sent.
    """
    conn.execute(
        "DELETE FROM messages WHERE digest_id IN"
        " (SELECT digest_id FROM messages JOIN digests ON digests.id = messages.digest_id WHERE digests.status = 'sent')"
    )


def _keep_message(conn: sqlite3.Connection, digest_id: int, message: bytes) -> None:
    """Store a digest's bytes (if not stored yet) and release it from the process that held them."""
    conn.execute(  # not for a digest cancelled (its reader unsubscribed) or gone meanwhile
        "INSERT OR IGNORE INTO messages (digest_id, message) SELECT ?, ? WHERE EXISTS"
        " (SELECT 1 FROM digests WHERE id = ? AND status IN ('queued', 'sending', 'failed', 'bounced'))",
        [digest_id, message, digest_id],
    )
    conn.execute("UPDATE digests SET claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'", [digest_id])


def _insert_digest(conn: sqlite3.Connection, new: NewDigest, now: str, *, sender: str | None = None) -> int | None:
    row = [new.subscriber, new.period, new.recipient, new.subject, new.message_id, len(new.items),
           new.considered, now, now, json.dumps([entry_id for entry_id, _ in new.items]), sender, now if sender else None]
    try:
        cursor = conn.execute(_INSERT_DIGEST, row)
    except sqlite3.IntegrityError:  # the period has a row: an "empty", "cancelled" or "rebuild" one gives way, a real digest not
        gone = "SELECT id FROM digests WHERE subscriber = ? AND period = ? AND status IN ('empty', 'cancelled', 'rebuild')"
        conn.execute(f"DELETE FROM messages WHERE digest_id IN ({gone})", [new.subscriber, new.period])
        if not conn.execute(f"DELETE FROM digests WHERE id IN ({gone})", [new.subscriber, new.period]).rowcount:
            return None
        cursor = conn.execute(_INSERT_DIGEST, row)
    digest_id = int(cursor.lastrowid or 0)
    if sender is None:
        conn.execute("INSERT INTO messages (digest_id, message) VALUES (?, ?)", [digest_id, new.message])
    conn.executemany(
        "INSERT OR IGNORE INTO sent_items (subscriber, entry_id, digest_id, rank, score, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(new.subscriber, entry_id, digest_id, rank, score, now) for rank, (entry_id, score) in enumerate(new.items, 1)],
    )
    return digest_id
