"""One run's digests, batch by batch: prepare (rank, render, MIME), queue, send; on one or more processes.

Part of the pipeline layer: ``pipeline.run_digests`` hands it a ``BatchJob`` whose
``prepare`` builds one reader's message. Each batch of readers is prepared, then
queued in one transaction (every message stored before any of them is sent), then
sent through the outbox. Memory stays flat however many readers there are: only
one batch of messages exists at a time, in memory or in the outbox.

With ``workers`` > 1 the batches go to forked worker processes (the candidate pool
and compiled templates, built once before the fork, are shared copy-on-write);
each worker has its own database connection and its own mail transport. A reader
belongs to exactly one batch, and the outbox's claims keep the
at-most-one-message-in-flight promise per process. A worker killed by the OS
(SIGKILL) costs nothing but its own work: each worker talks to the parent on a
pipe of its own (no lock shared with another worker), the others take the
batches left, and the run reports the lost worker in one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import multiprocessing
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from .deliver import Transport
from .errors import StoreError, SubscriberError
from .models import DigestOutcome, Subscriber
from .outbox import DeliveryPolicy, RateLimiter, StopFlag, deliver_outbox, owner_id
from .store import NewDigest, Store
from .subscribers import Remembered, loaded

Clock = Callable[[], dt.datetime]
BATCH_SIZE = 100  # readers per batch: one commit queues them; small enough that a batch's messages stay a few MB
# What the reader stream gives: a Subscriber, or a file remembered unchanged that BatchJob.load turns into one in the
# process that prepares it (a worker), so the process handing batches out does not do that work for every reader.
ReaderItem = Subscriber | Remembered


class SharedStop:
    """A stop flag in memory shared with forked workers, set without a lock (so a signal handler may set it).

    With a ``threading.Event`` as ``stop`` the workers learn of a stop from the parent's next look
    at it; with this one, at once: none of them starts another message after SIGTERM.
    """

    def __init__(self) -> None:
        self._flag = multiprocessing.get_context("fork").RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def is_set(self) -> bool:
        return bool(self._flag.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


@dataclass(frozen=True)
class Prepared:
    """One reader's turn: the outcome so far, and the message to queue (None: nothing to send)."""

    outcome: DigestOutcome
    digest: NewDigest | None = None


@dataclass(frozen=True)
class Sending:
    """How a process sends: its transport (made on the first message, in the process that sends it), policy and clock."""

    make_transport: Callable[[], Transport]
    policy: DeliveryPolicy
    clock: Clock


@dataclass(frozen=True)
class BatchJob:
    prepare: Callable[[Store, Subscriber], Prepared]  # rank, render and build the message; no write but "empty"
    open_store: Callable[[], Store]  # each process opens its own connection
    sending: Sending
    warm: Callable[[], None] = lambda: None  # builds what workers share (pool, templates) before they fork
    start_batch: Callable[[Store, Sequence[Subscriber]], None] = lambda store, readers: None  # reads what a batch needs at once
    load: Callable[[ReaderItem], Subscriber] = loaded  # see ReaderItem


