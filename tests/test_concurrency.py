"""Readers and writers at once: preview, status and ingest while a digest run is sending.

A real `newsletter digest --all` process delivers to a real, slow SMTP server
(tests/smtp_server.py) and is held mid-batch (the server holds one 250) while
other CLI processes read and write the same database. WAL and the busy timeout
mean nobody sees "database is locked", and nothing is lost: every digest is
sent exactly once and every new entry of the concurrent ingest is stored.

Also: a database that is damaged in ways test_outbox.py does not cover
(truncated, a directory in its place, an unreadable WAL-less non-SQLite file)
is one line on stderr and is never overwritten.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import smtp_server
from conftest import EXAMPLES, SUBSCRIBER_ADA, Deployment
from smtp_server import PASSWORD, WAIT, MailServer

from newsletter import pipeline
from newsletter.config import Config

smtp_ca, smtp_tls = smtp_server.smtp_ca, smtp_server.smtp_tls  # fixtures

PASSWORD_ENV = "TEST_SMTP_PASSWORD"
LINK_SECRET = "a-link-signing-secret-for-concurrency-tests-42"
READERS = 12
HELD = 5  # the server holds the 250 of this message: the run is mid-batch, for sure, while the others run
LOCKED = ("database is locked", "database is busy", "Traceback")


def reader_toml(number: int) -> str:
    return (
        f'email = "reader{number:02d}@example.org"\nname = "Reader {number}"\ntimezone = "UTC"\nmax_items = 3\n\n'
        '[[topics]]\nname = "Agents"\nkeywords = ["agent", "reasoning", "language model", "learning"]\n'
    )


def cli(config: Config, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--config", str(config.path), *args]


def env() -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: PASSWORD, "TEST_LINK_SECRET": LINK_SECRET}


def spawn(config: Config, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli(config, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=WAIT * 3)
    return process.returncode, out, err


def query(database: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(database, timeout=WAIT)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def deploy(deployment: Deployment, server: MailServer) -> Config:
    """READERS readers of the cs.AI feed, ingested now (the CLI runs on the real clock); a second feed not yet ingested."""
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    for number in range(READERS):
        deployment.add_subscriber(f"reader{number:02d}", reader_toml(number))
    deployment.header += 'base_url = "https://papers.example.org"\n'
    deployment.extra = server.smtp_toml(password_env=PASSWORD_ENV) + '\n[web]\nsecret_env = "TEST_LINK_SECRET"\n'
    pipeline.ingest_feeds(deployment.config())
    deployment.add_feed("jwst", EXAMPLES / "arxiv-jwst.rss.xml")  # ingested only while the digest run sends
    return deployment.config()


def test_preview_status_and_ingest_while_a_digest_run_is_sending(
    deployment: Deployment, smtp_tls: MailServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("TEST_LINK_SECRET", LINK_SECRET)
    config = deploy(deployment, smtp_tls)
    entries_before = query(config.database, "SELECT count(*) FROM entries")[0][0]
    # What the jwst feed holds, from a separate sequential ingest of the same file (the reference).
    (tmp_path / "reference").mkdir()
    reference = Deployment(tmp_path / "reference")
    reference.add_feed("jwst", EXAMPLES / "arxiv-jwst.rss.xml")
    pipeline.ingest_feeds(reference.config())
    jwst_ids = {row[0] for row in query(reference.config().database, "SELECT entry_id FROM entry_sources WHERE feed = 'jwst'")}
    assert jwst_ids

    handler = smtp_tls.handler
    handler.delay = 0.05  # slow mode: every message takes a while
    handler.hold_data_from = HELD
    sender = spawn(config, "digest", "--all")
    others: list[tuple[list[str], int, str, str]] = []
    try:
        handler.wait_for(lambda h: h.count() >= HELD, what=f"the digest run to be mid-batch (message {HELD})")
        assert sender.poll() is None  # held on message HELD's reply: certainly still running
        # All at once, while the sender is mid-batch: two readers and a writer.
        started = [(args, spawn(config, *args)) for args in (["status"], ["preview", "reader03", "--text"], ["ingest", "--feed", "jwst"])]
        others += [(args, *finish(process)) for args, process in started]
        assert sender.poll() is None  # still held: everything above overlapped the run
        handler.hold_data_from = None  # the run goes on, slowly; readers keep reading meanwhile
        while sender.poll() is None:
            others.append((["status"], *finish(spawn(config, "status"))))
            if len(others) > 50:
                break
    finally:
        handler.hold_data_from = None
        code, out, err = finish(sender)

    assert code == 0, (out, err)
    assert not any(word in out + err for word in LOCKED), err
    for args, other_code, other_out, other_err in others:
        assert other_code == 0, (args, other_out, other_err)
        assert not any(word in other_out + other_err for word in LOCKED), (args, other_err)
    assert "jwst" in others[2][2]  # ingest reported the feed

    # Every digest sent exactly once, and recorded as sent.
    recipients = Counter(handler.recipients())
    assert recipients == Counter({f"reader{n:02d}@example.org": 1 for n in range(READERS)}), recipients
    statuses = query(config.database, "SELECT subscriber, status FROM digests")
    assert len(statuses) == READERS and {status for _, status in statuses} == {"sent"}, statuses
    # Every entry of the concurrent ingest stored, nothing of the earlier ones lost.
    stored = {row[0] for row in query(config.database, "SELECT entry_id FROM entry_sources WHERE feed = 'jwst'")}
    assert stored == jwst_ids
    entries_after = query(config.database, "SELECT count(*) FROM entries")[0][0]
    new_ids = jwst_ids - {row[0] for row in query(config.database, "SELECT entry_id FROM entry_sources WHERE feed = 'cs-ai'")}
    assert entries_after == entries_before + len(new_ids)


def test_two_ingests_and_a_status_at_once_lose_nothing(deployment: Deployment) -> None:
    """Writers against writers: two ingest processes of different feeds at once both store everything."""
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_feed("jwst", EXAMPLES / "arxiv-jwst.rss.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    config = deployment.config()
    pipeline.ingest_feeds(config, only="cs-ai")  # the database exists, so status can read it
    query(config.database, "DELETE FROM entry_sources")
    query(config.database, "DELETE FROM entries")
    runs = [spawn(config, "ingest", "--feed", name) for name in ("cs-ai", "jwst", "cs-ai", "jwst")] + [spawn(config, "status")]
    results = [finish(process) for process in runs]
    for code, out, err in results:
        assert code == 0 and not any(word in out + err for word in LOCKED), (out, err)
    by_feed = dict(query(config.database, "SELECT feed, count(*) FROM entry_sources GROUP BY feed"))
    reference = {}
    for name in ("cs-ai", "jwst"):
        root = deployment.root / f"ref-{name}"
        root.mkdir()
        ref = Deployment(root)
        ref.add_feed(name, EXAMPLES / ("arxiv-cs.AI.atom.xml" if name == "cs-ai" else "arxiv-jwst.rss.xml"))
        pipeline.ingest_feeds(ref.config())
        reference[name] = query(ref.config().database, "SELECT count(*) FROM entry_sources")[0][0]
    assert by_feed == reference


# --- a damaged or unusable database: one line, never overwritten -------------------------------------------

COMMANDS = (["ingest"], ["status"], ["digest", "--all"], ["preview", "ada", "--text"], ["rank", "ada"])


def _run(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), *args],
        capture_output=True, text=True, timeout=WAIT * 3,
    )


def _assert_one_line_and_untouched(deployment: Deployment, snapshot: object, read: object) -> None:
    for command in COMMANDS:
        result = _run(deployment, *command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "newsletter.db" in lines[0] and "Traceback" not in result.stderr, (command, result.stderr)
        assert read() == snapshot, command  # type: ignore[operator]


@pytest.fixture
def ingested(deployment: Deployment) -> Deployment:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    pipeline.ingest_feeds(deployment.config())
    return deployment


def test_a_truncated_database_is_one_line_and_left_as_it_is(ingested: Deployment) -> None:
    database = ingested.root / "newsletter.db"
    data = database.read_bytes()
    assert len(data) > 8192
    database.write_bytes(data[: len(data) // 2 + 100])  # cut mid-page, as a full disk or a bad copy would
    for name in ("newsletter.db-wal", "newsletter.db-shm"):
        (ingested.root / name).unlink(missing_ok=True)
    truncated = database.read_bytes()
    _assert_one_line_and_untouched(ingested, truncated, database.read_bytes)


def test_a_directory_where_the_database_should_be_is_one_line_and_left_alone(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    database = deployment.root / "newsletter.db"
    database.mkdir()
    (database / "keep.txt").write_text("mine", encoding="utf-8")
    _assert_one_line_and_untouched(deployment, ["keep.txt"], lambda: sorted(p.name for p in database.iterdir()))


def test_a_database_in_a_directory_that_is_a_file_is_one_line(deployment: Deployment) -> None:
    """newsletter.database = "data/newsletter.db" where data is a file: even root cannot create the database there."""
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.header = '[newsletter]\ndatabase = "data/newsletter.db"\n'
    (deployment.root / "data").write_text("not a directory", encoding="utf-8")
    for command in COMMANDS:
        result = _run(deployment, *command)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "newsletter.db" in lines[0], (command, result.stderr)
    assert (deployment.root / "data").read_text(encoding="utf-8") == "not a directory"


def test_a_sqlite_database_of_another_program_is_one_line_and_left_as_it_is(deployment: Deployment) -> None:
    """A valid SQLite file, not ours (newsletter.database pointed at the wrong file): never migrated into ours."""
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    database = deployment.root / "newsletter.db"
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    original = database.read_bytes()
    _assert_one_line_and_untouched(deployment, original, database.read_bytes)
