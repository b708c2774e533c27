"""Build the MIME message and hand it to a transport (a local Maildir, or SMTP).

``build_message`` writes the message bytes directly (the fields that stay the same for a
whole run are worked out once); ``build_email_message`` builds the same digest as an
``email.message.EmailMessage`` with the SMTP policy, the reference the bytes are tested
against and the path for the rare value the fast writer does not handle itself (an address
that is not a plain dot-atom, a header field that would need the policy's folding).

Every header is ASCII: non-ASCII names and subjects become RFC 2047 encoded words (SMTPUTF8 /
RFC 6532 is not used). Every value first becomes one printable line (``_one_line``: line
breaks, NEL, U+2028/2029 and other controls never reach a header; a literal encoded word
stays text), so no feed or subscriber text can add or split a header.
"""

from __future__ import annotations

import binascii
import contextlib
import ctypes
import datetime as dt
import functools
import os
import re
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
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

    def flush(self) -> None:
        """Make what was delivered so far durable (the outbox calls it after each batch)."""
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


Mailbox = tuple[str, str]  # (display name, addr-spec)
FieldValue = str | Mailbox


def build_message(email: RenderedEmail, *, envelope: Envelope, now: dt.datetime) -> tuple[str, bytes]:
    """(Message-ID, the message as bytes): multipart/alternative, text first then HTML.

    The same message as ``build_email_message(...).as_bytes()`` (headers in the same order with
    the same decoded values, the same parts and decoded bodies), written without an EmailMessage.
    """
    try:
        message_id = _new_message_id(envelope)
        head = "".join(_field(name, value) for name, value in _header_fields(email, envelope, now=now, message_id=message_id))
        text, html = _quoted_printable(email.text), _quoted_printable(email.html)
        # QP output has "=" only before two hex digits or a line end, so "=_" never occurs in a body.
        boundary = f"=_{secrets.token_hex(12)}"
        head += f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n'
        part = f"\r\n--{boundary}\r\n".encode("ascii")  # the CRLF before "--" belongs to the delimiter
        message = b"".join((head.encode("ascii"), part, _TEXT_PART, text, part, _HTML_PART, html, f"\r\n--{boundary}--\r\n".encode("ascii")))
        return message_id, message
    except (ValueError, IndexError, UnicodeError, HeaderParseError) as exc:  # HeaderParseError: an address like "@example.org"
        raise DeliveryError(f"cannot build the digest for {envelope.recipient}: {exc}") from None


def build_email_message(email: RenderedEmail, *, envelope: Envelope, now: dt.datetime) -> EmailMessage:
    """The digest as an ``EmailMessage`` with the SMTP policy: the reference ``build_message`` is checked against."""
    message = EmailMessage(policy=_POLICY)
    try:
        for name, value in _header_fields(email, envelope, now=now, message_id=_new_message_id(envelope)):
            message[name] = _header_object(value)
        message.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    except (ValueError, IndexError, UnicodeError, HeaderParseError) as exc:  # HeaderParseError: an address like "@example.org"
        raise DeliveryError(f"cannot build the digest for {envelope.recipient}: {exc}") from None
    return message


def _header_fields(email: RenderedEmail, envelope: Envelope, *, now: dt.datetime, message_id: str) -> list[tuple[str, FieldValue]]:
    """The header fields in their order, every value one printable line; From and To as (display name, address)."""
    fields: list[tuple[str, FieldValue]] = [
        ("From", _sender_mailbox(envelope.sender)),
        ("To", (_one_line(envelope.recipient_name), envelope.recipient)),
        ("Subject", _one_line(email.subject)),
        ("Message-ID", message_id),
        ("Date", _date(now)),
        ("List-Id", _one_line(envelope.list_id)),
        # RFC 2369 List-Unsubscribe (https first, as mail providers prefer) and RFC 8058 one-click.
        ("List-Unsubscribe", ", ".join(f"<{_printable(target)}>" for target in (envelope.unsubscribe_https, envelope.unsubscribe_mailto) if target)),
    ]
    if envelope.unsubscribe_https:
        fields.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    fields.append(("Auto-Submitted", "auto-generated"))
    return fields


@functools.lru_cache(maxsize=32)  # a batch's messages are built at one moment, a clock reading per batch
def _date(now: dt.datetime) -> str:
    return format_datetime(now.astimezone(dt.timezone.utc))


