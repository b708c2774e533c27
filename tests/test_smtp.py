"""SMTP delivery end to end: the real pipeline, CLI and outbox against a real aiosmtpd server on 127.0.0.1.

TLS (STARTTLS and implicit) uses a throwaway CA from trustme; AUTH is checked by
the server. Time never comes from the wall clock in an assertion: retries run
at fixed clock values, the rate limit runs on a fake monotonic clock, and the
subprocess tests wait on the server's own record of what arrived.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from email.utils import parseaddr
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import smtp_server
import trustme
from conftest import EXAMPLES, NOON, Deployment, fixed_clock
from smtp_server import PASSWORD, WAIT, MailServer, ProgrammableHandler, start_server

from newsletter import pipeline
from newsletter.deliver import Transport
from newsletter.config import Config
from newsletter.outbox import RateLimiter
from newsletter.store import Store

smtp_ca, smtp_tls, smtp_implicit_tls = smtp_server.smtp_ca, smtp_server.smtp_tls, smtp_server.smtp_implicit_tls  # fixtures

PASSWORD_ENV = "TEST_SMTP_PASSWORD"
LINK_SECRET = "a-link-signing-secret-for-tests-0123456789"
PERIOD = "2026-11-26"  # NOON's day, for every reader below (all in UTC)
EVERYONE = pipeline.DigestRequest(ignore_time=True)

# Each reader follows one or two subjects the example cs.AI feed covers, so each gets a digest.
TOPICS = [
    ["agent", "multi-agent"], ["reasoning"], ["planning"], ["reinforcement learning"], ["knowledge graph"],
    ["multimodal"], ["forecasting"], ["memory"], ["collaboration"], ["LLM", "language model"],
]


def reader_toml(number: int) -> str:
    keywords = TOPICS[number % len(TOPICS)]
    return (
        f'email = "reader{number:02d}@example.org"\nname = "Reader {number}"\ntimezone = "UTC"\nmax_items = 3\n\n'
        f'[[topics]]\nname = "{keywords[0].title()}"\nkeywords = {json.dumps(keywords)}\n'
    )


def address(number: int) -> str:
    return f"reader{number:02d}@example.org"


def deploy(deployment: Deployment, server: MailServer, *, readers: int = 3, real_clock: bool = False, **smtp: Any) -> Config:
    """A deployment with ``readers`` readers of the example cs.AI feed, delivering to ``server``; the feed ingested.

    Ingested at NOON, or now with ``real_clock`` (for the CLI processes, which run on the real clock).
    """
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    for number in range(readers):
        deployment.add_subscriber(f"reader{number:02d}", reader_toml(number))
    deployment.header += 'base_url = "https://papers.example.org"\n'
    deployment.extra = server.smtp_toml(password_env=PASSWORD_ENV, **smtp) + '\n[web]\nsecret_env = "TEST_LINK_SECRET"\n'
    config = deployment.config()
    if real_clock:
        pipeline.ingest_feeds(config)
    else:
        pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    return config


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("TEST_LINK_SECRET", LINK_SECRET)


def outbox(config: Config) -> list[dict[str, Any]]:
    """Every digest row, oldest first."""
    with Store(config.database, clock=lambda: NOON) as store:
        cursor = store.db.execute("SELECT id, subscriber, period, status, recipient, message_id, attempts FROM digests ORDER BY id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]


def rows(config: Config) -> dict[str, dict[str, Any]]:
    """The outbox, one row per subscriber (one period in these tests)."""
    with Store(config.database, clock=lambda: NOON) as store:
        cursor = store.db.execute(
            "SELECT subscriber, status, attempts, recipient, message_id, message, last_error, last_reply, item_ids, claimed_by"
            " FROM digests LEFT JOIN messages ON digest_id = id ORDER BY id"
        )
        names = [column[0] for column in cursor.description]
        return {row[0]: dict(zip(names, row)) for row in cursor}


def day_status(config: Config, period: str = PERIOD) -> dict[str, Any]:
    """`newsletter status`'s row for the period."""
    (row,) = [row for row in pipeline.status(config)["digests"] if row["period"] == period]
    return row


