"""`digest --workers N`: readers shared out to forked processes, each with its own connection; still once per reader.

SIGTERM with workers: test_smtp.py's SIGTERM test runs with and without them.

A real SMTP server (aiosmtpd, STARTTLS and AUTH) on 127.0.0.1 receives everything; the outbox is a real SQLite file.
"""

from __future__ import annotations

from collections import Counter

import pytest
import smtp_server
from conftest import NOON, Deployment, fixed_clock
from smtp_server import MailServer
from test_smtp import (
    EVERYONE,
    _secrets,
    address,
    deploy,
    message_ids,
    outbox,
    statuses,
)

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
