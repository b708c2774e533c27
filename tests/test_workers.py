"""`digest --workers N`: readers shared out to forked processes, each with its own connection; still once per reader.

SIGTERM with workers: test_smtp.py's SIGTERM test runs with and without them.

A real SMTP server (aiosmtpd, STARTTLS and AUTH) on 127.0.0.1 receives everything; the outbox is a real SQLite file.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import smtp_server
from conftest import NOON, Deployment, fixed_clock
from smtp_server import WAIT, MailServer
from test_smtp import (
    EVERYONE,
    _secrets,
    address,
    deploy,
    message_ids,
    outbox,
    reader_toml,
    recipients,
    rows,
    statuses,
)

from newsletter import pipeline
from newsletter.config import Config

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


# --- a worker killed by the OS (SIGKILL, as the OOM killer does) in the middle of a run ---------------------------

HELD_FROM = 5  # the server holds every message from the 5th on: each worker ends up with one message in flight, held
# Where the SIGKILL lands: which reply the server holds, and when both workers are held (each has one message in flight).
KILL_POINTS = {
    # the server accepted the message and holds its 250: the killed worker dies not knowing it went out (the one duplicate)
    "after-data": ("hold_data_from", lambda h: h.count() >= HELD_FROM + 1),
    # the worker sent RCPT and waits for the reply: it dies before its message leaves (no duplicate)
    "in-rcpt": ("hold_rcpt_from", lambda h: sum(h.rcpt_attempts.values()) >= HELD_FROM + 1),
}


def run_in_thread(config: Config, **options: Any) -> Callable[[], pipeline.RunReport]:
    """``run_digests`` in a thread (the test goes on while it runs); the returned wait() fails the test if the run hangs."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["report"] = pipeline.run_digests(config, EVERYONE, clock=fixed_clock(NOON), **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails with it
            done["error"] = exc

    thread = threading.Thread(target=run, name="digest-run", daemon=True)  # daemon: a hung run cannot keep pytest alive
    thread.start()

    def wait() -> pipeline.RunReport:
        thread.join(timeout=WAIT * 2)
        assert not thread.is_alive(), "the run hung"
        if "error" in done:
            raise done["error"]
        return done["report"]

    return wait


def pid_of(claim: str) -> int:
    host, _, pid = claim.rpartition(":")
    assert host == socket.gethostname(), claim
    return int(pid)