def counts(row: dict[str, Any]) -> dict[str, int]:
    return {key: row[key] for key in ("sent", "queued", "retrying", "sending", "bounced", "failed") if row[key]}


def statuses(report: pipeline.RunReport) -> list[tuple[str, str]]:
    return sorted((outcome.subscriber, outcome.status) for outcome in report.digests)


def sent_in(report: pipeline.RunReport) -> list[str]:
    return sorted(outcome.subscriber for outcome in report.digests if outcome.status == "sent")


def titles(config: Config, item_ids: str) -> list[str]:
    with Store(config.database, clock=lambda: NOON) as store:
        return [entry.title for entry in store.entries_by_id(json.loads(item_ids))]


def words(text: str) -> str:
    return " ".join(text.split())


def html_words(markup: str) -> str:
    return words(html.unescape(re.sub(r"<[^>]+>", " ", markup)).replace("\u00ad", ""))


def no_secret(*texts: object) -> None:
    for text in texts:
        assert PASSWORD not in str(text), "the SMTP password leaked"


# --- 1. TLS and AUTH ---------------------------------------------------------------------------


class _Recording:
    """Passes each message on to a real transport and keeps the bytes it was given, by recipient."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.sent: dict[str, bytes] = {}

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        self.sent[recipient] = message
        return self.transport.send(message, sender=sender, recipient=recipient)

    def flush(self) -> None:
        self.transport.flush()

    def close(self) -> None:
        self.transport.close()


def test_starttls_and_auth_deliver_every_digest_intact_over_one_connection(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls, readers=3)
    handed = _Recording(pipeline.make_transport(config))  # the real SMTP transport; records the bytes the outbox hands it
    try:
        report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), transport=handed)
    finally:
        handed.close()
    assert statuses(report) == [(f"reader{n:02d}", "sent") for n in range(3)], report
    assert report.ok

    handler = smtp_tls.handler
    assert sorted(handler.recipients()) == [address(n) for n in range(3)]
    assert len(handler.sessions) == 1  # one connection for the whole batch
    assert all(message.tls and message.login == "papers" for message in handler.received)
    assert [mechanism for mechanism, _, ok in smtp_tls.authenticator.tries if ok] == ["PLAIN"]  # type: ignore[union-attr]

    by_subscriber = rows(config)
    for received in handler.received:
        (subscriber,) = [sid for sid, row in by_subscriber.items() if row["recipient"] == received.rcpt_tos[0]]
        row = by_subscriber[subscriber]
        assert row["status"] == "sent" and row["last_reply"].startswith("250 ")
        assert received.data == handed.sent[row["recipient"]]  # byte for byte what was queued (dot-stuffing undone, nothing added)
        assert row["message"] is None  # a sent digest's bytes are not kept: the outbox stays small
        assert received.mail_from == "papers@example.org"
        message = received.parsed()
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert str(message["From"]) == "Daily Papers <papers@example.org>"
        assert message["To"].addresses[0].addr_spec == row["recipient"]
        assert message["Message-ID"] == row["message_id"] and message["Subject"].startswith("Daily Papers — ")
        assert message["Date"].datetime == NOON
        assert message["List-Id"] == "Daily Papers <daily-papers.example.org>"
        unsubscribe = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert unsubscribe[0].startswith("https://papers.example.org/") and unsubscribe[1].startswith("mailto:papers@example.org")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text = words(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        page = html_words(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        papers = titles(config, row["item_ids"])
        assert papers
        for title in papers:
            assert words(title) in text, (subscriber, title)
            assert words(title) in page, (subscriber, title)

    status = pipeline.status(config)
    assert counts(day_status(config)) == {"sent": 3}
    no_secret(report, status, config.database.read_bytes())


def test_implicit_tls_with_auth_login(deployment: Deployment, smtp_implicit_tls: MailServer) -> None:
    config = deploy(deployment, smtp_implicit_tls, readers=2)
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert statuses(report) == [("reader00", "sent"), ("reader01", "sent")], report
    assert sorted(smtp_implicit_tls.handler.recipients()) == [address(0), address(1)]
    assert all(message.tls and message.login == "papers" for message in smtp_implicit_tls.handler.received)
    assert {mechanism for mechanism, _, _ in smtp_implicit_tls.authenticator.tries} == {"LOGIN"}  # type: ignore[union-attr]
    no_secret(report, pipeline.status(config))


def test_an_untrusted_certificate_stops_the_batch_with_one_line_and_loses_nothing(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls, readers=3, ca_file=None)  # the system's CAs do not know the test CA
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert smtp_tls.handler.received == [] and not report.ok  # `digest` exits 1: someone must look
    assert [outcome.status for outcome in report.digests] == ["unavailable", "queued", "queued"], report
    first = report.digests[0].detail
    assert "\n" not in first and "127.0.0.1" in first and "certificate" in first and "smtp.ca_file" in first, first
    assert counts(day_status(config)) == {"queued": 3}
    assert "certificate" in day_status(config)["last_error"]
    no_secret(report, pipeline.status(config))

    deployment.extra = deployment.extra.replace('security = "starttls"', 'security = "starttls"\nca_file = "ca.pem"')
    fixed = deployment.config()
    again = pipeline.run_digests(fixed, EVERYONE, clock=fixed_clock(NOON))  # the same minute: nothing waits for a backoff
    assert sent_in(again) == [f"reader{n:02d}" for n in range(3)], again
    assert sorted(smtp_tls.handler.recipients()) == [address(n) for n in range(3)]


def test_a_wrong_password_is_a_clear_auth_error_and_the_digests_stay_queued(
    deployment: Deployment, smtp_tls: MailServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = deploy(deployment, smtp_tls, readers=2)
    wrong = "not-the-" + PASSWORD
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert [outcome.status for outcome in report.digests] == ["unavailable", "queued"] and not report.ok, report
    detail = report.digests[0].detail
    assert "\n" not in detail and "authentication failed for papers" in detail and "535" in detail, detail
    assert smtp_tls.handler.received == [] and counts(day_status(config)) == {"queued": 2}
    for text in (report, pipeline.status(config), config.database.read_bytes()):
        assert wrong not in str(text) and PASSWORD not in str(text)

    monkeypatch.delenv(PASSWORD_ENV)
    unset = pipeline.deliver_due(config, clock=fixed_clock(NOON))
    assert PASSWORD_ENV in unset.digests[0].detail and unset.digests[0].status == "unavailable", unset

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    later = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert sent_in(later) == ["reader00", "reader01"], later
    assert sorted(smtp_tls.handler.recipients()) == [address(0), address(1)]


def test_a_ca_file_that_is_not_a_certificate_is_one_line_not_a_traceback(deployment: Deployment, smtp_tls: MailServer, tmp_path: Path) -> None:
    config = deploy(deployment, smtp_tls, readers=1)
    (tmp_path / "ca.pem").write_text("this is not a PEM bundle\n")
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(config.path), "digest", "--all"], capture_output=True, text=True,
        env={**os.environ}, timeout=WAIT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ca.pem" in result.stderr and "smtp.ca_file" in result.stderr and "PEM" in result.stderr
    assert "reader00" not in rows(config)  # refused with the config: nothing was built, nothing is lost


# --- 2. temporary failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_451_twice_then_250_is_retried_with_backoff_and_received_once(deployment: Deployment, smtp_tls: MailServer, stage: str) -> None:
    config = deploy(deployment, smtp_tls, readers=2)
    handler = smtp_tls.handler
    getattr(handler, f"tempfail_{stage}")[address(1)] = 2

    first = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert statuses(first) == [("reader00", "sent"), ("reader01", "retrying")], first
    assert "451" in {o.subscriber: o.detail for o in first.digests}["reader01"]
    assert counts(day_status(config)) == {"sent": 1, "retrying": 1}
    assert "451" in day_status(config)["last_error"]

    early = pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(seconds=59)))
    assert early.digests == ()  # the first retry waits retry_after (1m)
    second = pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(minutes=1)))
    assert statuses(second) == [("reader01", "retrying")], second
    assert pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(minutes=2, seconds=59))).digests == ()  # then 2m
    assert counts(day_status(config)) == {"sent": 1, "retrying": 1}

    third = pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(minutes=3)))
    assert statuses(third) == [("reader01", "sent")], third
    assert counts(day_status(config)) == {"sent": 2}
    row = rows(config)["reader01"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert handler.recipients().count(address(1)) == 1 and len(handler.received) == 2
    tries = handler.rcpt_attempts if stage == "rcpt" else handler.attempts
    assert tries[address(1)] == 3
    assert pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(hours=1))).digests == ()


# --- 3. permanent refusal ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_550_for_one_recipient_bounces_it_and_the_batch_goes_on(deployment: Deployment, smtp_tls: MailServer, stage: str) -> None:
    config = deploy(deployment, smtp_tls, readers=3)
    reply = f"550 5.1.1 <{address(1)}>: Recipient address rejected: no such mailbox"
    getattr(smtp_tls.handler, f"refuse_{stage}")[address(1)] = reply

    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    assert statuses(report) == [("reader00", "sent"), ("reader01", "bounced"), ("reader02", "sent")], report
    assert not report.ok  # a bounce makes the run's exit code 1
    assert sorted(smtp_tls.handler.recipients()) == [address(0), address(2)]
    assert len(smtp_tls.handler.sessions) == 1  # the refusal did not cost the connection
    row = day_status(config)
    assert counts(row) == {"sent": 2, "bounced": 1}
    assert "550 5.1.1" in row["last_error"] and address(1) in row["last_error"]
    assert rows(config)["reader01"]["last_reply"].startswith("550 5.1.1")
    assert pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(hours=1))).digests == ()  # never retried by itself

    assert pipeline.retry_failed(config, clock=fixed_clock(NOON + dt.timedelta(hours=1))) == [("reader01", PERIOD, "requeued")]
    assert counts(day_status(config)) == {"sent": 2, "queued": 1}
    del getattr(smtp_tls.handler, f"refuse_{stage}")[address(1)]  # the mailbox exists again
    after = pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(hours=1)))
    assert statuses(after) == [("reader01", "sent")], after
    assert sorted(smtp_tls.handler.recipients()) == [address(0), address(1), address(2)]


# --- 4. dropped connection -----------------------------------------------------------------------------


@pytest.mark.parametrize("stays_down", [True, False], ids=["then-down", "back-at-once"])
def test_a_dropped_connection_mid_batch_loses_nothing_and_sends_nothing_twice(
    deployment: Deployment, smtp_tls: MailServer, stays_down: bool,
) -> None:
    config = deploy(deployment, smtp_tls, readers=6)
    handler = smtp_tls.handler
    handler.drop_after, handler.down_after_drop = 2, stays_down

    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
    got = Counter(status for _, status in statuses(report))
    assert handler.drops == 1 and handler.count() == 2 + (0 if stays_down else 3)
    if stays_down:  # the dropped message will be retried; the next connection is refused: the rest is not tried
        assert got == {"sent": 2, "retrying": 1, "unavailable": 1, "queued": 2}, report
        assert counts(day_status(config)) == {"sent": 2, "retrying": 1, "queued": 3}
    else:  # the next message reconnects, and the batch goes on
        assert got == {"sent": 5, "retrying": 1}, report
        assert counts(day_status(config)) == {"sent": 5, "retrying": 1}
    dropped = next(o for o in report.digests if o.status == "retrying")
    assert "Connection unexpectedly closed" in dropped.detail or "disconnected" in dropped.detail.lower(), dropped

    handler.down = False
    later = pipeline.deliver_due(config, clock=fixed_clock(NOON + dt.timedelta(minutes=1)))
    assert {o.status for o in later.digests} == {"sent"}, later
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(6)})
    assert counts(day_status(config)) == {"sent": 6}


# --- 5, 6, 9: the CLI as a process -----------------------------------------------------------------------


def cli(config: Config | Path, *args: str) -> list[str]:
    path = config if isinstance(config, Path) else config.path
    return [sys.executable, "-m", "newsletter", "--config", str(path), *args]


def spawn(config: Config, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli(config, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=WAIT * 3)
    return process.returncode, out, err


def message_ids(handler: ProgrammableHandler) -> list[str]:
    return [str(message.parsed()["Message-ID"]) for message in handler.received]


def recipients(handler: ProgrammableHandler) -> list[str]:
    """Each received message's To address: a digest given back after a kill is built again, with a new Message-ID."""
    return [parseaddr(str(message.parsed()["To"]))[1] for message in handler.received]


