"""The links a digest carries: unsubscribe (mailto, or a signed https URL when base_url is set).

The https links are signed with itsdangerous (HMAC-SHA1 over the payload)
using the secret from the environment variable ``[web] secret_env`` names, so
the web app can trust a click without any state in the URL. The signature
carries no timestamp: a reader's link is the same in every email and in
``preview`` (which renders exactly what would be sent), and an unsubscribe
link keeps working however old the email is (RFC 8058 clients may POST it
long after delivery). The same links go into the email's body and its
List-Unsubscribe headers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import quote

from itsdangerous import URLSafeSerializer

from .errors import ConfigError

UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class DigestLinks:
    """Where one reader's email points: the footer link and the List-Unsubscribe targets."""

    unsubscribe: str  # what the footer links to: the https URL when there is one, else the mailto
    unsubscribe_mailto: str
    unsubscribe_https: str | None = None  # also the RFC 8058 one-click POST target


class LinkSigner:
    """Signs and reads back the tokens in the email's links."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="newsletter-links")  # no timestamp: same link every time

    def sign(self, purpose: str, subscriber_id: str) -> str:
        return self._serializer.dumps([purpose, subscriber_id])


def signer_from_env(*, secret_env: str, config_path: object) -> LinkSigner:
    secret = os.environ.get(secret_env, "")
    if len(secret) < 16:
        state = "is not set" if not secret else "is shorter than 16 characters"
        raise ConfigError(
            f"{config_path}: newsletter.base_url is set, so links are signed, but the environment variable "
            f"{secret_env} ([web] secret_env) {state}; set it to a long random string"
        )
    return LinkSigner(secret)


def digest_links(*, subscriber_id: str, sender: str, base_url: str | None, signer: LinkSigner | None) -> DigestLinks:
    address = parseaddr(sender)[1]
    mailto = f"mailto:{address}?subject={quote('unsubscribe ' + subscriber_id)}"
    if base_url is None or signer is None:
        return DigestLinks(unsubscribe=mailto, unsubscribe_mailto=mailto)
    https = f"{base_url}/unsubscribe/{signer.sign(UNSUBSCRIBE, subscriber_id)}"
    return DigestLinks(unsubscribe=https, unsubscribe_mailto=mailto, unsubscribe_https=https)
