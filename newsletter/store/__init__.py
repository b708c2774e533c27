"""The only module that touches SQLite (through sqlite-utils).

Tables: ``entries`` (primary key = canonical id, the contract other tools
read), ``entry_sources`` (every feed that carried an entry), ``entries_fts``
(FTS5, porter stemming, over title and summary), ``feeds`` (conditional-GET
state and health), ``digests`` (the outbox: one row per subscriber and
period), ``messages`` (a queued digest's rendered message, until it is sent)
and ``sent_items`` (what each subscriber has received, so nothing is sent twice).

Writes run in explicit ``BEGIN IMMEDIATE`` transactions so a crash leaves
either all or none of a batch, and two processes never interleave half-writes.

The package keeps each part short: ``schema`` (the tables, version by
version), ``entries`` (feeds and entries), ``outbox`` (digests and sent
items) and ``readers`` (unsubscribes and feedback) are mixins of ``Store``,
which owns the connection, transactions and migrations.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import StoreError
from ._util import _iso, _store_error
from .entries import Entries, SaveCounts
from .outbox import DeliveryOutcome, Digests, NewDigest, QueuedDigest
from .readers import ReaderActions
from .schema import SCHEMA_VERSION, UPGRADES

__all__ = ["BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "DeliveryOutcome", "NewDigest", "QueuedDigest", "ReaderActions", "SaveCounts", "Store"]

BUSY_TIMEOUT_MS = 30_000


class Store(Entries, Digests, ReaderActions):
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
            self.db = sqlite_utils.Database(conn)
            self._refuse_foreign()  # before WAL mode, which rewrites the file's header
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL's usual setting: a commit survives a killed process (the outbox's promise) without an fsync each;
            # only a power cut can roll back the last commits. set_durable(True) restores fsync per commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise _store_error(path, exc) from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the database: {exc.strerror}") from None

    def set_durable(self, durable: bool) -> None:
        """fsync every commit (True) while messages leave for a mail server: a power cut then never forgets one sent."""
        self.db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        self._begin_immediate(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise _store_error(self.path, exc) from None
            raise

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, waiting up to BUSY_TIMEOUT_MS for another writer (a digest worker, `ingest`).

        SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries, far longer than a
        writer here holds the lock (well under a millisecond): two digest workers lost a tenth of
        their time to it. This one tries again after 50 microseconds, doubling to at most 5 ms.
        """
        deadline, pause = time.monotonic() + BUSY_TIMEOUT_MS / 1000, 0.00005
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise _store_error(self.path, exc) from None
                    if time.monotonic() >= deadline:
                        raise StoreError(f"{self.path}: database is busy ({exc}); try again") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """A read; a damaged file becomes a StoreError naming it."""
        try:
            return self.db.execute(sql, list(params))
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

    def _now(self) -> str:
        return _iso(self._clock())

    # --- schema (the tables themselves: schema.py) ---------------------------

    def _refuse_foreign(self) -> None:
        """A version-0 file with tables belongs to another program (a new file has none): never write into it."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] != 0:
            return
        foreign = [row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 3")]
        if foreign:
            self.db.conn.close()
            raise StoreError(
                f"{self.path}: not a newsletter database (it holds {', '.join(foreign)}); it was left as it is — "
                "point newsletter.database elsewhere"
            )

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: database schema {version} is newer than this program ({SCHEMA_VERSION}); upgrade newsletter")
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            for upgrade in UPGRADES[version:]:  # schema.py: UPGRADES[n] takes a version-n database to n + 1
                upgrade(self.db)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