# Where the SIGKILL lands: (how the server is programmed, when to kill). Holds make the first two exact.
KILL_POINTS: dict[str, tuple[dict[str, Any], Callable[[ProgrammableHandler], bool]]] = {
    # the server accepted the 3rd message and holds its 250: the client dies not knowing it went out
    "after-data-3": ({"hold_data_from": 3}, lambda h: h.count() >= 3),
    # the client sent RCPT for the 15th message and waits for the reply: it dies before the message leaves
    "in-rcpt-15": ({"hold_rcpt_from": 15}, lambda h: sum(h.rcpt_attempts.values()) >= 15),
    # 0.1 s between accepting each message and its 250; killed as the 25th is accepted: in that gap or just after
    "racing-25": ({"delay": 0.1}, lambda h: h.count() >= 25),
}


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_sigkill_mid_batch_then_rerun_every_reader_gets_one_digest_at_most_one_duplicate(
    deployment: Deployment, smtp_tls: MailServer, kill_point: str,
) -> None:
    readers = 30
    config = deploy(deployment, smtp_tls, readers=readers, real_clock=True)
    handler = smtp_tls.handler
    program, kill_when = KILL_POINTS[kill_point]
    for key, value in program.items():
        setattr(handler, key, value)

    process = spawn(config, "digest", "--all")
    try:
        handler.wait_for(kill_when, what=kill_point)
        process.send_signal(signal.SIGKILL)
    finally:
        code, out, err = finish(process)
    assert code == -signal.SIGKILL, (code, out, err)
    handler.hold_data_from = handler.hold_rcpt_from = None
    handler.delay = 0.0
    handler.wait_for(lambda h: h.busy == 0, what="the server to finish the message in flight")
    at_kill = outbox(config)
    received_at_kill = handler.count()
    assert 0 < received_at_kill < readers and len(at_kill) == readers  # every digest was queued before the first send
    in_flight = [row for row in at_kill if row["status"] == "sending"]
    assert len(in_flight) <= 1, in_flight

    rerun = subprocess.run(cli(config, "digest", "--all"), capture_output=True, text=True, timeout=WAIT * 3, env={**os.environ})
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    # The killed run held its batch's bytes in memory only: the rerun built the digests it had not sent again, for the
    # same periods (new Message-IDs), so they are counted per reader. Those recorded sent stay as they were.
    # Only the killed run's periods count: a rerun just past midnight would rightly queue the next day's digests too.
    periods = {row["period"] for row in at_kill}
    after = [row for row in outbox(config) if row["period"] in periods]
    assert {row["status"] for row in after} == {"sent"} and len(after) == readers, after
    ours = {row["message_id"] for row in at_kill + after}
    assert {row["message_id"] for row in at_kill if row["status"] == "sent"} <= set(message_ids(handler))
    arrived = Counter(recipient for recipient, mid in zip(recipients(handler), message_ids(handler)) if mid in ours)
    assert set(arrived) == {address(n) for n in range(readers)}
    extra = {recipient: n - 1 for recipient, n in arrived.items() if n > 1}
    assert sum(extra.values()) <= 1, extra
    if extra:  # only the message in flight at the kill can arrive twice (its reader's digest built again)
        assert [row["recipient"] for row in in_flight] == list(extra)
    if kill_point == "after-data-3":
        assert len(extra) == 1  # the server had it, the client never heard: the one duplicate the design allows
    if kill_point == "in-rcpt-15":
        assert not extra and len(in_flight) == 1  # claimed, never sent: sent once by the rerun
    sent_at_kill = sum(row["status"] == "sent" for row in at_kill)
    landing = (f"in flight ({in_flight[0]['recipient']})" if in_flight else "between messages") + (
        ", the server had accepted it" if extra else ", the server never had it" if in_flight else "")
    print(f"\n[{kill_point}] killed with {received_at_kill}/{readers} received, {sent_at_kill} recorded sent; "
          f"landing: {landing}; duplicates: {sum(extra.values())}; messages in all: {sum(arrived.values())}")


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "two workers"])
def test_sigterm_finishes_the_message_in_flight_then_stops_and_a_rerun_sends_the_rest(
    deployment: Deployment, smtp_tls: MailServer, workers: list[str],
) -> None:
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers, real_clock=True)
    handler = smtp_tls.handler
    handler.hold_data_from = 4  # the 4th message is accepted and its 250 held: it is in flight when SIGTERM comes
    process = spawn(config, "digest", "--all", *workers)  # with workers, the parent passes the stop on to them
    try:
        handler.wait_for(lambda h: h.count() >= 4, what="the 4th message")
        process.send_signal(signal.SIGTERM)
        handler.hold_data_from = None
    finally:
        code, out, err = finish(process)
    print(f"\nSIGTERM: exit {code}\nstdout:\n{out}stderr:\n{err}")
    assert code == 0, (code, out, err)
    assert "SIGTERM: stopping after the message in flight" in err
    assert "stopped by a signal, the rest stays queued" in out and "total: 4 sent, 8 queued" in out
    first = outbox(config)
    sent = [row for row in first if row["status"] == "sent"]
    assert len(first) == readers and len(sent) == 4  # the message in flight was finished and recorded; nothing after it started
    assert sorted(message_ids(handler)) == sorted(row["message_id"] for row in sent)  # the server has exactly what is recorded sent
    assert {row["status"] for row in first} == {"sent", "queued"}
    (period,) = {row["period"] for row in first}
    assert counts(day_status(config, period=period)) == {"sent": 4, "queued": readers - 4}

    rerun = subprocess.run(cli(config, "digest", "--all", *workers), capture_output=True, text=True, timeout=WAIT * 3, env={**os.environ})
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    digests = {row["message_id"] for row in first}
    assert Counter(mid for mid in message_ids(handler) if mid in digests) == Counter(digests)  # each exactly once
    assert {row["recipient"] for row in first} == {address(n) for n in range(readers)}
    assert counts(day_status(config, period=period))["sent"] == readers


