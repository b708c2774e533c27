"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1, TLS from a throwaway CA, AUTH, programmable replies.

``smtp_tls`` (STARTTLS required, AUTH LOGIN/PLAIN required after TLS) and
``smtp_implicit_tls`` (TLS from the first byte, as on port 465) each yield a
``MailServer``: its ``host``/``port``, the CA's PEM written to a file
(``ca_file``, for ``smtp.ca_file``), the credentials it accepts, and its
``handler``, whose behaviour the test programs before (or while) mail arrives:

    server.handler.tempfail_rcpt["ada@example.org"] = 2   # 451 twice, then 250
    server.handler.refuse_rcpt["grace@example.org"] = "550 5.1.1 <grace@example.org>: no such mailbox"
    server.handler.drop_after = 3      # accept 3 messages, then close the connection on the 4th's DATA
    server.handler.delay = 0.15        # seconds per message, between accepting it and replying 250
    server.handler.hold_data_from = 4  # accept the 4th message, then hold its 250 until the test clears this
    server.handler.hold_data_for.add("ada@example.org")  # accept her message, then hold its 250 until removed

Every accepted message is recorded (envelope, bytes, whether TLS and AUTH were
in force); ``handler.wait_for(predicate)`` blocks on a condition with a
generous timeout instead of sleeping.
"""

from __future__ import annotations

import asyncio
import email
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USERNAME = "papers"
PASSWORD = "s3cret-Passw0rd-never-printed"
WAIT = 60.0  # seconds: generous, for a loaded 2-core machine; waits end as soon as the condition holds


@dataclass(frozen=True)
class Received:
    """One message the server accepted: committed when its DATA ended, before the 250 (which may be delayed or held)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received, dot-unstuffed
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the authenticated user, if any
    stamp: float | None  # handler.clock() when it arrived, if a clock was given

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class ProgrammableHandler:
    """aiosmtpd handler; each field programs one behaviour, and may change while the server runs."""

    tempfail_rcpt: dict[str, int] = field(default_factory=dict)  # address -> answer 451 at RCPT this many times, then 250
    tempfail_data: dict[str, int] = field(default_factory=dict)  # address -> answer 451 after DATA this many times, then 250
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> this permanent reply at RCPT, every time
    refuse_data: dict[str, str] = field(default_factory=dict)  # address -> this permanent reply after DATA, every time
    drop_after: int | None = None  # once this many messages were accepted, close the connection instead of answering DATA
    down_after_drop: bool = False  # after that drop, answer 421 to every greeting until ``down`` is cleared
    down: bool = False  # 421 to EHLO/HELO: the server is not taking mail
    delay: float = 0.0  # seconds between accepting a message (recorded) and replying 250
    rcpt_delay: float = 0.0  # seconds before each RCPT reply
    hold_data_from: int | None = None  # from the N-th DATA on (counting all), accept it, then hold the 250 until cleared
    hold_data_for: set[str] = field(default_factory=set)  # accept a message to these addresses, then hold its 250 until removed
    hold_rcpt_from: int | None = None  # from the N-th RCPT on, hold the reply until cleared
    clock: Callable[[], float] | None = None  # stamps each accepted message (e.g. a test's fake monotonic clock)
    received: list[Received] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)  # DATA commands seen per recipient (accepted or not)
    rcpt_attempts: Counter[str] = field(default_factory=Counter)  # RCPT commands seen per recipient
    drops: int = 0
    busy: int = 0  # DATA commands being handled right now
    sessions: list[Session] = field(default_factory=list)  # every SMTP session that sent MAIL: connections used

    def __post_init__(self) -> None:
        self._changed = threading.Condition()

    # --- what the tests read ------------------------------------------------------------

    def wait_for(self, predicate: Callable[[ProgrammableHandler], bool], timeout: float = WAIT, what: str = "") -> None:
        """Block until ``predicate(self)`` holds (checked on every event), or fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}; received {len(self.received)}")
                self._changed.wait(min(left, 0.5))

    def recipients(self) -> list[str]:
        """Every accepted message's recipient, in arrival order (one recipient per message)."""
        with self._changed:
            return [address for message in self.received for address in message.rcpt_tos]

    def count(self) -> int:
        with self._changed:
            return len(self.received)

    def _event(self, update: Callable[[], object] = lambda: None) -> None:
        with self._changed:
            update()
            self._changed.notify_all()

    # --- aiosmtpd hooks -----------------------------------------------------------------

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]) -> list[str]:
        if self.down:
            return [self._closing(server)]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        if self.down:
            return self._closing(server)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]) -> str:
        if not any(seen is session for seen in self.sessions):
            self._event(lambda: self.sessions.append(session))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        self._event(lambda: self.rcpt_attempts.update([address]))
        number = sum(self.rcpt_attempts.values())
        while self.hold_rcpt_from is not None and number >= self.hold_rcpt_from:
            await asyncio.sleep(0.01)  # held: the client waits for this RCPT's reply
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        if self.tempfail_rcpt.get(address, 0) > 0:
            self.tempfail_rcpt[address] -= 1
            return "451 4.7.1 greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = tuple(envelope.rcpt_tos)
        self._event(lambda: (self.attempts.update(recipients), setattr(self, "busy", self.busy + 1)))
        number = sum(self.attempts.values())
        try:
            if self.drop_after is not None and len(self.received) >= self.drop_after and not self.drops:
                self._event(self._drop)
                assert server.transport is not None
                server.transport.close()  # no reply at all: the client sees the connection go away mid-DATA
                return "421 4.3.0 connection dropped"  # written to a closed transport: never seen
            for address in recipients:
                if address in self.refuse_data:
                    return self.refuse_data[address]
                if self.tempfail_data.get(address, 0) > 0:
                    self.tempfail_data[address] -= 1
                    return "451 4.3.0 temporary failure, please try again later"
            # Accepted: committed now, as a real MTA queues the message before it answers 250. A client
            # that vanishes before reading the 250 has still had it delivered (the one possible duplicate).
            message = Received(
                mail_from=str(envelope.mail_from), rcpt_tos=recipients, data=bytes(envelope.original_content or b""),
                tls=session.ssl is not None, login=_login(session), stamp=self.clock() if self.clock else None,
            )
            self._event(lambda: self.received.append(message))
            while self.hold_data_from is not None and number >= self.hold_data_from or self.hold_data_for.intersection(recipients):
                await asyncio.sleep(0.01)  # held: the 250 waits
            if self.delay:
                await asyncio.sleep(self.delay)
            return f"250 2.0.0 Ok: queued as {len(self.received)}"
        finally:
            self._event(lambda: setattr(self, "busy", self.busy - 1))

    @staticmethod
    def _closing(server: SMTP) -> str:
        """421, then the connection closes (RFC 5321 4.2.2: the server is shutting the channel)."""
        assert server.transport is not None
        asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply is written
        return "421 4.3.2 service not available, try later"

    def _drop(self) -> None:
        self.drops += 1
        if self.down_after_drop:
            self.down = True


