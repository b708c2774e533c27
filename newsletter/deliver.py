"""Build the MIME message and hand it to a transport (a local Maildir, or SMTP).

Headers are set through ``email.message.EmailMessage`` with the SMTP policy,
which RFC 2047-encodes non-ASCII names and subjects (SMTPUTF8 / RFC 6532 is not
used: every header is ASCII). Every value first becomes one printable line
(``_one_line``: line breaks, NEL, U+2028/2029 and other controls never reach a
header; a literal encoded word stays text), so no feed or subscriber text can
add or split a header.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

from .errors import DeliveryError, RecipientRefused, ServerUnavailable
from .models import RenderedEmail


class Transport(Protocol):
    """Delivers finished message bytes to one recipient."""

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        """Deliver; return a short receipt (a Maildir key, the server's reply). Raise DeliveryError."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Envelope:
    sender: str  # "Daily Papers <papers@example.org>"
    recipient: str  # "ada@example.org"
    recipient_name: str
    list_id: str  # "Daily Papers <daily-papers.example.org>"
    unsubscribe_mailto: str  # "mailto:papers@example.org?subject=unsubscribe%20ada"
    unsubscribe_https: str | None = None  # the RFC 8058 one-click POST target, when the web app runs


def build_message(email: RenderedEmail, *, envelope: Envelope, now: dt.datetime) -> tuple[str, bytes]:
    """(Message-ID, the message as bytes): multipart/alternative, text first then HTML."""
    # parseaddr reads '"Name\r\nBcc: x@y" <a@b>' as x@y: line breaks go before the sender is read.
    sender_name, sender_address = parseaddr(_printable(envelope.sender))
    domain = sender_address.rpartition("@")[2] or "localhost"
    message = EmailMessage(policy=_POLICY)
    message_id = make_msgid(domain=domain)
    try:
        message["From"] = Address(_one_line(_decoded(sender_name)), addr_spec=sender_address)
        message["To"] = Address(_one_line(envelope.recipient_name), addr_spec=envelope.recipient)
        message["Subject"] = _one_line(email.subject)
        message["Message-ID"] = message_id
        message["Date"] = format_datetime(now.astimezone(dt.timezone.utc))
        message["List-Id"] = _one_line(envelope.list_id)
        _list_unsubscribe(message, envelope)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
        return message_id, message.as_bytes()
    except (ValueError, IndexError, UnicodeError) as exc:
        raise DeliveryError(f"cannot build the digest for {envelope.recipient}: {exc}") from None


def _list_unsubscribe(message: EmailMessage, envelope: Envelope) -> None:
    """RFC 2369 List-Unsubscribe (https first, as mail providers prefer) and RFC 8058 one-click."""
    targets = [envelope.unsubscribe_https, envelope.unsubscribe_mailto]
    message["List-Unsubscribe"] = ", ".join(f"<{_printable(target)}>" for target in targets if target)
    if envelope.unsubscribe_https:
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


class _SmtpPolicy(EmailPolicy):
    """policy.SMTP, except that List-Unsubscribe is folded between its <URL>s.

    The stock folder turns a word longer than a line (every signed https URL) into
    RFC 2047 encoded words, which mail providers do not decode in this header, so
    their unsubscribe button would find no URL.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() != "list-unsubscribe":
            return super().fold_binary(name, value)
        targets = re.findall(r"<[^<>\s]*>", str(value))
        return f"{name}: {(',' + self.linesep + ' ').join(targets)}{self.linesep}".encode("ascii")


_POLICY = _SmtpPolicy(linesep="\r\n")  # policy.SMTP is EmailPolicy(linesep="\r\n")


def _decoded(name: str) -> str:
    """A display name as text: config.toml keeps a non-ASCII sender name RFC 2047-encoded (formataddr)."""
    try:
        return str(make_header(decode_header(name)))
    except (HeaderParseError, UnicodeError, LookupError):
        return name


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    """Header-safe text: one line, no control character, no literal RFC 2047 encoded word.

    Line breaks, NEL and the Unicode line/paragraph separators become spaces and other C0/C1
    controls go, so no value can end its header. A literal "=?utf-8?q?...?=" in a name or
    subject would be decoded by every reader's mail program (and by Python's own parser, which
    then emits it half-decoded, turning a display name into an address group): a WORD JOINER
    after "=" keeps it plain text, shown as written.
    """
    return _printable(text).replace("=?", "=\u2060?")


def _printable(text: str) -> str:
    text = _CONTROLS.sub(lambda m: " " if m.group() in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029" else "", text)
    return " ".join(text.split())


class MaildirTransport:
    """The embedded default: each message becomes a file in <maildir>/new."""

    def __init__(self, path: Path) -> None:
        try:
            self.maildir = mailbox.Maildir(path, create=True)
        except OSError as exc:
            raise DeliveryError(f"{path}: cannot create the Maildir: {exc.strerror}") from None
        self.path = path

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        try:
            return self.maildir.add(message)
        except OSError as exc:
            raise DeliveryError(f"{self.path}: cannot write the message for {recipient}: {exc.strerror}") from None

    def close(self) -> None:
        self.maildir.close()


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "starttls" | "tls" | "none"
    username: str | None
    password_env: str
    timeout: float = 30.0  # connect and each command
    ca_file: Path | None = None  # trust this CA bundle instead of the system's


class SmtpTransport:
    """One connection for a whole batch; TLS verified by default; the password comes from the environment.

    Each send speaks MAIL / RCPT / DATA itself (rather than smtplib's sendmail)
    so the server's own reply is kept, and so a refusal can be told apart:
    a 5xx for the recipient or the message is permanent (RecipientRefused,
    bounced), a 4xx or a dropped connection is transient (DeliveryError,
    retried later), and a server that cannot be reached, secured or logged
    into stops the batch (ServerUnavailable).
    """

    def __init__(self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.context = ssl_context  # made on first connect: a bad ca_file is then one ServerUnavailable line, not a crash
        self._client: smtplib.SMTP | None = None
        self.where = f"smtp {settings.host}:{settings.port}"

    def _tls_context(self) -> ssl.SSLContext:
        if self.context is None:
            ca_file = self.settings.ca_file
            try:
                self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ServerUnavailable(f"{self.where}: smtp.ca_file {ca_file} is not a readable PEM CA bundle ({exc})") from None
        return self.context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        password = os.environ.get(s.password_env) if s.username else None
        if s.username and not password:
            raise ServerUnavailable(f"{self.where}: smtp.username is set but the environment variable {s.password_env} (smtp.password_env) is empty")
        client: smtplib.SMTP | None = None
        context = self._tls_context() if s.security in ("tls", "starttls") else None
        try:
            if s.security == "tls":
                client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
                if s.security == "starttls":
                    client.starttls(context=context)
            client.ehlo_or_helo_if_needed()  # smtplib's mail() does not greet: without AUTH (which greets) MAIL would be refused
            if s.username:
                client.login(s.username, password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(client)
            raise ServerUnavailable(f"{self.where}: authentication failed for {s.username}: {_reply(exc.smtp_code, exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError:
            _quietly_close(client)
            raise ServerUnavailable(f"{self.where}: the server does not offer STARTTLS (smtp.security = \"starttls\")") from None
        except ssl.SSLCertVerificationError as exc:
            _quietly_close(client)
            raise ServerUnavailable(f"{self.where}: TLS certificate not trusted ({exc.verify_message}); set smtp.ca_file for a private CA") from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(client)
            raise ServerUnavailable(f"{self.where}: cannot connect: {exc or type(exc).__name__}") from None
        return client

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        if self._client is None:
            self._client = self._connect()
        client = self._client
        try:
            code, reply = client.mail(parseaddr(_printable(sender))[1])
            if code != 250:
                self._reset()
                raise (DeliveryError if 400 <= code < 500 else ServerUnavailable)(f"{self.where}: sender {sender} refused: {_reply(code, reply)}")
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                kind = RecipientRefused if code >= 500 else DeliveryError
                raise kind(f"{self.where}: {recipient} refused: {_reply(code, reply)}")
            try:
                code, reply = client.data(message)
            except smtplib.SMTPDataError as refused:  # the DATA command itself refused (no 354): the connection is fine
                code, reply = refused.smtp_code, refused.smtp_error
            if code != 250:
                self._reset()
                kind = RecipientRefused if code >= 500 else DeliveryError
                raise kind(f"{self.where}: message for {recipient} refused: {_reply(code, reply)}")
        except (OSError, smtplib.SMTPException) as exc:  # dropped connection, timeout: reconnect next time
            self._client = None
            _quietly_close(client)
            raise DeliveryError(f"{self.where}: sending to {recipient} failed: {exc or type(exc).__name__}") from None
        return _reply(code, reply)

    def _reset(self) -> None:
        try:
            self._client.rset()  # type: ignore[union-attr]
        except (OSError, smtplib.SMTPException):
            _quietly_close(self._client)
            self._client = None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(self._client)
            self._client = None


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(text.split())}"


def _quietly_close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        try:
            client.close()
        except OSError:
            pass
