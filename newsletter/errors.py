"""The one exception tree of the project.

Every message names the object it is about (file and key, feed, entry,
subscriber) and, where it can, the fix, so the CLI can print it as one line.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(NewsletterError):
    """config.toml is missing, unreadable or invalid.

    ``problems`` holds every problem found, one line each, so ``check`` can
    list them all instead of stopping at the first.
    """

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SubscriberError(NewsletterError):
    """A subscriber file is invalid, or a subscriber id is unknown."""


class FeedError(NewsletterError):
    """A feed could not be fetched or parsed."""


class StoreError(NewsletterError):
    """The SQLite database is unreadable, corrupt or locked."""


class RenderError(NewsletterError):
    """A template is missing or failed to render."""


class DeliveryError(NewsletterError):
    """A message could not be handed to its transport."""


class RecipientRefused(DeliveryError):
    """The server refused this recipient for good (a 5xx reply): recorded as bounced, the batch goes on."""


class ServerUnavailable(DeliveryError):
    """The server cannot be reached or will not let us in (connect, TLS, auth): the batch stops, retried later."""


class LockedError(NewsletterError):
    """Another process holds the database's sender lock (a second `newsletter run`)."""


class LinkError(NewsletterError):
    """A link from an email is altered, foreign, malformed or expired (the web app answers 400)."""
