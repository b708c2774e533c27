"""Delivering the outbox: claim, send, record — with backoff, bounces, a rate limit and a clean stop.

Part of the pipeline layer (it wires ``store`` and ``deliver``; no stage
imports it). Every digest is already rendered and stored as queued before
this runs, so a crash anywhere loses nothing: the next run finds the rows.
A batch just queued by this process is sent from the bytes in memory; the
outbox keeps a message's bytes only when it is not sent now (a retry, a
bounce, a stop). Rows whose bytes died with their process are given back:
their papers return to the reader, whom the run then builds a digest for anew.

Exactly-once, as far as SMTP allows: a row is claimed ("sending", with this
process's host:pid) in one transaction before the message leaves, and marked
sent in another right after. A process killed between the two leaves one
"sending" row; the next run sees its process is gone and sends it again —
the single message that can arrive twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from .errors import DeliveryError, RecipientRefused, ServerUnavailable, StoreError
from .models import DigestOutcome
from .store import DeliveryOutcome, QueuedDigest, Store

Clock = Callable[[], dt.datetime]
CLAIM_LEASE = dt.timedelta(minutes=10)  # a claim older than this is abandoned, whoever holds it


@dataclass(frozen=True)
class DeliveryPolicy:
    sender: str
    max_attempts: int = 8
    retry_after: int = 60  # seconds before the first retry, doubled after each further failure
    rate_limit: int = 0  # messages per minute, 0 = no limit


class StopFlag(Protocol):
    """A threading.Event, or a multiprocessing one shared with worker processes."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class RateLimiter:
    """At most ``per_minute`` sends a minute, spaced evenly; waiting ends early when ``stop`` is set."""

    def __init__(self, per_minute: int, *, monotonic: Callable[[], float] = time.monotonic, stop: StopFlag | None = None,
                 sleep: Callable[[float], object] | None = None) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._monotonic = monotonic
        self._sleep = sleep or (stop.wait if stop is not None else time.sleep)
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self._monotonic()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def deliver_outbox(
    store: Store, transport: object, *, policy: DeliveryPolicy, clock: Clock, subscribers: Iterable[str] | None = None,
    ids: Iterable[int] | None = None, built: dict[int, DigestOutcome] | None = None, stop: StopFlag | None = None,
    limiter: RateLimiter | None = None, messages: dict[int, bytes] | None = None,
) -> Iterator[DigestOutcome]:
    """Send every due digest (fresh ones, retries whose time has come, abandoned claims); one outcome each.

    ``subscribers`` or ``ids`` narrow it to those readers or digests. ``built`` holds the outcomes of
    digests this run just queued (subject, counts), keyed by digest id, and ``messages`` their bytes,
    still in memory (so they are not read back). A bounce is recorded and the batch goes on; a server
    that cannot be reached stops the batch. A message's "sent" is committed with the next one's claim
    (_SentLast); each outcome is reported once it is recorded.
    """
    built = built or {}
    limiter = limiter or RateLimiter(policy.rate_limit, stop=stop)
    pending = store.pending_digests(subscribers, ids=ids, due_by=clock())
    last = _SentLast(store)
    held = dict(messages or {})  # bytes the outbox may not have: stored at the end for any digest this call did not handle
    try:
        for position, queued in enumerate(pending):
            if queued.status == "sending" and not _abandoned(queued, now=clock()):
                continue  # another live process is sending it right now
            message = (messages or {}).get(queued.id)
            if not queued.kept and message is None:  # queued by a process that sends it from memory
                if _abandoned(queued, now=clock()) and store.give_back_digest(queued):
                    yield DigestOutcome(queued.subscriber, "queued", queued.period, detail=_GIVEN_BACK)
                continue
            if limiter.interval:  # a pause never holds a sent message unrecorded
                yield from last.record()
            limiter.wait()  # ends early when stop is set: checked right after, so a stop during the pause sends nothing more
            if stop is not None and stop.is_set():
                yield from last.record()
                yield from _left_queued(pending[position:], built, "stopped before sending; the next run sends it")
                return
            claim = store.claim_digest(queued, owner=owner_id(), after=last.attempt())
            previous = last.committed()
            try:
                outcome, server_down = _send_claimed(store, transport, queued, claim, policy=policy, message=message)
                held.pop(queued.id, None)
            except BaseException:  # a bug or an interrupt: the message recorded with this claim is still reported first
                if previous is not None:
                    yield previous
                raise
            if outcome.status == "sent":
                last.hold(queued.id, DeliveryOutcome(policy.max_attempts, policy.retry_after, reply=outcome.detail), _merged(outcome, built.get(queued.id)))
            if previous is not None:  # reported only now: at every yield, each message sent is recorded or held
                yield previous
            if outcome.status != "sent":
                yield _merged(outcome, built.get(queued.id))
                if server_down:
                    yield from _left_queued(pending[position + 1 :], built, "not tried: the server is unavailable; the next run retries")
                    return
        yield from last.record()
    finally:
        last.record_quietly()  # the consumer stopped early, or an error is on its way: still never forget a sent message
        if held:  # not tried (a stop, a server down), a bug, an interrupt, rows not due by this clock: kept for a later run
            with contextlib.suppress(StoreError):
                store.keep_messages(held)


