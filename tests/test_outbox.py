"""The outbox: queued before sending, claimed by one process, retried a bounded number of times."""

from __future__ import annotations

import dataclasses
import datetime as dt
import mailbox
import socket
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import sqlite_utils
from conftest import (
    EXAMPLES,
    NOON,
    SUBSCRIBER_ADA,
    SUBSCRIBER_GRACE,
    Deployment,
    fixed_clock,
)

from newsletter import daily, pipeline
from newsletter.clock import period_of
from newsletter.deliver import MaildirTransport
from newsletter.config import Config
from newsletter.errors import DeliveryError, ServerUnavailable
from newsletter.models import DigestOutcome
from newsletter.outbox import CLAIM_LEASE, DeliveryPolicy, RateLimiter, deliver_outbox
from newsletter.store import NewDigest, Store
from newsletter.store.schema import UPGRADES


class DownTransport:
    """A mail server that is down: every send fails (a side effect passed in, as in production)."""

    def __init__(self) -> None:
        self.attempts = 0

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        self.attempts += 1
        raise DeliveryError(f"smtp 127.0.0.1: sending to {recipient} failed: connection refused")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _deployment(deployment: Deployment) -> Deployment:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON))
    return deployment


def _row(config_db: Path, subscriber: str) -> tuple[str, int, str | None]:
    with Store(config_db, clock=lambda: NOON) as store:
        return store.db.execute("SELECT status, attempts, last_error FROM digests WHERE subscriber = ?", [subscriber]).fetchone()


def test_failures_are_retried_with_backoff_then_given_up_and_papers_given_back(deployment: Deployment) -> None:
    deployment.extra = '\n[delivery]\nmax_attempts = 3\nretry_after = "1m"\n'
    config = _deployment(deployment).config()
    down = DownTransport()
    request = pipeline.DigestRequest(subscriber_ids=("grace",), ignore_time=True)
    first = pipeline.run_digests(config, request, clock=fixed_clock(NOON), transport=down)
    assert [o.status for o in first.digests] == ["retrying"] and "will retry" in first.digests[0].detail
    assert _row(config.database, "grace")[:2] == ("queued", 1)
    pipeline.run_digests(config, request, clock=fixed_clock(NOON + dt.timedelta(seconds=59)), transport=down)
    assert down.attempts == 1  # the first retry waits retry_after
    pipeline.run_digests(config, request, clock=fixed_clock(NOON + dt.timedelta(minutes=1)), transport=down)
    pipeline.run_digests(config, request, clock=fixed_clock(NOON + dt.timedelta(minutes=2)), transport=down)
    assert down.attempts == 2  # the second waits twice as long
    last = pipeline.run_digests(config, request, clock=fixed_clock(NOON + dt.timedelta(minutes=3)), transport=down)
    # one outcome for the reader: what happened to the digest waiting in the outbox (it is sent, or tried, first)
    assert [o.status for o in last.digests] == ["failed"] and "gave up after 3 attempts" in last.digests[0].detail
    status, attempts, error = _row(config.database, "grace")
    assert (status, attempts) == ("failed", 3) and "connection refused" in (error or "")
    pipeline.run_digests(config, request, clock=fixed_clock(NOON + dt.timedelta(hours=5)), transport=down)
    assert down.attempts == 3  # no retry after giving up
    # The papers were never delivered, so they are offered again.
    assert len(pipeline.rank_for(config, "grace", clock=fixed_clock(NOON))) == 10
    again = pipeline.run_digests(config, request, clock=fixed_clock(NOON), transport=down)
    assert [o.status for o in again.digests] == ["gave-up"]


def test_a_run_for_one_subscriber_leaves_the_others_queue_alone(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON), transport=DownTransport())
    later = fixed_clock(NOON + dt.timedelta(minutes=5))
    report = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=later)
    assert [(o.subscriber, o.status) for o in report.digests] == [("ada", "sent")]
    assert _row(config.database, "grace")[0] == "queued"