def test_a_second_digest_while_one_holds_the_sender_lock_exits_1_naming_the_holder(deployment: Deployment, smtp_tls: MailServer) -> None:
    readers = 4
    config = deploy(deployment, smtp_tls, readers=readers, real_clock=True)
    handler = smtp_tls.handler
    handler.hold_data_from = 1  # the first run is stuck on its first message's 250 while the second starts
    first = spawn(config, "digest", "--all")
    try:
        handler.wait_for(lambda h: h.count() >= 1, what="the first run to start sending")
        second = subprocess.run(cli(config, "digest", "--all"), capture_output=True, text=True, timeout=WAIT * 3, env={**os.environ})
        handler.hold_data_from = None
    finally:
        code, out, err = finish(first)
    assert second.returncode == 1, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"`newsletter digest` (pid {first.pid})" in lines[0] and "already sending" in lines[0], lines[0]
    print(f"\nsecond run: exit {second.returncode}: {lines[0]}")
    assert code == 0, (out, err)
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(readers)})


# --- 7. cleartext -----------------------------------------------------------------------------------------


def test_security_none_is_refused_for_a_remote_host_unless_allow_insecure(deployment: Deployment, tmp_path: Path) -> None:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("reader00", reader_toml(0))
    base = '\n[delivery]\nmethod = "smtp"\n\n[smtp]\nhost = "smtp.example.org"\nport = 25\nsecurity = "none"\n'

    deployment.extra = base
    refused = subprocess.run(cli(deployment.config_path, "check"), capture_output=True, text=True, timeout=WAIT)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "smtp.security" in lines[0] and "smtp.example.org" in lines[0] and "allow_insecure" in lines[0], lines

    deployment.extra = base + "allow_insecure = true\n"
    allowed = subprocess.run(cli(deployment.config_path, "check"), capture_output=True, text=True, timeout=WAIT)
    assert allowed.returncode == 0 and "OK" in allowed.stdout, allowed.stderr


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_a_relay_without_auth_gets_a_greeting_before_mail(deployment: Deployment, tmp_path: Path, smtp_ca: trustme.CA, security: str) -> None:
    """No smtp.username (a local relay): EHLO is still sent (again after STARTTLS) before MAIL; "none" to loopback is cleartext."""
    server = start_server(security=security, auth=False, ca=smtp_ca, ca_dir=tmp_path)
    try:
        config = deploy(deployment, server, readers=2, ca_file=None if security == "none" else "ca.pem")
        assert pipeline.check(config) == []
        report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON))
        assert statuses(report) == [("reader00", "sent"), ("reader01", "sent")], report
        assert sorted((m.rcpt_tos[0], m.tls, m.login) for m in server.handler.received) == [
            (address(0), security != "none", None), (address(1), security != "none", None),
        ]
    finally:
        server.stop()