class Sender:
    """One process's sending side: the transport (connected on the first message), the rate limit, and
    whether the server turned out to be unavailable (the rest of the run then leaves its digests queued).
    """

    def __init__(
        self, sending: Sending, store: Store, *, stop: StopFlag | None = None, limiter: RateLimiter | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.sending, self.store, self.stop = sending, store, stop
        self.limiter = limiter or RateLimiter(sending.policy.rate_limit, stop=stop)
        self.transport: Transport = transport or _LazyTransport(sending.make_transport)
        self._own_transport = transport is None
        self.server_down = False

    def deliver(
        self, *, ids: Sequence[int] | None = None, subscribers: Sequence[str] | None = None, built: dict[int, DigestOutcome] | None = None,
        messages: dict[int, bytes] | None = None,
    ) -> Iterator[DigestOutcome]:
        """Send what is due in the outbox (narrowed to these digest ids or readers)."""
        if self.server_down:
            if messages:  # this batch was queued with its bytes in memory only: stored for the next run
                self.store.keep_messages(messages)
            for outcome in (built or {}).values():
                yield replace(outcome, detail="not tried: the server is unavailable; the next run retries")
            return
        outcomes = deliver_outbox(
            self.store, self.transport, policy=self.sending.policy, clock=self.sending.clock, ids=ids, subscribers=subscribers,
            built=built, stop=self.stop, limiter=self.limiter, messages=messages,
        )
        for outcome in outcomes:
            self.server_down = self.server_down or outcome.status == "unavailable"
            yield outcome
        self.transport.flush()

    def close(self) -> None:
        """The end of this process's sending: the transport closed, the sent messages' bytes dropped from the outbox."""
        try:
            with contextlib.suppress(StoreError):  # left for the next run to drop; an error on its way is the one to see
                self.store.forget_sent_messages()
        finally:
            if self._own_transport:
                self.transport.close()


class _LazyTransport:
    """Connects (makes the real transport) on the first message: a run with nothing to send never connects."""

    def __init__(self, make: Callable[[], Transport]) -> None:
        self._make = make
        self._transport: Transport | None = None

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        if self._transport is None:
            self._transport = self._make()
        return self._transport.send(message, sender=sender, recipient=recipient)

    def flush(self) -> None:
        if self._transport is not None:
            self._transport.flush()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def run_batch(job: BatchJob, sender: Sender, items: Sequence[ReaderItem], *, stop: StopFlag | None) -> Iterator[DigestOutcome]:
    """Prepare each reader's digest, queue the batch in one transaction, then send it."""
    readers: list[Subscriber] = []
    for item in items:
        try:
            readers.append(job.load(item))
        except SubscriberError as exc:  # what the store remembers of the file is damaged: this reader only
            yield DigestOutcome(item.id, "failed", detail=str(exc))
    ready: list[Prepared] = []
    job.start_batch(sender.store, readers)
    for reader in readers:
        if stop is not None and stop.is_set():
            break  # not prepared, nothing recorded: the next run builds it
        prepared = job.prepare(sender.store, reader)
        if prepared.digest is None:
            yield prepared.outcome
        else:
            ready.append(prepared)
    if not ready:
        return
    ids = sender.store.queue_digests([prepared.digest for prepared in ready if prepared.digest is not None], sender=owner_id())
    built: dict[int, DigestOutcome] = {}
    messages: dict[int, bytes] = {}  # the bytes just stored: sent from memory, not read back
    for prepared, digest_id in zip(ready, ids):
        if digest_id is None:
            yield replace(prepared.outcome, detail="another run queued it first")
        elif prepared.digest is not None:
            built[digest_id], messages[digest_id] = prepared.outcome, prepared.digest.message
    if built:
        yield from sender.deliver(ids=list(built), built=built, messages=messages)


def run_batches(
    job: BatchJob, readers: Iterable[ReaderItem], *, sender: Sender, stop: StopFlag | None,
    report: Callable[[DigestOutcome], None], size: int = BATCH_SIZE,
) -> None:
    """Every reader, batch by batch, in this process (``sender`` carries the transport across batches).

    After each batch, what it built to stay (the candidate pool, the templates, the caches readers
    share, which grow as readers bring new keywords and papers) is frozen out of the garbage
    collector's full passes, which would otherwise walk it again and again: at 10,000 readers the
    collector took 0.93 s freezing after the first batch only, 0.40 s freezing after each, with the
    same peak memory (what a batch leaves is freed by reference counting). It is given back at the end.
    """
    frozen = False
    try:
        for batch in _batched(readers, size):
            if stop is not None and stop.is_set():
                return
            for outcome in run_batch(job, sender, batch, stop=stop):
                report(outcome)
            gc.freeze()
            frozen = True
    finally:
        if frozen:
            gc.unfreeze()


def run_batches_in_workers(
    job: BatchJob, readers: Iterable[ReaderItem], *, workers: int, stop: threading.Event | SharedStop | None,
    report: Callable[[DigestOutcome], None], size: int = BATCH_SIZE,
) -> list[str]:
    """The same on ``workers`` forked processes; outcomes come back here (reported as they arrive).

    ``job.warm`` builds what the workers share (the candidate pool, the templates) before the fork.
    A SIGINT/SIGTERM or ``stop`` ends every worker after its message in flight.

    Each worker has a pipe of its own to the parent, on which it asks for its next batch: no lock is
    shared between two workers (a shared queue's is), so one killed by the OS (SIGKILL: the OOM killer)
    cannot block another, which goes on with the batches left. Returns one line per worker lost so.
    """
    job.warm()
    gc.collect()
    gc.freeze()  # the shared objects stay out of the collector's way: fewer copy-on-write page copies in the workers
    context = multiprocessing.get_context("fork")
    halt = stop if isinstance(stop, SharedStop) else SharedStop()
    policy = job.sending.policy
    share = replace(policy, rate_limit=max(1, policy.rate_limit // workers) if policy.rate_limit else 0)  # the limit is for all of them
    each = replace(job, sending=replace(job.sending, policy=share))
    pipes = [context.Pipe() for _ in range(workers)]  # (the parent's end, the worker's end)
    processes = [
        context.Process(target=_worker, args=(each, pipes, n, halt), name=f"digest-worker-{n}", daemon=True)
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    for _, theirs in pipes:
        theirs.close()  # now only its worker holds it: the parent reads EOF as soon as that worker is gone
    try:
        failures, lost = _feed_and_collect(
            _batched(readers, size), {ours: process for (ours, _), process in zip(pipes, processes)}, halt=halt, stop=stop, report=report,
        )
    except BaseException:
        halt.set()  # reading the readers failed here: the workers finish their message in flight and stop
        raise
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
        for ours, _ in pipes:
            ours.close()
        gc.unfreeze()
    if failures:
        raise RuntimeError("; ".join(failures + lost))
    return lost


def _feed_and_collect(
    batches: Iterator[list[ReaderItem]], workers: dict[Connection, BaseProcess], *, halt: SharedStop,
    stop: threading.Event | SharedStop | None, report: Callable[[DigestOutcome], None],
) -> tuple[list[str], list[str]]:
    """Hand a batch to each worker that asks for one, report outcomes, until every worker has ended.

    Returns the workers' failures (bugs) and a line for each worker lost (killed).
    """
    pending: list[ReaderItem] | None = next(batches, None)
    live = dict(workers)
    failures: list[str] = []
    lost: list[str] = []
    while live:
        if stop is not None and stop.is_set():
            halt.set()
        if halt.is_set():
            pending = None
        ready: list[Any] = wait(list(live), timeout=0.2)  # the timeout only looks at ``stop`` again
        for channel in ready:
            try:
                kind, payload = channel.recv()
            except (EOFError, OSError):  # the worker is gone (a reset if it died with a batch unread); all it said was read
                lost.extend(_lost(live.pop(channel)))
                continue
            if kind == "outcome":
                report(payload)
            elif kind == "failed":
                failures.append(payload)
            elif _hand(channel, pending) and pending is not None:  # it asked for a batch: its next, or None (no more)
                pending = next(batches, None)
    return failures, lost


def _hand(channel: Connection, batch: list[ReaderItem] | None) -> bool:
    """Send a worker its next batch; False if it died since it asked (the batch goes to the next one that asks)."""
    try:
        channel.send(batch)
    except OSError:  # its end is closed: EOF comes next
        return False
    return True


def _lost(process: BaseProcess) -> list[str]:
    """The one line that says a worker was killed (nothing for one that ended normally, failure or not)."""
    process.join(timeout=60)  # its pipe closed as it exited: the exit status is a moment away
    code = process.exitcode
    if code == 0:
        return []
    if code is None:
        how = "stopped answering"
    elif code < 0:
        how = f"was killed by {_signal_name(-code)}" + (" (out of memory? try fewer --workers)" if -code == signal.SIGKILL else "")
    else:
        how = f"exited with status {code}"
    return [(
        f"digest worker {process.name} (pid {process.pid}) {how}; nothing is lost: the next run sends what it left"
        " queued or in flight (that one message may arrive twice) and builds the readers it had not reached"
    )]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        return f"signal {number}"


def _worker(job: BatchJob, pipes: list[tuple[Connection, Connection]], number: int, halt: SharedStop) -> None:
    """A forked worker: its own connection, transport and pipe; it asks for batches until there are no more, or a halt."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # finish the message in flight, then stop (as the CLI does)
        signal.signal(signum, lambda *_: halt.set())
    channel = pipes[number][1]
    for n, (parents, workers) in enumerate(pipes):  # only its own end stays open here: its pipe ends with it
        parents.close()
        if n != number:
            workers.close()
    try:
        store = job.open_store()
        sender = Sender(job.sending, store, stop=halt)
        try:
            while not halt.is_set():
                channel.send(("ready", None))
                batch = _next_batch(channel, halt)
                if batch is None:
                    break
                for outcome in run_batch(job, sender, batch, stop=halt):
                    channel.send(("outcome", outcome))
                gc.freeze()  # what the batch built to stay joins the frozen heap of the fork, as in run_batches
        finally:
            sender.close()
            store.close()
    except BaseException as exc:  # a bug: the parent reports it; what this worker queued stays in the outbox
        channel.send(("failed", f"digest worker {multiprocessing.current_process().name}: {exc!r}\n{traceback.format_exc()}"))


def _next_batch(channel: Connection, halt: SharedStop) -> list[ReaderItem] | None:
    """The batch the parent hands over; None when there are no more, or on a halt (which ends the wait too)."""
    while not channel.poll(0.2):
        if halt.is_set():
            return None
    batch: list[ReaderItem] | None = channel.recv()
    return batch


def _batched(readers: Iterable[ReaderItem], size: int) -> Iterator[list[ReaderItem]]:
    iterator = iter(readers)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