def test_only_one_process_can_claim_a_queued_digest(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(NOON), transport=DownTransport())
    with Store(config.database, clock=lambda: NOON) as one, Store(config.database, clock=lambda: NOON) as two:
        (seen_by_one,) = one.pending_digests(due_by=NOON + dt.timedelta(hours=1))
        (seen_by_two,) = two.pending_digests(due_by=NOON + dt.timedelta(hours=1))
        assert one.claim_digest(seen_by_one, owner="host-a:1") == "claimed"
        assert two.claim_digest(seen_by_two, owner="host-b:2") == "taken"


def test_a_send_abandoned_by_a_dead_process_is_resent_once(deployment: Deployment, tmp_path: Path) -> None:
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(NOON), transport=DownTransport())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Store(config.database, clock=lambda: NOON) as store:
        (pending,) = store.pending_digests(due_by=NOON + dt.timedelta(hours=1))
        assert store.claim_digest(pending, owner=f"{socket.gethostname()}:{dead.stdout.strip()}") == "claimed"
    report = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(NOON))
    assert [o.status for o in report.digests] == ["sent"]  # found in the outbox and resent; nothing new queued
    assert len(mailbox.Maildir(config.maildir, create=False)) == 1


def test_a_send_in_flight_in_a_live_process_is_left_alone(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(NOON), transport=DownTransport())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with Store(config.database, clock=lambda: NOON) as store:
            (pending,) = store.pending_digests(due_by=NOON + dt.timedelta(hours=1))
            assert store.claim_digest(pending, owner=f"{socket.gethostname()}:{live.pid}") == "claimed"
        report = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(NOON))
        assert [o.status for o in report.digests] == ["queued"]
        assert not config.maildir.exists() or len(mailbox.Maildir(config.maildir, create=False)) == 0
        later = NOON + CLAIM_LEASE + dt.timedelta(minutes=1)  # the lease ran out: the claim is stale
        report = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True), clock=fixed_clock(later))
        assert [o.status for o in report.digests] == ["sent"]
    finally:
        live.kill()
        live.wait()


def test_damaged_database_is_one_line_and_left_untouched(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON), transport=MaildirTransport(config.maildir))
    size = config.database.stat().st_size
    with config.database.open("r+b") as handle:  # keep the header page, damage every page after it
        handle.seek(4096)
        handle.write(b"\xde\xad\xbe\xef" * ((size - 4096) // 4))
    damaged = config.database.read_bytes()
    for command in (["ingest"], ["rank", "ada"], ["status"], ["digest", "--all"], ["preview", "ada", "--text"]):
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), *command], capture_output=True, text=True
        )
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "newsletter.db" in result.stderr, (command, result.stderr)
    assert config.database.read_bytes() == damaged


def test_garbage_database_file_is_never_overwritten(deployment: Deployment) -> None:
    config = deployment.config()
    config.database.write_bytes(b"this is my thesis, not a database\n" * 100)
    original = config.database.read_bytes()
    result = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), "ingest"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "newsletter.db" in result.stderr
    assert config.database.read_bytes() == original


def test_read_only_commands_do_not_create_a_database(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    for command in (["preview", "ada"], ["rank", "ada"], ["status"]):
        result = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), *command], capture_output=True, text=True)
        assert result.returncode == 1 and "run `newsletter ingest` first" in result.stderr
    assert not (deployment.root / "newsletter.db").exists()