# --- 8. rate limit ------------------------------------------------------------------------------------------


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limit_spaces_a_batch_evenly(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls, readers=5, delivery={"rate_limit": 600})
    assert config.rate_limit == 600
    fake = FakeTime()
    smtp_tls.handler.clock = fake.monotonic  # the server stamps each arrival with the fake clock
    limiter = RateLimiter(config.rate_limit, monotonic=fake.monotonic, sleep=fake.sleep)
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), limiter=limiter)
    assert [status for _, status in statuses(report)] == ["sent"] * 5, report
    stamps = [message.stamp for message in smtp_tls.handler.received]
    gaps = [round(b - a, 6) for a, b in pairwise(stamps)]  # type: ignore[operator]
    assert gaps == [0.1] * 4  # 600 a minute: one every 0.1 s, the first at once
    assert fake.sleeps == pytest.approx([0.1] * 4)


def test_rate_limiter_does_not_sleep_when_sends_are_slower_than_the_limit() -> None:
    fake = FakeTime()
    limiter = RateLimiter(600, monotonic=fake.monotonic, sleep=fake.sleep)
    limiter.wait()
    fake.now += 0.25  # the send itself took longer than the interval
    limiter.wait()
    fake.now += 0.03
    limiter.wait()
    assert fake.sleeps == pytest.approx([0.07])
    assert RateLimiter(0, monotonic=fake.monotonic, sleep=fake.sleep).interval == 0