def wait_until_dead(pid: int) -> None:
    """Until the kernel has ended the process (a zombie not yet reaped, or gone): nothing of it runs any more."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still runs {WAIT:.0f}s after SIGKILL")


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_a_worker_killed_mid_run_loses_no_digest_the_run_ends_saying_so_and_the_next_run_sends_the_rest(
    deployment: Deployment, smtp_tls: MailServer, kill_point: str,
) -> None:
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers)
    handler = smtp_tls.handler
    hold, both_held = KILL_POINTS[kill_point]
    setattr(handler, hold, HELD_FROM)
    finished = run_in_thread(config, workers=2, batch_size=2)
    try:
        handler.wait_for(both_held, what="a message of each worker held")
        at_kill = rows(config)
        claims = {row["subscriber"]: pid_of(row["claimed_by"]) for row in at_kill.values() if row["status"] == "sending"}
        assert len(set(claims.values())) == 2, at_kill  # one message in flight in each worker
        sent_by = Counter(pid_of(row["claimed_by"]) for row in at_kill.values() if row["status"] == "sent")
        victim = max(claims.values(), key=lambda pid: sent_by[pid])  # 4 messages sent by two workers: it sent 2 or more
        assert sent_by[victim] >= 1, sent_by
        name = {child.pid: child.name for child in multiprocessing.active_children()}[victim]
        assert name.startswith("digest-worker-"), name
        (in_flight,) = [subscriber for subscriber, pid in claims.items() if pid == victim]
        os.kill(victim, signal.SIGKILL)
        wait_until_dead(victim)
    finally:
        setattr(handler, hold, None)  # the survivor's held message goes on
    first = finished()

    # The run ended and said, in one line, which worker was lost and what becomes of its digests.
    assert not first.ok
    (problem,) = first.problems
    assert "\n" not in problem and name in problem and "SIGKILL" in problem and "next run" in problem, problem
    # Nothing is lost: every reader's digest is in the outbox, sent, queued or claimed by the dead worker.
    after = rows(config)
    assert set(after) == {f"reader{n:02d}" for n in range(readers)}
    assert {row["status"] for row in after.values()} <= {"sent", "queued", "sending"}, after
    assert [subscriber for subscriber, row in after.items() if row["status"] == "sending"] == [in_flight]
    assert pid_of(after[in_flight]["claimed_by"]) == victim and not Path(f"/proc/{victim}").exists()  # abandoned: its owner is gone
    reported = {outcome.subscriber for outcome in first.digests if outcome.status == "sent"}
    recorded = {subscriber for subscriber, row in after.items() if row["status"] == "sent"}
    assert reported <= recorded  # and what is recorded but was not reported, the dead worker sent (its last words died with it)
    assert {pid_of(after[subscriber]["claimed_by"]) for subscriber in recorded - reported} <= {victim}, (recorded - reported)

    second = run_in_thread(config, workers=2, batch_size=2)()
    assert second.ok and not second.problems, second
    left = {subscriber for subscriber, row in after.items() if row["status"] != "sent"}
    assert {outcome.subscriber for outcome in second.digests if outcome.status == "sent"} == left, second
    assert {row["status"] for row in rows(config).values()} == {"sent"}

    # Each reader received their digest; only the message in flight at the kill may have arrived twice. The dead
    # worker's bytes died with it: the second run gave its unsent digests back and built them again (new Message-IDs).
    assert {row["message_id"] for row in after.values() if row["status"] == "sent"} <= set(message_ids(handler))
    arrived = Counter(recipients(handler))
    assert set(arrived) == {row["recipient"] for row in after.values()} and len(arrived) == readers
    twice = [recipient for recipient, n in arrived.items() if n > 1]
    assert max(arrived.values()) <= 2 and len(twice) <= 1, arrived
    if kill_point == "after-data":  # the server had it, the worker never heard its 250: the one duplicate the design allows
        assert twice == [after[in_flight]["recipient"]]
    else:  # claimed, never sent: sent once, by the second run
        assert twice == []
    print(f"\n[{kill_point}] killed {name} (pid {victim}) after {sent_by[victim]} sent, {in_flight} in flight; "
          f"{len(left)} left for the second run; received twice: {twice or 'none'}; problem: {problem}")


def wait_for_rows(config: Config, predicate: Callable[[dict[str, dict[str, Any]]], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate(rows(config)):
        assert time.monotonic() < deadline, f"timed out after {WAIT:.0f}s waiting for {what}"
        time.sleep(0.02)


def slow_file(deployment: Deployment, number: int) -> Path:
    """Reader ``number``'s file as a named pipe: the parent, which reads subscriber files as the batches need them,
    waits on it until the test writes the file (write_slow_file)."""
    path = deployment.root / "subscribers" / f"reader{number:02d}.toml"
    path.unlink()
    os.mkfifo(path)
    return path


def write_slow_file(path: Path, number: int) -> None:
    """Gives the parent the file (in a thread: opening a named pipe waits for its reader); then a plain file for later runs."""
    def write() -> None:
        path.write_text(reader_toml(number))
        path.unlink()
        path.write_text(reader_toml(number))

    threading.Thread(target=write, daemon=True).start()


def the_idle_worker(config: Config, smtp_tls: MailServer) -> Any:
    """Once readers 0-6 are sent and reader07's message is held in flight: the worker that is not sending it."""
    smtp_tls.handler.wait_for(lambda h: address(7) in h.recipients(), what="reader07's message")
    wait_for_rows(config, lambda now: all(now[f"reader{n:02d}"]["status"] == "sent" for n in range(7)), "readers 0-6 sent")
    busy = pid_of(rows(config)["reader07"]["claimed_by"])
    (idle,) = [child for child in multiprocessing.active_children() if child.name.startswith("digest-worker-") and child.pid != busy]
    return idle