@functools.lru_cache(maxsize=32)
def _sender_mailbox(sender: str) -> Mailbox:
    """The sender as (display name, address); the same for a whole run, so worked out once."""
    # parseaddr reads '"Name\r\nBcc: x@y" <a@b>' as x@y: line breaks go before the sender is read.
    name, address = parseaddr(_printable(sender))
    return _one_line(_decoded(name)), address


def _new_message_id(envelope: Envelope) -> str:
    domain = _sender_mailbox(envelope.sender)[1].rpartition("@")[2] or "localhost"
    return make_msgid(domain=domain)


def _header_object(value: FieldValue) -> str | Address:
    if isinstance(value, tuple):
        return Address(value[0], addr_spec=value[1])
    return value


class _SmtpPolicy(EmailPolicy):
    """policy.SMTP, except that List-Unsubscribe is folded between its <URL>s.

    The stock folder turns a word longer than a line (every signed https URL) into
    RFC 2047 encoded words, which mail providers do not decode in this header, so
    their unsubscribe button would find no URL.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() != "list-unsubscribe":
            return super().fold_binary(name, value)
        return _list_unsubscribe_field(name, str(value), self.linesep).encode("ascii")


_POLICY = _SmtpPolicy(linesep="\r\n")  # policy.SMTP is EmailPolicy(linesep="\r\n")


def _list_unsubscribe_field(name: str, value: str, linesep: str) -> str:
    """Folded between the <URL>s, never encoded (see _SmtpPolicy)."""
    targets = re.findall(r"<[^<>\s]*>", value)
    return f"{name}: {(',' + linesep + ' ').join(targets)}{linesep}"


# --- the fast writer's header fields ----------------------------------------------------------------------------

_MAX_LINE = 78  # RFC 5322's "SHOULD" for a header line, the SMTP policy's max_line_length
_MAX_WORD = 60  # a longer ASCII word is encoded (as the policy's folder does), so every line fits in _MAX_LINE
_EW_TEXT = 54  # encoded text per encoded word: "=?utf-8?q?" + 54 + "?=" fits the first line of any field here
_EW_BYTES = 39  # bytes per "b" encoded word: base64 of 39 bytes is 52 characters
_TEXT_FIELDS = frozenset({"Subject", "List-Id"})  # unstructured: RFC 2047 encoded where needed
# A local part and domain the header registry writes back unchanged and unquoted ("=" and "?" left out: "=?"
# would start an encoded word); any other address goes through the policy, which validates it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_SPECIALS = re.compile(r'[()<>@,:;.\\"\[\]]')  # an ASCII display name with one of these is a quoted string
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


def _field(name: str, value: FieldValue) -> str:
    """One header field as folded text ending in CRLF."""
    if isinstance(value, tuple):
        return _from_field(name, value) if name == "From" else _mailbox_field(name, value)
    if name in _TEXT_FIELDS:
        return _text_field(name, value)
    if name == "List-Unsubscribe":
        return _list_unsubscribe_field(name, value, "\r\n")
    if len(name) + 2 + len(value) <= _MAX_LINE and _PLAIN_VALUE.fullmatch(value) and "=?" not in value:
        return f"{name}: {value}\r\n"
    return _policy_field(name, value)


@functools.lru_cache(maxsize=4096)  # the List-Id is the same for a whole run, and readers with the same topics share subjects
def _text_field(name: str, text: str) -> str:
    return _fold(name, _text_words(text))


def _mailbox_field(name: str, mailbox: Mailbox) -> str:
    display_name, address = mailbox
    if not _PLAIN_ADDRESS.fullmatch(address):
        return _policy_field(name, Address(display_name, addr_spec=address))  # validates it, with the policy's message
    if not display_name:
        return f"{name}: {address}\r\n"
    return _fold(name, [*_phrase_words(display_name), f"<{address}>"])


_from_field = functools.lru_cache(maxsize=32)(_mailbox_field)  # the sender is the same for a whole run


def _policy_field(name: str, value: str | Address) -> str:
    """The field exactly as EmailMessage.as_bytes writes it with the SMTP policy."""
    return _POLICY.fold_binary(name, _POLICY.header_store_parse(name, value)[1]).decode("ascii")


def _fold(name: str, words: list[str]) -> str:
    """name: words, folded at the spaces between them so that lines stay within _MAX_LINE.

    Unfolding only removes the CRLF, so a fold at a space changes nothing: not inside a quoted
    display name, and not between two encoded words (whose whitespace is not part of the text).
    """
    if not words:
        return f"{name}:\r\n"
    parts, width, start = [name, ":"], len(name) + 1, len(name) + 1
    for word in words:
        if width + 1 + len(word) > _MAX_LINE and width > start:
            parts.append("\r\n")
            width = 0
        parts += (" ", word)
        width += 1 + len(word)
    parts.append("\r\n")
    return "".join(parts)


def _text_words(text: str) -> list[str]:
    """Unstructured text (RFC 2047 section 5(1)) as words: ASCII words as written, each run of others encoded."""
    if not text:
        return []
    if text.isascii() and len(text) <= _MAX_WORD:
        return text.split(" ")  # _one_line left single spaces and no "=?"
    words: list[str] = []
    run: list[str] = []  # consecutive words to encode, together with the spaces between them
    for word in text.split(" "):
        if word.isascii() and len(word) <= _MAX_WORD:
            if run:
                words += _encoded_words(" ".join(run))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += _encoded_words(" ".join(run))
    return words


def _phrase_words(name: str) -> list[str]:
    """A display name (RFC 5322 phrase): atoms, one quoted string, or encoded words (RFC 2047 section 5(3))."""
    if name.isascii():
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' if _SPECIALS.search(name) else name
        words = quoted.split(" ")
        if max(map(len, words)) <= _MAX_WORD:
            return words
    return _encoded_words(name)


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 encoded words for text, "q" or "b" whichever is shorter; a character's bytes stay in one word.

    The "q" form keeps only letters, digits and !*+-/ as they are, so the words are valid in a
    display name as well as in unstructured text.
    """
    pieces = [_Q_FORM[ch] for ch in text]
    size = len(text.encode())
    if sum(map(len, pieces)) > -(-size // 3) * 4:
        return [f"=?utf-8?b?{binascii.b2a_base64(chunk.encode(), newline=False).decode()}?=" for chunk in _chunks(text, [len(ch.encode()) for ch in text], _EW_BYTES)]
    words, current, width = [], [], 0
    for piece in pieces:
        if width + len(piece) > _EW_TEXT:
            words.append(f"=?utf-8?q?{''.join(current)}?=")
            current, width = [], 0
        current.append(piece)
        width += len(piece)
    words.append(f"=?utf-8?q?{''.join(current)}?=")
    return words


def _chunks(text: str, sizes: list[int], limit: int) -> list[str]:
    """text cut between characters into pieces whose sizes add up to at most limit."""
    chunks, start, total = [], 0, 0
    for index, size in enumerate(sizes):
        if total + size > limit:
            chunks.append(text[start:index])
            start, total = index, 0
        total += size
    chunks.append(text[start:])
    return chunks


class _QForms(dict[str, str]):
    """A character's RFC 2047 "Q" form, looked up once per character."""

    _SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")

    def __missing__(self, ch: str) -> str:
        form = ch if ch in self._SAFE else "_" if ch == " " else "".join(f"={byte:02X}" for byte in ch.encode())
        if len(self) < 4096:  # hostile text full of distinct characters does not grow the table for ever
            self[ch] = form
        return form


_Q_FORM = _QForms()


# --- the fast writer's bodies ------------------------------------------------------------------------------------

_TEXT_PART = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
_HTML_PART = b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


def _quoted_printable(text: str) -> bytes:
    """A text part's body as quoted-printable (RFC 2045): lines of at most 76 characters ending in CRLF.

    It decodes to the text as EmailMessage.set_content stores it: UTF-8, every CRLF, CR or LF
    a CRLF, and a line end added at the end when there is none. binascii's encoder (C) also
    writes "=" and trailing whitespace as =XX, and "=" only ever before two hex digits or a
    soft line break.

    Each line is encoded on its own and remembered: b2a_qp keeps no state from one line to the
    next (it starts counting again after each line break), so the result is the bytes it gives for
    the whole text, and most lines of a run's emails (the template's, each paper's) repeat.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:  # the text's final line end: it adds no line of its own
        lines.pop()
    return b"".join([_QP_LINES[line] for line in lines])


_QP_LINE = 76  # RFC 2045's limit on an encoded line


class _QPLines(dict[str, bytes]):
    """A line's quoted-printable form with its CRLF, encoded once.

    Bounded in two generations: when the lines added reach _MAX_CHARS the store starts afresh and
    keeps the full one as ``older``, from which a line asked for again is taken back, so the
    lines every email has (the template's) survive while those of one email (a name) go.
    """

    _MAX_CHARS = 2_500_000  # per generation: with the encodings, about 14 MB for both (13 MB measured at 1,000 readers)

    def __init__(self) -> None:
        super().__init__()
        self.chars = 0
        self.older: dict[str, bytes] = {}

    def __missing__(self, line: str) -> bytes:
        encoded = self.older.get(line)
        if encoded is None:
            encoded = binascii.b2a_qp(line.encode() + b"\r\n")  # ends in CRLF; soft line breaks inside when long
            if line.endswith((" ", "\t")) and len(encoded) > _QP_LINE + 2:  # the one way b2a_qp leaves a line too long
                encoded = b"\r\n".join(map(_qp_folded, encoded.split(b"\r\n")))
        if self.chars > self._MAX_CHARS:
            self.older = dict(self)
            self.clear()
            self.chars = 0
        self[line] = encoded
        self.chars += len(line)
        return encoded


_QP_LINES = _QPLines()


def _qp_folded(line: bytes) -> bytes:
    """A line b2a_qp left too long (it encodes a line's trailing space as =20 after counting): soft breaks, never inside =XX."""
    pieces = []
    while len(line) > _QP_LINE:
        cut = _QP_LINE - 1  # room for the soft break's "="
        cut -= 1 if line[cut - 1 : cut] == b"=" else 2 if line[cut - 2 : cut - 1] == b"=" else 0
        pieces.append(line[:cut] + b"=")
        line = line[cut:]
    pieces.append(line)
    return b"\r\n".join(pieces)


# --- shared -------------------------------------------------------------------------------------------------------


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


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _libc_syncfs() -> Callable[[int], None] | None:
    """syncfs(2) through the C library, where it has one (Linux)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None

    def syncfs(descriptor: int) -> None:
        if function(descriptor) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    return syncfs


_SYNCFS = _libc_syncfs()


def _synced(path: str, sync: Callable[[int], None]) -> None:
    """``sync`` (fsync, syncfs) on a descriptor of ``path``, opened for it and closed after."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        sync(descriptor)
    finally:
        os.close(descriptor)


class MaildirTransport:
    """The embedded default: each message becomes a file in <maildir>/new.

    As the Maildir spec asks, a message is written under tmp/ with a unique name and
    then renamed into new/, so no reader ever sees half a file. The files are made
    durable a batch at a time, in ``flush`` (the outbox calls it after each batch, and
    ``close`` does): one fsync per message cost more than building the message. A
    killed process loses nothing; a power cut may lose the messages of the batch
    being written (SMTP delivery has no such window).

    ``syncfs`` makes a whole filesystem durable in one call (Linux's syncfs(2), the
    default where there is one): 0.3 ms of CPU per 100 messages against 7 ms for an
    fsync each, and a fifth of the wait. It also writes out whatever other programs
    have pending on that filesystem. None: an fsync per file, then one for new/.
    """

    def __init__(self, path: Path, *, syncfs: Callable[[int], None] | None = _SYNCFS) -> None:
        self._syncfs = syncfs
        try:
            for folder in ("tmp", "new", "cur"):
                (path / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{path}: cannot create the Maildir: {exc.strerror}") from None
        self.path = path
        self._tmp, self._new = f"{path}/tmp/", f"{path}/new/"  # str paths: pathlib's joins cost more than the write
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._count = 0
        self._unsynced: list[str] = []

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        self._count += 1
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._count}.{self._host}"
        temporary, final = self._tmp + key, self._new + key
        try:
            descriptor = os.open(temporary, _NEW_FILE, 0o666)  # O_EXCL: never reuse a name
            try:
                written = os.write(descriptor, message)
                while written < len(message):  # a regular file takes it all at once but for a full disk or a signal
                    written += os.write(descriptor, memoryview(message)[written:])
            finally:
                os.close(descriptor)
            os.rename(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):  # whatever half-written file there is; its folder may be the problem
                os.unlink(temporary)
            raise DeliveryError(f"{self.path}: cannot write the message for {recipient}: {exc.strerror}") from None
        self._unsynced.append(final)
        return key

    def flush(self) -> None:
        """Make every message written since the last flush durable."""
        if not self._unsynced:
            return
        try:
            if self._syncfs is not None:
                _synced(self._new, self._syncfs)
                return
            for path in self._unsynced:
                _synced(path, os.fsync)
            _synced(self._new, os.fsync)
        except OSError as exc:
            raise DeliveryError(f"{self.path}: cannot sync the messages written: {exc.strerror}") from None
        finally:
            self._unsynced = []

    def close(self) -> None:
        self.flush()


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

    def flush(self) -> None:
        """Nothing to do: the server took responsibility for each message with its 250."""

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