def test_a_stop_requested_while_waiting_for_the_rate_limit_sends_nothing_more(deployment: Deployment, smtp_tls: MailServer) -> None:
    """SIGTERM during the rate limit's pause: the pause ends early and the run stops; no further message is started."""
    config = deploy(deployment, smtp_tls, readers=4, delivery={"rate_limit": 1})  # one a minute: a long pause
    fake, stop = FakeTime(), threading.Event()

    def sleep(seconds: float) -> None:  # the signal arrives during the pause, which ends early (stop.wait returns)
        fake.sleep(seconds)
        stop.set()

    limiter = RateLimiter(config.rate_limit, monotonic=fake.monotonic, sleep=sleep)
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), limiter=limiter, stop=stop)
    assert smtp_tls.handler.recipients() == [address(0)]
    assert Counter(status for _, status in statuses(report)) == {"sent": 1, "queued": 3}, report
    assert counts(day_status(config)) == {"sent": 1, "queued": 3}


def test_a_5xx_to_the_data_command_itself_is_a_bounce_and_the_connection_is_kept() -> None:
    """Some servers refuse at DATA (554 before any content): permanent for that message, not a dropped connection."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    from newsletter.deliver import SmtpSettings, SmtpTransport
    from newsletter.errors import RecipientRefused

    class RefusesData(SMTP):
        async def smtp_DATA(self, arg: str) -> None:
            await self.push("554 5.7.1 no data from you")

    class Accepting:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = type("RefusingController", (Controller,), {"factory": lambda self: RefusesData(self.handler)})(
        Accepting(), hostname="127.0.0.1", port=port,
    )
    controller.start()
    try:
        transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", username=None, password_env="UNUSED"))
        for _ in range(2):  # the second send reuses the connection
            with pytest.raises(RecipientRefused, match="554 5.7.1 no data from you"):
                transport.send(b"Subject: x\r\n\r\nhello\r\n", sender="papers@example.org", recipient="ada@example.org")
            assert transport._client is not None
        transport.close()
    finally:
        controller.stop()
