"""What readers do from the email — unsubscribe, "more like this", "not for me" — and `resubscribe`.

Part of the pipeline layer: it reads the signed token (links), checks it
against the deployment and records the action in the store. The web app
(web.py) calls these; nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from .clock import utc_now
from .config import Config
from .errors import LinkError, SubscriberError
from .links import UNSUBSCRIBE, LinkClaim
from .pipeline import link_signer, open_store
from .subscribers import find_subscriber

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class ReaderAction:
    """What a link asks for, checked: enough for the web page to say what happened or will happen."""

    claim: LinkClaim
    subscriber_name: str
    entry_title: str | None  # the paper, for feedback links
    changed: bool = False  # False when the same click was recorded before (idempotent)


def read_link(config: Config, token: str, *, clock: Clock = utc_now) -> ReaderAction:
    """The checked claim of a link (LinkError: altered, foreign, expired, or about an unknown paper)."""
    signer = link_signer(config)
    if signer is None:
        raise LinkError("this newsletter has no base_url, so its emails carry no web links")
    # The day an email was made is its reader's local day; the earliest local day on Earth now (UTC-12)
    # is never ahead of it, so no link expires early wherever its reader lives.
    claim = signer.read(token, today=(clock().astimezone(dt.timezone.utc) - dt.timedelta(hours=12)).date())
    name = _subscriber_name(config, claim.subscriber_id)
    title = None
    if claim.entry_id is not None:
        with open_store(config, clock=clock, create=False) as store:
            found = store.entries_by_id([claim.entry_id])
        if not found:
            raise LinkError("this link is about a paper this newsletter no longer has")
        title = found[0].title
    return ReaderAction(claim, name, title)


def act_on_link(config: Config, token: str, *, clock: Clock = utc_now, via: str = "web") -> ReaderAction:
    """Do what a (POSTed) link asks: unsubscribe the reader, or record their feedback on a paper."""
    action = read_link(config, token, clock=clock)
    claim = action.claim
    with open_store(config, clock=clock) as store:
        if claim.action == UNSUBSCRIBE:
            changed = store.unsubscribe(claim.subscriber_id, via=via)
        else:
            changed = store.record_feedback(claim.subscriber_id, claim.entry_id or "", kind=claim.action)
    return ReaderAction(claim, action.subscriber_name, action.entry_title, changed=changed)


def resubscribe(config: Config, subscriber_id: str, *, clock: Clock = utc_now) -> bool:
    """Undo an unsubscribe; False if the reader was not unsubscribed. The subscriber file must exist."""
    if not (config.subscribers / f"{subscriber_id}.toml").is_file():
        raise SubscriberError(f'no subscriber "{subscriber_id}": {config.subscribers / (subscriber_id + ".toml")} does not exist')
    with open_store(config, clock=clock) as store:
        return store.resubscribe(subscriber_id)


def _subscriber_name(config: Config, subscriber_id: str) -> str:
    """The reader's name from their own file (not every file: a click costs one read); an unsubscribe still works
    for a file removed or broken since."""
    try:
        return find_subscriber(config.subscribers, subscriber_id).name
    except SubscriberError:
        return subscriber_id