def test_a_missing_link_secret_still_delivers_what_was_queued(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url set but its secret gone: no new digest (its links could not be signed), the queued ones still go out."""
    config = _deployment(deployment).config()
    pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("grace",), ignore_time=True), clock=fixed_clock(NOON), transport=DownTransport())
    deployment.header += 'base_url = "https://papers.example.org"\n'
    deployment.extra = '\n[web]\nsecret_env = "TEST_LINK_SECRET_UNSET"\n'
    monkeypatch.delenv("TEST_LINK_SECRET_UNSET", raising=False)
    later = fixed_clock(NOON + dt.timedelta(minutes=5))  # the failed attempt's retry is due
    report = pipeline.run_digests(deployment.config(), pipeline.DigestRequest(ignore_time=True), clock=later)
    assert [(o.subscriber, o.status) for o in report.digests] == [("grace", "sent")]  # the queued one, from the outbox
    assert not report.ok and any("TEST_LINK_SECRET_UNSET" in problem for problem in report.problems)
    assert _row(config.database, "ada") is None  # nothing new was queued without valid links


def test_list_id_label_is_ascii_letters_digits_and_hyphens() -> None:
    assert pipeline.list_slug("Päpers: AI & ML") == "papers-ai-ml"
    assert pipeline.list_slug("Daily Papers") == "daily-papers"
    assert pipeline.list_slug("日本") == "digest"


def test_a_digest_queued_after_its_reader_unsubscribed_is_cancelled_not_sent(deployment: Deployment) -> None:
    """A long run read the unsubscribe list before the click; the check right before sending still catches it."""
    config = _deployment(deployment).config()
    with Store(config.database, clock=lambda: NOON) as store:
        store.unsubscribe("ada", via="one-click")
        store.queue_digest(  # what a run that had not seen the click yet would queue
            subscriber="ada", period="2026-11-26", recipient="ada@example.org", subject="s", message_id="<m@x>",
            message=b"Subject: s\r\n\r\nhello\r\n", items=[("arxiv:2508.13167", 1.0)], considered=1,
        )
    report = pipeline.deliver_due(config, clock=fixed_clock(NOON))
    assert [(o.subscriber, o.status) for o in report.digests] == [("ada", "unsubscribed")]
    assert not config.maildir.exists() or len(mailbox.Maildir(config.maildir, create=False)) == 0
    assert _row(config.database, "ada")[0] == "cancelled"
    with Store(config.database, clock=lambda: NOON) as store:
        assert store.sent_ids_since("ada", since=NOON - dt.timedelta(days=30)) == set()  # its paper is not marked as received


def test_the_maildir_gets_whole_files_with_unique_names_and_a_write_failure_is_one_line(tmp_path: Path) -> None:
    box = MaildirTransport(tmp_path / "box")
    keys = [box.send(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), sender="a@example.org", recipient="b@example.org") for n in range(50)]
    box.flush()
    assert len(set(keys)) == 50
    assert list((tmp_path / "box" / "tmp").iterdir()) == []  # written under tmp/, then renamed: nothing left half-way
    read = mailbox.Maildir(tmp_path / "box", create=False)
    assert sorted(read.keys()) == sorted(keys)
    assert sorted(read.get_bytes(key) for key in keys) == sorted(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode() for n in range(50))
    (tmp_path / "box" / "tmp").rmdir()
    (tmp_path / "box" / "tmp").write_text("not a folder")  # a write that fails even for root
    with pytest.raises(DeliveryError) as failure:
        box.send(b"Subject: x\r\n\r\nx\r\n", sender="a@example.org", recipient="c@example.org")
    assert str(tmp_path / "box") in str(failure.value) and "c@example.org" in str(failure.value) and "\n" not in str(failure.value)
    assert sorted(mailbox.Maildir(tmp_path / "box", create=False).keys()) == sorted(keys)  # nothing else appeared


def test_a_v5_outbox_is_upgraded_and_its_queued_message_still_goes_out(tmp_path: Path) -> None:
    """Schema v6 keeps messages apart from the digests' rows; a queued message of v5 moves there, sent ones stay gone."""
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for upgrade in UPGRADES[:5]:
        upgrade(sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 5")
    insert = (
        "INSERT INTO digests (subscriber, period, status, recipient, message_id, message, attempts, created_at)"
        " VALUES (?, '2026-07-01', ?, ?, ?, ?, 0, '2026-07-01T12:00:00+00:00')"
    )
    conn.execute(insert, ["ada", "queued", "ada@example.org", "<1@x>", b"Subject: queued\r\n\r\nbody\r\n"])
    conn.execute(insert, ["grace", "sent", "grace@example.org", "<2@x>", None])
    conn.execute(insert, ["kim", "cancelled", "kim@example.org", "<3@x>", b"Subject: cancelled\r\n\r\n"])
    conn.close()
    with Store(path, clock=lambda: NOON) as store:
        assert "message" not in {column.name for column in store.db["digests"].columns}
        assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1  # the cancelled one's bytes are dropped
        (queued,) = store.pending_digests()
        assert queued.subscriber == "ada"
        assert store.message_of(queued.id) == b"Subject: queued\r\n\r\nbody\r\n"
        box = MaildirTransport(tmp_path / "box")
        outcomes = list(deliver_outbox(store, box, policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON))
        assert [(outcome.subscriber, outcome.status) for outcome in outcomes] == [("ada", "sent")]
        store.forget_sent_messages()  # as a run's end does (Sender.close)
        assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0  # sent: its bytes are gone
    assert [message["Subject"] for message in mailbox.Maildir(tmp_path / "box", create=False)] == ["queued"]


def test_an_empty_or_cancelled_period_gives_way_to_a_real_digest_and_a_real_one_does_not(tmp_path: Path) -> None:
    def queue(store: Store, message: bytes) -> int | None:
        return store.queue_digest(
            subscriber="ada", period="2026-07-01", recipient="ada@example.org", subject="s", message_id=f"<{message.decode()}@x>",
            message=message, items=[("arxiv:2401.00001", 1.0)], considered=5,
        )

    with Store(tmp_path / "db.sqlite", clock=lambda: NOON) as store:
        store.record_empty(subscriber="ada", period="2026-07-01", considered=5)  # nothing matched this morning
        first = queue(store, b"first")  # papers that arrived later that day
        assert first is not None and store.digest_status("ada", "2026-07-01") == "queued"
        assert queue(store, b"again") is None  # the period has its digest
        store.unsubscribe("ada", via="test")  # cancelled, its message dropped
        store.resubscribe("ada")
        second = queue(store, b"second")
        assert second is not None  # (SQLite may reuse the cancelled row's id)
        assert store.db.execute("SELECT digest_id, message FROM messages").fetchall() == [(second, b"second")]


def test_a_sent_mark_rides_on_the_next_claim_and_a_consumer_stopping_early_leaves_nothing_unrecorded(tmp_path: Path) -> None:
    """One commit per message (the "sent" of one with the claim of the next); every outcome reported is recorded, and
    a consumer that stops after the first outcome leaves each digest either sent and recorded, or queued."""
    box = MaildirTransport(tmp_path / "box")
    with Store(tmp_path / "db.sqlite", clock=lambda: NOON) as store:
        _queue_three(store)
        commits = []
        store.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        outcomes = deliver_outbox(store, box, policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON)
        first = next(outcomes)
        statuses = dict(store.db.execute("SELECT subscriber, status FROM digests").fetchall())
        assert (first.subscriber, first.status) == ("ada", "sent") and statuses["ada"] == "sent"  # reported once recorded
        assert statuses["grace"] == "sending" and len(box_files(tmp_path / "box")) == 2  # grace's went out; its mark waits
        outcomes.close()  # the consumer stops here
        assert dict(store.db.execute("SELECT subscriber, status FROM digests").fetchall()) == {"ada": "sent", "grace": "sent", "kim": "queued"}
        assert len(commits) == 3  # claim ada; sent ada + claim grace; sent grace (recorded on its own at the stop)
        rest = list(deliver_outbox(store, box, policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON))
        assert [(outcome.subscriber, outcome.status) for outcome in rest] == [("kim", "sent")]
        assert store.db.execute("SELECT sum(attempts) FROM digests").fetchone()[0] == 3  # each recorded once
    assert sorted(message["Subject"] for message in mailbox.Maildir(tmp_path / "box", create=False)) == ["ada", "grace", "kim"]


class BrokenAfterOne:
    """A transport that writes one message, then fails with something that is not a delivery error (a bug)."""

    def __init__(self, box: MaildirTransport) -> None:
        self.box = box

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        if recipient != "ada@example.org":
            raise RuntimeError(f"a bug while sending to {recipient}")
        return self.box.send(message, sender=sender, recipient=recipient)


def test_a_message_recorded_with_the_claim_before_an_unexpected_error_is_still_reported(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite", clock=lambda: NOON) as store:
        _queue_three(store)
        reported = []
        outcomes = deliver_outbox(store, BrokenAfterOne(MaildirTransport(tmp_path / "box")), policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON)
        with pytest.raises(RuntimeError, match="a bug while sending to grace@example.org"):
            for outcome in outcomes:
                reported.append((outcome.subscriber, outcome.status))
        statuses = dict(store.db.execute("SELECT subscriber, status FROM digests").fetchall())
    assert statuses == {"ada": "sent", "grace": "sending", "kim": "queued"}  # ada's mark rode on grace's claim
    assert reported == [("ada", "sent")]  # and what is recorded as sent is reported as sent


def _queue_three(store: Store) -> None:
    """Digests for ada, grace and kim, queued in that order."""
    for number, name in enumerate(("ada", "grace", "kim"), 1):
        store.queue_digest(
            subscriber=name, period="2026-07-01", recipient=f"{name}@example.org", subject=name, message_id=f"<{number}@x>",
            message=f"Subject: {name}\r\n\r\nbody\r\n".encode(), items=[(f"arxiv:2401.0000{number}", 1.0)], considered=5,
        )


def box_files(path: Path) -> list[Path]:
    return list((path / "new").iterdir())


def test_with_a_rate_limit_every_message_sent_is_recorded_before_each_pause(tmp_path: Path) -> None:
    box = MaildirTransport(tmp_path / "box")
    with Store(tmp_path / "db.sqlite", clock=lambda: NOON) as store:
        _queue_three(store)
        at_pauses: list[tuple[int, int]] = []  # (files written, digests recorded as sent) whenever the limiter sleeps

        def sleep(seconds: float) -> None:
            sent = store.db.execute("SELECT count(*) FROM digests WHERE status = 'sent'").fetchone()[0]
            at_pauses.append((len(box_files(tmp_path / "box")), sent))

        limiter = RateLimiter(60, monotonic=lambda: 0.0, sleep=sleep)  # a second between messages, on a clock that never moves
        outcomes = list(deliver_outbox(store, box, policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON, limiter=limiter))
    assert [outcome.status for outcome in outcomes] == ["sent"] * 3
    assert at_pauses == [(1, 1), (2, 2)]


def test_sent_messages_bytes_go_with_the_next_batch_queued_and_at_the_end(tmp_path: Path) -> None:
    box = MaildirTransport(tmp_path / "box")
    with Store(tmp_path / "db.sqlite", clock=lambda: NOON) as store:
        _queue_three(store)
        outcomes = list(deliver_outbox(store, box, policy=DeliveryPolicy(sender="p@example.org"), clock=lambda: NOON))
        assert [outcome.status for outcome in outcomes] == ["sent"] * 3
        assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 3  # kept until the next queue
        store.queue_digest(
            subscriber="lin", period="2026-07-01", recipient="lin@example.org", subject="lin", message_id="<4@x>",
            message=b"Subject: lin\r\n\r\n", items=[("arxiv:2401.00004", 1.0)], considered=5,
        )
        (queued,) = store.pending_digests()
        assert store.db.execute("SELECT digest_id FROM messages").fetchall() == [(queued.id,)]  # only the one to send
        store.forget_sent_messages()  # nothing sent: nothing dropped
        assert store.message_of(queued.id) == b"Subject: lin\r\n\r\n"


# --- a batch's bytes: kept only for what is not sent now ------------------------------------------------------------


class Watching:
    """Delivers into a Maildir (or fails for chosen readers), noting how many message bytes the outbox held at each send."""

    def __init__(self, box: Path, database: Path, *, failing: dict[str, DeliveryError] | None = None, stop: threading.Event | None = None) -> None:
        self.box, self.database, self.failing, self.stop = MaildirTransport(box), database, failing or {}, stop
        self.stored_at_send: list[int] = []
        self.attempted: dict[str, bytes] = {}

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        with sqlite3.connect(self.database) as conn:
            self.stored_at_send.append(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        self.attempted[recipient] = message
        if self.stop is not None:
            self.stop.set()  # SIGTERM during this send: it finishes, nothing more goes
        if recipient in self.failing:
            raise self.failing[recipient]
        return self.box.send(message, sender=sender, recipient=recipient)

    def flush(self) -> None:
        self.box.flush()

    def close(self) -> None:
        pass


def _outbox_rows(database: Path) -> dict[str, tuple[str, str | None, bytes | None, str]]:
    """subscriber -> (status, claimed_by, stored bytes, Message-ID)."""
    with sqlite3.connect(database) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT subscriber, status, claimed_by, message, message_id FROM digests LEFT JOIN messages ON digest_id = id")}


def _message_ids(box: Path) -> list[str]:
    return sorted(str(message["Message-ID"]) for message in mailbox.Maildir(box, create=False))


BOTH = pipeline.DigestRequest(subscriber_ids=("ada", "grace"), ignore_time=True)


def test_a_batch_is_sent_from_memory_and_only_a_failed_message_is_stored_for_its_retry(deployment: Deployment, tmp_path: Path) -> None:
    config = _deployment(deployment).config()
    watching = Watching(config.maildir, config.database, failing={"ada@example.org": DeliveryError("451 try later")})
    report = pipeline.run_digests(config, BOTH, clock=fixed_clock(NOON), transport=watching)
    assert sorted(o.status for o in report.digests) == ["retrying", "sent"]
    assert list(watching.attempted) == ["ada@example.org", "grace@example.org"]
    assert watching.stored_at_send == [0, 1]  # queued without their bytes (the run holds them); ada's stored as it failed
    rows = _outbox_rows(config.database)
    assert rows["ada"][:3] == ("queued", None, watching.attempted["ada@example.org"])  # kept with the failure, released
    assert rows["grace"][0] == "sent" and rows["grace"][2] is None
    retry = pipeline.run_digests(config, BOTH, clock=fixed_clock(NOON + dt.timedelta(hours=1)), transport=Watching(config.maildir, config.database))
    assert [(o.subscriber, o.status) for o in retry.digests if o.status == "sent"] == [("ada", "sent")]
    assert _message_ids(config.maildir) == sorted([rows["ada"][3], rows["grace"][3]])  # the same message, retried


def test_a_stop_or_a_server_down_keeps_the_bytes_of_the_digests_not_tried(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    stop = threading.Event()
    pipeline.run_digests(config, BOTH, clock=fixed_clock(NOON), transport=Watching(config.maildir, config.database, stop=stop), stop=stop)
    rows = _outbox_rows(config.database)
    (left,) = [name for name, row in rows.items() if row[0] == "queued"]
    assert rows[left][1] is None and rows[left][2] is not None  # stored and released: any later run sends it as it is
    pipeline.run_digests(config, BOTH, clock=fixed_clock(NOON), transport=Watching(config.maildir, config.database))
    assert _message_ids(config.maildir) == sorted(row[3] for row in rows.values())

    down = _deployment_for_a_down_server(config)
    pipeline.run_digests(down, BOTH, clock=fixed_clock(NOON), batch_size=1, transport=Watching(
        down.maildir, down.database, failing={f"{name}@example.org": ServerUnavailable("smtp: connection refused") for name in ("ada", "grace")}))
    assert {name: row[:2] for name, row in _outbox_rows(down.database).items()} == {"ada": ("queued", None), "grace": ("queued", None)}
    assert all(row[2] for row in _outbox_rows(down.database).values())  # the batch tried and the batch never tried


def _deployment_for_a_down_server(config: Config) -> Config:
    """The same deployment with a fresh database (a copy of the ingested one would do as well)."""
    fresh = config.database.with_name("down.db")
    with sqlite3.connect(config.database) as source, sqlite3.connect(fresh) as target:
        source.backup(target)
        target.execute("DELETE FROM sent_items")
        target.execute("DELETE FROM messages")
        target.execute("DELETE FROM digests")
    return dataclasses.replace(config, database=fresh, maildir=config.maildir.with_name("down-box"))


def _dead_pid() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()


def _queue_held_by(store: Store, owner: str, *, items: tuple[tuple[str, float], ...], reader: str = "ada", zone: str = "Europe/London") -> str:
    """A digest for today queued by ``owner``, which holds its bytes (the outbox has none); its period."""
    period = period_of(now=NOON, timezone=zone, frequency="daily")
    store.queue_digests([NewDigest(reader, period, f"{reader}@example.org", "held", f"<held-{reader}@x>", b"", items, 5)], sender=owner)
    return period


def test_digests_whose_bytes_died_with_their_process_are_given_back_and_built_again(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    request = pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True)
    with Store(config.database, clock=lambda: NOON) as store:
        paper = store.entries_since(NOON - dt.timedelta(days=30))[0].id
        _queue_held_by(store, f"{socket.gethostname()}:{_dead_pid()}", items=((paper, 1.0),))
    report = pipeline.run_digests(config, request, clock=fixed_clock(NOON))
    assert [o.status for o in report.digests] == ["queued", "sent"] and "built again" in report.digests[0].detail
    rows = _outbox_rows(config.database)
    assert rows["ada"][0] == "sent" and rows["ada"][3] != "<held-ada@x>"  # the held row is gone, a new digest went out
    assert len(mailbox.Maildir(config.maildir, create=False)) == 1


def test_digests_held_by_a_live_process_are_left_to_it_until_the_lease_runs_out(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    request = pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with Store(config.database, clock=lambda: NOON) as store:
            _queue_held_by(store, f"{socket.gethostname()}:{live.pid}", items=())
            assert not store.give_back_digest(replace(store.pending_digests()[0], claimed_at=None))  # changed since: kept
        pipeline.run_digests(config, request, clock=fixed_clock(NOON))
        assert _outbox_rows(config.database)["ada"][3] == "<held-ada@x>" and not config.maildir.exists()
        later = NOON + CLAIM_LEASE + dt.timedelta(minutes=1)
        report = pipeline.run_digests(config, request, clock=fixed_clock(later))
        assert [o.status for o in report.digests] == ["queued", "sent"]
    finally:
        live.kill()
        live.wait()


def test_a_digest_given_back_after_its_period_ended_is_still_built_and_sent_for_that_period(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    with Store(config.database, clock=lambda: NOON) as store:
        paper = store.entries_since(NOON - dt.timedelta(days=30))[0].id
        period = _queue_held_by(store, f"{socket.gethostname()}:{_dead_pid()}", items=((paper, 1.0),))
    next_morning = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc)  # London 07:00: before ada's send_at, another day
    report = pipeline.run_digests(config, clock=fixed_clock(next_morning))
    ada = [(o.status, o.period) for o in report.digests if o.subscriber == "ada"]
    assert ada == [("queued", period), ("sent", period)]  # given back, then built at once for the day it was due
    with sqlite3.connect(config.database) as conn:
        assert conn.execute("SELECT period, status FROM digests WHERE subscriber = 'ada'").fetchall() == [(period, "sent")]
    assert len(mailbox.Maildir(config.maildir, create=False)) == 1


def test_give_backs_wait_for_no_rate_limit_slot(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    slept: list[float] = []
    with Store(config.database, clock=lambda: NOON) as store:
        _queue_held_by(store, dead, items=())
        _queue_held_by(store, dead, items=(), reader="grace", zone="America/New_York")
        limiter = RateLimiter(6, monotonic=lambda: 0.0, sleep=slept.append)
        outcomes = list(deliver_outbox(store, object(), policy=DeliveryPolicy(sender="p@example.org", rate_limit=6), clock=lambda: NOON, limiter=limiter))
        assert store.rebuild_periods() == {"ada": "2026-11-26", "grace": "2026-11-26"}
    assert [o.status for o in outcomes] == ["queued", "queued"] and slept == []  # nothing was sent: no pause


class Buggy(Watching):
    """Raises something that is not a delivery error (a bug) on its second message."""

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        if self.attempted:
            raise RuntimeError("a bug in the transport")
        return super().send(message, sender=sender, recipient=recipient)


def test_a_bug_mid_batch_stores_the_bytes_it_held_so_any_later_run_sends_them_unchanged(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    with pytest.raises(RuntimeError, match="a bug in the transport"):
        pipeline.run_digests(config, BOTH, clock=fixed_clock(NOON), transport=Buggy(config.maildir, config.database))
    rows = _outbox_rows(config.database)
    assert sorted(row[0] for row in rows.values()) == ["sending", "sent"]
    (failed,) = [name for name, row in rows.items() if row[0] == "sending"]
    assert rows[failed][2] is not None  # the message the bug hit is stored: its resend is the same message
    later = NOON + CLAIM_LEASE + dt.timedelta(minutes=1)  # this process lives on: its claim counts as abandoned after the lease
    pipeline.run_digests(config, BOTH, clock=fixed_clock(later), transport=Watching(config.maildir, config.database))
    assert _message_ids(config.maildir) == sorted(row[3] for row in rows.values())



def test_a_rebuilt_digest_left_queued_by_a_stop_is_reported_after_the_give_back_line() -> None:
    outcomes = daily._Outcomes(None, None, total=1)
    outcomes(DigestOutcome("ada", "queued", "2026-11-26", detail="its bytes died with its process; built again"), counted=False)
    outcomes(DigestOutcome("ada", "queued", "2026-11-26", detail="stopped before sending; the next run sends it"))
    outcomes(DigestOutcome("grace", "sent", "2026-11-26"), counted=False)
    outcomes(DigestOutcome("grace", "already-sent", "2026-11-26", detail="this period's digest was sent"))  # says nothing new
    assert [(o.subscriber, o.detail.split(";")[0]) for o in outcomes.outcomes] == [
        ("ada", "its bytes died with its process"), ("ada", "stopped before sending"), ("grace", "")]


def test_a_digest_given_back_for_a_reader_whose_file_is_gone_is_cancelled(deployment: Deployment) -> None:
    config = _deployment(deployment).config()
    with Store(config.database, clock=lambda: NOON) as store:
        _queue_held_by(store, f"{socket.gethostname()}:{_dead_pid()}", items=())
        assert store.give_back_digest(store.pending_digests()[0])  # as a run's first pass does: now "rebuild"
    (config.subscribers / "ada.toml").unlink()
    pipeline.run_digests(config, pipeline.DigestRequest(dry_run=True), clock=fixed_clock(NOON))
    assert _outbox_rows(config.database)["ada"][0] == "rebuild"  # a dry run changes nothing
    pipeline.run_digests(config, clock=fixed_clock(NOON))
    assert _outbox_rows(config.database)["ada"][0] == "cancelled"  # not "rebuild" for ever, counted as waiting
    with Store(config.database, clock=lambda: NOON) as store:
        assert store.rebuild_periods() == {}


@pytest.mark.parametrize("absent", ["missing", "empty"])
def test_a_subscribers_directory_that_is_missing_or_empty_cancels_no_digest_given_back(deployment: Deployment, absent: str) -> None:
    config = _deployment(deployment).config()
    with Store(config.database, clock=lambda: NOON) as store:
        paper = store.entries_since(NOON - dt.timedelta(days=30))[0].id
        period = _queue_held_by(store, f"{socket.gethostname()}:{_dead_pid()}", items=((paper, 1.0),))
    away = config.subscribers.with_name("away")
    config.subscribers.rename(away)
    if absent == "empty":
        config.subscribers.mkdir()
    report = pipeline.run_digests(config, clock=fixed_clock(NOON))  # a mount not up yet, a directory being swapped
    assert _outbox_rows(config.database)["ada"][0] == "rebuild"
    assert bool(report.problems) == (absent == "missing")  # "subscribers directory not found"
    if absent == "empty":
        config.subscribers.rmdir()
    away.rename(config.subscribers)
    pipeline.run_digests(config, clock=fixed_clock(NOON))
    with sqlite3.connect(config.database) as conn:
        assert conn.execute("SELECT period, status FROM digests WHERE subscriber = 'ada'").fetchall() == [(period, "sent")]
