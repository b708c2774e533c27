"""`digest --workers N`: readers shared out to forked processes, each with its own connection; still once per reader.

A real SMTP server (aiosmtpd, STARTTLS and AUTH) on 127.0.0.1 receives everything; the outbox is a real SQLite file.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest
from conftest import NOON, Deployment, fixed_clock
import smtp_server
from smtp_server import WAIT, MailServer
from test_smtp import _secrets, EVERYONE, address, cli, counts, day_status, deploy, finish, message_ids, outbox, spawn, statuses

from newsletter import pipeline

smtp_ca, smtp_tls = smtp_server.smtp_ca, smtp_server.smtp_tls  # fixtures
__all__ = ["_secrets"]  # test_smtp's autouse fixture: the SMTP password and link secret in the environment


def test_two_workers_send_each_reader_exactly_one_digest(deployment: Deployment, smtp_tls: MailServer) -> None:
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers)
    seen: list[str] = []
    report = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), workers=2, batch_size=2, on_digest=lambda o: seen.append(o.subscriber))
    assert sorted(statuses(report)) == [(f"reader{n:02d}", "sent") for n in range(readers)], report
    assert sorted(seen) == [f"reader{n:02d}" for n in range(readers)]  # every outcome came back to the parent, once
    handler = smtp_tls.handler
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(readers)})
    rows = outbox(config)
    assert {row["status"] for row in rows} == {"sent"} and len(rows) == readers
    assert sorted(message_ids(handler)) == sorted(row["message_id"] for row in rows)
    assert len(handler.sessions) == 2  # one connection per worker, each reused for all its batches
    assert all(message.tls and message.login == "papers" for message in handler.received)

    again = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), workers=2, batch_size=2)
    assert {status for _, status in statuses(again)} == {"already-sent"}
    assert len(handler.received) == readers


def test_two_workers_build_the_same_digests_as_one(deployment: Deployment, smtp_tls: MailServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The shared pool and templates are built before the fork: each reader's papers match a one-process run."""
    readers = 8
    config = deploy(deployment, smtp_tls, readers=readers)
    dry = pipeline.DigestRequest(ignore_time=True, dry_run=True)
    one = pipeline.run_digests(config, dry, clock=fixed_clock(NOON))
    two = pipeline.run_digests(config, dry, clock=fixed_clock(NOON), workers=2, batch_size=3)
    shown = {o.subscriber: (o.status, o.items, o.considered, o.detail) for o in one.digests}
    assert {o.subscriber: (o.status, o.items, o.considered, o.detail) for o in two.digests} == shown
    assert {status for status, *_ in shown.values()} == {"dry-run"} and outbox(config) == []


def test_a_transport_object_cannot_be_shared_by_workers(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls, readers=1)
    with pytest.raises(ValueError, match="workers"):
        pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), workers=2, transport=pipeline.make_transport(config))


def test_sigterm_stops_the_workers_after_their_message_in_flight(deployment: Deployment, smtp_tls: MailServer) -> None:
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers, real_clock=True)
    handler = smtp_tls.handler
    handler.hold_data_from = 4  # the 4th message's 250 is held: it is in flight when SIGTERM comes
    process = spawn(config, "digest", "--all", "--workers", "2")
    try:
        handler.wait_for(lambda h: h.count() >= 4, what="the 4th message")
        process.send_signal(signal.SIGTERM)
        handler.hold_data_from = None
    finally:
        code, out, err = finish(process)
    print(f"\nSIGTERM with 2 workers: exit {code}\nstdout:\n{out}stderr:\n{err}")
    assert code == 0, (code, out, err)
    assert "Traceback" not in err and "stopped by a signal, the rest stays queued" in out
    first = outbox(config)
    sent = [row for row in first if row["status"] == "sent"]
    assert 4 <= len(sent) < readers  # the held message was finished and recorded; the run stopped before the end
    assert sorted(message_ids(handler)) == sorted(row["message_id"] for row in sent)  # the server has exactly what is recorded
    assert {row["status"] for row in first} <= {"sent", "queued"}

    rerun = subprocess.run(cli(config, "digest", "--all", "--workers", "2"), capture_output=True, text=True, timeout=WAIT * 3, env={**os.environ})
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(readers)})  # each reader exactly once
    (period,) = {row["period"] for row in outbox(config)}
    assert counts(day_status(config, period=period)) == {"sent": readers}
