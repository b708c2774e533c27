"""The links a digest carries, and reading them back: unsubscribe, "more like this", "not for me".

Without ``base_url`` an email carries only a ``mailto:`` unsubscribe. With it,
every link carries a token signed with itsdangerous (HMAC over the payload)
using the secret from the environment variable ``[web] secret_env`` names,
so the web app can trust a click with no state in the URL. The payload names
the action, the reader, the paper (for feedback) and the day the email was
made: a link is the same all that day (``preview`` renders exactly what
would be sent) and expires a fixed number of days later.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from .errors import ConfigError, LinkError

UNSUBSCRIBE = "unsubscribe"
MORE, LESS = "more", "less"  # "more like this", "not for me"
UNSUBSCRIBE_DAYS = 366  # an unsubscribe link works for a year: readers unsubscribe from old emails too


@dataclass(frozen=True)
class DigestLinks:
    """Where one reader's email points: the footer link, the List-Unsubscribe targets, each paper's feedback."""

    unsubscribe: str  # what the footer links to: the https URL when there is one, else the mailto
    unsubscribe_mailto: str
    unsubscribe_https: str | None = None  # also the RFC 8058 one-click POST target
    feedback: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # entry id -> (more-like-this URL, not-for-me URL)


@dataclass(frozen=True)
class LinkClaim:
    """What a valid token says."""

    action: str  # UNSUBSCRIBE | MORE | LESS
    subscriber_id: str
    entry_id: str | None
    issued: dt.date


class LinkSigner:
    """Signs the tokens in the email's links and reads them back."""

    def __init__(self, secret: str, *, feedback_days: int = 90) -> None:
        self._serializer = URLSafeSerializer(secret, salt="newsletter-links")  # the issue day is in the payload
        self.feedback_days = feedback_days
        signer = self._serializer.make_signer()  # the Signer dumps() would make afresh for every token
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)  # key derived once, not per token
        self._sep = signer.sep

    def sign(self, action: str, subscriber_id: str, *, issued: dt.date, entry_id: str | None = None) -> str:
        """The token URLSafeSerializer.dumps gives for the claim (read() loads it), made in ~half its time: an email
        with 8 papers carries 17 of them. tests/test_links.py checks the two agree."""
        value = self._serializer.dump_payload([action, subscriber_id, entry_id, issued.isoformat()])  # JSON, zlib, base64
        mac = self._mac.copy()  # the Signer's HMAC, its key derived once
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")

    def read(self, token: str, *, today: dt.date) -> LinkClaim:
        """The claim in ``token``, or LinkError: altered, signed with another secret, malformed, or expired."""
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            raise LinkError("this link was altered or was not made by this newsletter") from None
        claim = _claim(payload)
        days = UNSUBSCRIBE_DAYS if claim.action == UNSUBSCRIBE else self.feedback_days
        if today > claim.issued + dt.timedelta(days=days):
            expired = claim.issued + dt.timedelta(days=days)
            raise LinkError(f"this link expired on {expired:%d %B %Y}; use the links in a recent email")
        return claim


def _claim(payload: object) -> LinkClaim:
    if not (isinstance(payload, list) and len(payload) == 4 and payload[0] in (UNSUBSCRIBE, MORE, LESS)):
        raise LinkError("this link is not one of ours")
    action, subscriber_id, entry_id, issued = payload
    try:
        day = dt.date.fromisoformat(issued)
    except (TypeError, ValueError):
        raise LinkError("this link is not one of ours") from None
    if not isinstance(subscriber_id, str) or (entry_id is not None and not isinstance(entry_id, str)) or (action != UNSUBSCRIBE and not entry_id):
        raise LinkError("this link is not one of ours")
    return LinkClaim(action, subscriber_id, entry_id, day)


def signer_from_env(*, secret_env: str, config_path: object, feedback_days: int = 90) -> LinkSigner:
    secret = os.environ.get(secret_env, "")
    if len(secret) < 16:
        state = "is not set" if not secret else "is shorter than 16 characters"
        raise ConfigError(
            f"{config_path}: newsletter.base_url is set, so links are signed, but the environment variable "
            f"{secret_env} ([web] secret_env) {state}; set it to a long random string"
        )
    return LinkSigner(secret, feedback_days=feedback_days)


@functools.lru_cache(maxsize=32)  # the sender is the same for a whole run; parseaddr costs ~7 us an email
def _address(sender: str) -> str:
    return parseaddr(sender)[1]


def digest_links(
    *, subscriber_id: str, sender: str, base_url: str | None, signer: LinkSigner | None, issued: dt.date,
    entry_ids: Iterable[str] = (),
) -> DigestLinks:
    mailto = f"mailto:{_address(sender)}?subject={quote('unsubscribe ' + subscriber_id)}"
    if base_url is None or signer is None:
        return DigestLinks(unsubscribe=mailto, unsubscribe_mailto=mailto)
    https = f"{base_url}/unsubscribe/{signer.sign(UNSUBSCRIBE, subscriber_id, issued=issued)}"
    feedback = {
        entry_id: (
            f"{base_url}/feedback/{signer.sign(MORE, subscriber_id, issued=issued, entry_id=entry_id)}",
            f"{base_url}/feedback/{signer.sign(LESS, subscriber_id, issued=issued, entry_id=entry_id)}",
        )
        for entry_id in entry_ids
    }
    return DigestLinks(unsubscribe=https, unsubscribe_mailto=mailto, unsubscribe_https=https, feedback=feedback)