def _login(session: Session) -> str | None:
    data = session.auth_data
    if not session.authenticated:
        return None
    return data.decode() if isinstance(data, bytes) else str(data)


class Authenticator:
    """Checks AUTH LOGIN / PLAIN against one username and password; remembers every try (mechanism, user, ok)."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.username, self.password = username, password
        self.tries: list[tuple[str, str, bool]] = []

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            self.tries.append((mechanism, "?", False))
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = login == self.username and password == self.password
        self.tries.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


class _ImplicitTlsSMTP(SMTP):
    """aiosmtpd 1.4 counts only STARTTLS as encryption (AUTH withheld under auth_require_tls); here TLS starts at connect."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if transport.get_extra_info("ssl_object") is not None and self.session is not None:
            self._tls_protocol = getattr(transport, "_ssl_protocol", None)
            self.session.ssl = {name: transport.get_extra_info(name) for name in ("ssl_object", "cipher", "peercert")}


class _Controller(Controller):
    """aiosmtpd's Controller on an OS-chosen free port (port=0): no race for a port with other tests."""

    def factory(self) -> SMTP:
        return (_ImplicitTlsSMTP if self.ssl_context else SMTP)(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class MailServer:
    host: str
    port: int
    security: str  # "starttls" | "tls" | "none": what the client must speak
    handler: ProgrammableHandler
    authenticator: Authenticator | None
    ca_file: Path | None  # the throwaway CA's certificate (PEM) that signed the server's certificate
    controller: Controller

    @property
    def username(self) -> str:
        return self.authenticator.username if self.authenticator else ""

    @property
    def password(self) -> str:
        return self.authenticator.password if self.authenticator else ""

    def smtp_toml(self, *, ca_file: str | None = "ca.pem", password_env: str = "TEST_SMTP_PASSWORD", **more: Any) -> str:
        """The [delivery] and [smtp] tables of config.toml for this server (ca_file relative to config.toml)."""
        lines = [
            "\n[delivery]", 'method = "smtp"',
            *(f"{key} = {_toml(value)}" for key, value in more.pop("delivery", {}).items()),
            "\n[smtp]", f'host = "{self.host}"', f"port = {self.port}", f'security = "{self.security}"', "timeout = 30",
        ]
        if self.authenticator:
            lines += [f'username = "{self.username}"', f'password_env = "{password_env}"']
        if ca_file:
            lines.append(f'ca_file = "{ca_file}"')
        lines += [f"{key} = {_toml(value)}" for key, value in more.items()]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self.controller.stop()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def start_server(
    *, security: str = "starttls", ca: trustme.CA | None = None, ca_dir: Path | None = None, auth: bool = True,
    mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN"), handler: ProgrammableHandler | None = None,
) -> MailServer:
    """A running aiosmtpd on 127.0.0.1 (stop it with ``.stop()``); TLS certificates for 127.0.0.1 and localhost from ``ca``."""
    handler = handler or ProgrammableHandler()
    authenticator = Authenticator() if auth else None
    kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": WAIT}
    ca_file = None
    if security in ("starttls", "tls"):
        ca = ca or trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
        if ca_dir is not None:
            ca_file = ca_dir / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
        if security == "starttls":
            kwargs.update(tls_context=server_context, require_starttls=True)
        else:
            kwargs.update(ssl_context=server_context)
    if authenticator:
        excluded = [name for name in ("LOGIN", "PLAIN") if name not in mechanisms]
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True, auth_exclude_mechanism=excluded)
    controller = _Controller(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    return MailServer(
        host="127.0.0.1", port=controller.port, security=security, handler=handler, authenticator=authenticator,
        ca_file=ca_file, controller=controller,
    )


@pytest.fixture(scope="session")
def smtp_ca() -> trustme.CA:
    """One throwaway CA for the session's servers (creating keys is the slow part)."""
    return trustme.CA()


@pytest.fixture
def smtp_tls(tmp_path: Path, smtp_ca: trustme.CA) -> Iterator[MailServer]:
    """STARTTLS required, then AUTH LOGIN/PLAIN required; the CA's PEM in tmp_path/ca.pem."""
    server = start_server(security="starttls", ca=smtp_ca, ca_dir=tmp_path)
    yield server
    server.stop()


@pytest.fixture
def smtp_implicit_tls(tmp_path: Path, smtp_ca: trustme.CA) -> Iterator[MailServer]:
    """TLS from the first byte (port 465 style), AUTH LOGIN only (PLAIN withheld, so LOGIN is exercised)."""
    server = start_server(security="tls", ca=smtp_ca, ca_dir=tmp_path, mechanisms=("LOGIN",))
    yield server
    server.stop()
