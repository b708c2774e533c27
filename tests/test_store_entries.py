"""Store.save_entries on batches: the dedupe rules entry by entry, the FTS index in step with the rows, v3 -> v4."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from conftest import NOON, fixed_clock

from newsletter.errors import StoreError
from newsletter.models import Entry
from newsletter.store import SCHEMA_VERSION, SaveCounts, Store
from newsletter.store.entries import BATCH_CACHE_KIB
from newsletter.store.schema import UPGRADES


def paper(version: int | None = 1, *, summary: str = "A quokka learns to tally.", source: str = "arxiv", **fields: object) -> Entry:
    values: dict[str, object] = {
        "id": "arxiv:2407.12345", "title": "Counting quokkas", "link": "https://arxiv.org/abs/2407.12345",
        "summary": summary, "version": version, "source": source, "categories": ("cs.LG",),
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def open_store(path: Path) -> Store:
    return Store(path, clock=fixed_clock(NOON))


def assert_index_matches_rows(store: Store) -> None:
    """FTS5's integrity check against the content table: raises if an entry is missing, stale or extra in the index."""
    store.db.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)")


def test_a_batch_counts_as_if_each_entry_were_saved_in_turn(tmp_path: Path) -> None:
    with open_store(tmp_path / "db.sqlite") as store:
        counts = store.save_entries([paper(1), paper(1), paper(2, summary="A quokka learns to add."), paper(1, source="hf")])
        assert counts == SaveCounts(new=1, duplicate=2, updated=1)
        [entry] = store.entries_by_id(["arxiv:2407.12345"])
        assert (entry.version, entry.summary, entry.sources) == (2, "A quokka learns to add.", ("arxiv", "hf"))
        assert_index_matches_rows(store)
        assert store.document_frequencies(["add", "tally"]) == {"add": 1, "tally": 0}


def test_the_index_follows_new_revised_and_merged_entries_across_batches(tmp_path: Path) -> None:
    other = paper(None, id="doi:10.1234/wombat", title="Wombats", link="https://example.org/wombat", summary="Cubic droppings.")
    with open_store(tmp_path / "db.sqlite") as store:
        assert store.save_entries([paper(1), other]) == SaveCounts(new=2)
        assert store.save_entries([paper(2, summary="A quokka learns to add."), other]) == SaveCounts(duplicate=1, updated=1)
        # a merge that leaves the text alone (a new category, an upvote count) keeps the index as it is
        assert store.save_entries([paper(1, categories=("cs.AI",), upvotes=7)]) == SaveCounts(updated=1)
        assert_index_matches_rows(store)
        assert store.document_frequencies(["quokka", "add", "droppings", "tally"]) == {"quokka": 1, "add": 1, "droppings": 1, "tally": 0}


def test_an_empty_batch_writes_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path / "db.sqlite") as store:
        assert store.save_entries([]) == SaveCounts()
        assert store.count_entries() == 0


def _v3_database(path: Path) -> None:
    """A database as the previous release left it: schema 3, entries indexed by sqlite-utils' triggers."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    for upgrade in UPGRADES[:3]:
        upgrade(db)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO entries (id, title, link, summary, authors, categories, version, first_seen, updated_at)"
        " VALUES ('arxiv:2401.00001', 'Old wombats', 'https://arxiv.org/abs/2401.00001', 'Stored before v4.', '[]', '[]', 1, ?, ?)",
        [NOON.isoformat(), NOON.isoformat()],
    )
    conn.close()


def test_a_v3_database_is_upgraded_and_keeps_its_index(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _v3_database(path)
    with open_store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert store.db.execute("SELECT count(*) FROM subscriber_cache").fetchone()[0] == 0  # v5 too
        assert store.save_entries([paper(1), paper(2, id="arxiv:2401.00001", title="Old wombats", summary="Revised in v4.")]) == SaveCounts(
            new=1, updated=1
        )
        assert_index_matches_rows(store)
        assert store.document_frequencies(["wombats", "quokka", "revised", "stored"]) == {"wombats": 1, "quokka": 1, "revised": 1, "stored": 0}
        assert [entry.first_seen for entry in store.entries_by_id(["arxiv:2401.00001"])] == [dt.datetime.fromisoformat(NOON.isoformat())]


def test_a_batch_gets_a_roomy_page_cache_and_the_connection_its_own_back_even_when_the_batch_fails(tmp_path: Path) -> None:
    with open_store(tmp_path / "n.db") as store:
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        store.save_entries([paper()])
        store.db.conn.set_trace_callback(None)
        written = [n for n, sql in enumerate(statements) if sql.startswith("INSERT INTO entries ")]
        roomy = statements.index(f"PRAGMA cache_size = -{BATCH_CACHE_KIB}")
        assert roomy < written[0] < statements.index("COMMIT") < statements.index("PRAGMA cache_size = -2000")
        assert store.db.execute("PRAGMA cache_size").fetchone()[0] == -2000  # SQLite's default, the connection's own
        with pytest.raises(StoreError, match="NOT NULL"):
            store.save_entries([paper(id="arxiv:2407.99999", title=None)])
        assert store.db.execute("PRAGMA cache_size").fetchone()[0] == -2000
        assert store.count_entries() == 1
        assert_index_matches_rows(store)


def test_papers_sent_are_found_by_time_even_when_the_clock_was_set_back_between_ingest_and_digest(tmp_path: Path) -> None:
    clock = [NOON]
    with Store(tmp_path / "db.sqlite", clock=lambda: clock[0]) as store:
        store.save_entries([paper(id="arxiv:2401.00001"), paper(id="arxiv:2401.00002")])  # first seen at noon
        clock[0] = NOON - dt.timedelta(days=1)  # the clock set back a day before the digest went out
        store.queue_digest(
            subscriber="ada", period="p1", recipient="ada@example.org", subject="s", message_id="<1@x>", message=b"m",
            items=[("arxiv:2401.00001", 1.0)], considered=2,
        )
        clock[0] = NOON - dt.timedelta(days=30)  # and an old digest, sent long before either paper existed in this store
        store.queue_digest(
            subscriber="ada", period="p0", recipient="ada@example.org", subject="s", message_id="<0@x>", message=b"m",
            items=[("arxiv:2401.00002", 1.0)], considered=2,
        )
        since = NOON - dt.timedelta(hours=1)
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        assert store.sent_ids_since("ada", since=since) == {"arxiv:2401.00001"}  # never offered again
        store.db.conn.set_trace_callback(None)
        plan = " ".join(str(row) for row in store.db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}"))
        assert "idx_sent_items_subscriber_created_at" in plan, plan  # not a walk through all the reader was ever sent