def test_a_worker_killed_while_it_waits_for_a_batch_does_not_stop_the_other(deployment: Deployment, smtp_tls: MailServer) -> None:
    """No lock is shared between two workers: one killed while it waits for its next batch cannot hold the other's up."""
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers)
    handler = smtp_tls.handler
    # The parent reads subscriber files as the batches need them; reader08's is a named pipe that gives nothing until the
    # test writes it. So after four batches the parent waits there, and a worker that is done waits for a batch.
    slow = slow_file(deployment, 8)
    handler.hold_data_for.add(address(7))  # the other worker has reader07's message in flight, held until the kill is done
    finished = run_in_thread(config, workers=2, batch_size=2)
    try:
        idle = the_idle_worker(config, smtp_tls)
        os.kill(idle.pid, signal.SIGKILL)
        wait_until_dead(idle.pid)
    finally:
        handler.hold_data_for.clear()
        write_slow_file(slow, 8)
    first = finished()

    (problem,) = first.problems
    assert "\n" not in problem and idle.name in problem and "SIGKILL" in problem, problem
    assert {subscriber: row["status"] for subscriber, row in rows(config).items()} == {f"reader{n:02d}": "sent" for n in range(readers)}
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(readers)})  # the survivor built and sent the rest
    second = run_in_thread(config, workers=2, batch_size=2)()
    assert second.ok and {outcome.status for outcome in second.digests} == {"already-sent"}, second
    assert len(handler.received) == readers
    print(f"\n[idle] killed {idle.name} (pid {idle.pid}) waiting for a batch; the other sent the rest; problem: {problem}")


def test_a_worker_killed_before_it_read_the_batch_handed_to_it_leaves_that_batch_to_the_next_run(
    deployment: Deployment, smtp_tls: MailServer,
) -> None:
    """The batch is in the dead worker's pipe, unread: nobody built it; the run says so in one line, the next run builds it."""
    readers = 12
    config = deploy(deployment, smtp_tls, readers=readers)
    handler = smtp_tls.handler
    fifth, sixth = slow_file(deployment, 8), slow_file(deployment, 10)  # the first readers of batches 5 and 6
    handler.hold_data_for.add(address(7))  # the other worker stays busy with reader07 meanwhile: batch 5 can go only to this one
    finished = run_in_thread(config, workers=2, batch_size=2)
    try:
        idle = the_idle_worker(config, smtp_tls)
        os.kill(idle.pid, signal.SIGSTOP)  # it asked for a batch, and will not read the one it gets
        write_slow_file(fifth, 8)
        # The parent reads batch 6 only after handing batch 5 out: once it opens reader10's file, batch 5 is in the pipe.
        writer = open_when_read(sixth)
        os.kill(idle.pid, signal.SIGKILL)
        wait_until_dead(idle.pid)
        with os.fdopen(writer, "w") as file:
            file.write(reader_toml(10))
        sixth.unlink()
        sixth.write_text(reader_toml(10))
    finally:
        handler.hold_data_for.clear()
    first = finished()

    (problem,) = first.problems
    assert "\n" not in problem and idle.name in problem and "SIGKILL" in problem and "not reached" in problem, problem
    after = rows(config)
    never_built = {f"reader{n:02d}" for n in range(readers)} - set(after)
    assert never_built == {"reader08", "reader09"}, after  # batch 5, unread in the dead worker's pipe
    assert {row["status"] for row in after.values()} == {"sent"}

    second = run_in_thread(config, workers=2, batch_size=2)()
    assert second.ok and {o.subscriber for o in second.digests if o.status == "sent"} == never_built, second
    assert Counter(handler.recipients()) == Counter({address(n): 1 for n in range(readers)})
    print(f"\n[batch unread] killed {idle.name} (pid {idle.pid}) with batch 5 in its pipe; the second run built {sorted(never_built)}")


def open_when_read(path: Path) -> int:
    """A descriptor writing to the named pipe ``path``, once the parent has opened it to read (it then waits for the text)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) while no one has it open to read
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
        time.sleep(0.01)