class _SentLast:
    """The message sent last, whose "sent" mark rides on the next claim's commit: one commit per message, not two.

    As before, at most one claimed message is sent and unrecorded at any time (the one a killed
    process may send twice); it is recorded on its own when the run pauses, stops or ends.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: tuple[int, DeliveryOutcome, DigestOutcome] | None = None

    def hold(self, digest_id: int, attempt: DeliveryOutcome, outcome: DigestOutcome) -> None:
        self._waiting = (digest_id, attempt, outcome)

    def attempt(self) -> tuple[int, DeliveryOutcome] | None:
        """What the next claim's transaction records first."""
        return None if self._waiting is None else self._waiting[:2]

    def committed(self) -> DigestOutcome | None:
        """The held outcome, now that the claim carrying it has committed."""
        if self._waiting is None:
            return None
        outcome, self._waiting = self._waiting[2], None
        return outcome

    def record(self) -> Iterator[DigestOutcome]:
        if self._waiting is not None:
            self._store.finish_digest(*self._waiting[:2])
            outcome, self._waiting = self._waiting[2], None
            yield outcome

    def record_quietly(self) -> None:
        if self._waiting is not None:
            with contextlib.suppress(StoreError):  # the database is failing: the error already on its way says so
                self._store.finish_digest(*self._waiting[:2])
            self._waiting = None


def _send_claimed(
    store: Store, transport: object, queued: QueuedDigest, claim: str, *, policy: DeliveryPolicy, message: bytes | None = None,
) -> tuple[DigestOutcome, bool]:
    """Send a claimed digest and record a failure: (the outcome, whether the server is unavailable for the rest of the batch).

    A success is not recorded here: the caller commits it with the next claim (_SentLast).
    Only the claimed message can be in flight twice (if this process dies mid-send).
    """
    if claim == "cancelled":
        return DigestOutcome(queued.subscriber, "unsubscribed", queued.period, detail="the reader unsubscribed; not sent"), False
    if claim == "taken":
        return DigestOutcome(queued.subscriber, "queued", queued.period, detail="another process claimed it first"), False
    attempt = {"max_attempts": policy.max_attempts, "retry_after": policy.retry_after}
    keep = None if queued.kept else message  # bytes the outbox has not got: stored with a failure, for the retry
    try:
        message = message if message is not None else store.message_of(queued.id)
        reply = transport.send(message, sender=policy.sender, recipient=queued.recipient)  # type: ignore[attr-defined]
    except RecipientRefused as exc:
        store.finish_digest(queued.id, DeliveryOutcome(**attempt, error=str(exc), reply=_reply_of(exc), permanent=True), message=keep)
        return DigestOutcome(queued.subscriber, "bounced", queued.period, detail=str(exc)), False
    except ServerUnavailable as exc:  # the server's fault, not this message's: no attempt counted, no backoff, never given up
        store.release_digest(queued.id, error=str(exc), message=keep)
        return DigestOutcome(queued.subscriber, "unavailable", queued.period, detail=f"{exc}; the next run retries"), True
    except DeliveryError as exc:
        status = store.finish_digest(queued.id, DeliveryOutcome(**attempt, error=str(exc), reply=_reply_of(exc)), message=keep)
        if status == "failed":
            return DigestOutcome(queued.subscriber, "failed", queued.period, detail=f"{exc} (gave up after {policy.max_attempts} attempts)"), False
        return DigestOutcome(queued.subscriber, "retrying", queued.period, detail=f"{exc} (will retry)"), False
    return DigestOutcome(queued.subscriber, "sent", queued.period, detail=reply), False


def _reply_of(exc: DeliveryError) -> str | None:
    """The server's "550 5.1.1 <ada@...>: Recipient address rejected: ..." that ends a delivery error, when there is one.

    deliver.py puts the reply last, after ": "; the reply's own text may hold ": " too, so the first "<: ><3 digits>" starts it.
    """
    found = re.search(r": ([2-5]\d\d(?:[ -].*)?)$", str(exc))
    return found.group(1) if found else None


def _merged(outcome: DigestOutcome, built: DigestOutcome | None) -> DigestOutcome:
    """A fresh digest's outcome keeps its subject and counts; one from an earlier run says so."""
    if built is None:
        return replace(outcome, detail=f"from the outbox: {outcome.detail}")
    detail = built.detail if outcome.status == "sent" else outcome.detail
    return replace(outcome, items=built.items, considered=built.considered, detail=detail)


_GIVEN_BACK = "its run ended before sending it, and its message went with it: built again by this or the next digest run (unless the reader's file is gone)"


def _left_queued(rest: list[QueuedDigest], built: dict[int, DigestOutcome], why: str) -> Iterator[DigestOutcome]:
    """The digests not tried now (deliver_outbox stores the bytes it holds of them as it ends)."""
    for queued in rest:
        if queued.id in built:
            yield replace(built[queued.id], status="queued", detail=why)


def owner_id() -> str:
    """host:pid of this process (computed each time: a forked worker is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(queued: QueuedDigest, *, now: dt.datetime) -> bool:
    """A "sending" claim whose process is gone (same host, pid not running) or whose lease ran out."""
    if queued.claimed_at is None or dt.datetime.fromisoformat(queued.claimed_at) + CLAIM_LEASE < now:
        return True
    host, _, pid = (queued.claimed_by or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or queued.claimed_by == owner_id():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
