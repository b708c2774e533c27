"""`newsletter serve`: the web app behind the email's links, as a real server process spoken to over HTTP on 127.0.0.1.

One deployment for the module: the example feeds ingested, base_url pointing at the server, the link secret in the
environment, and one real digest per reader delivered into the Maildir by ``pipeline.run_digests``. Every link a
test follows comes from those delivered messages (their List-Unsubscribe header, their HTML); each test acts as its
own reader, so no test sees another's clicks. Tokens that must fail are made from the genuine ones (tampered) or
signed here (another secret, an old issue day). The clock is frozen at the module's start (the server runs on the
real clock, which agrees on the day), so nothing depends on when the suite runs. No wall-clock assertions: servers
and pages are polled with generous timeouts.

The browser side (a click in the email, the auto-submitting feedback page, the confirm page) is in
tests/test_web_browser.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import json
import mailbox
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import lxml.html
import pytest
from conftest import EXAMPLES, Deployment, fixed_clock
from itsdangerous import URLSafeSerializer
from test_preview_server import free_port

from newsletter import pipeline
from newsletter.config import Config
from newsletter.errors import RecipientRefused, ServerUnavailable
from newsletter.links import LESS, MORE, UNSUBSCRIBE, LinkSigner
from newsletter.models import Entry, RenderedEmail
from newsletter.store import Store

SECRET_ENV = "WEB_TEST_LINK_SECRET"
SECRET = "web-test-secret-0123456789-abcdef"
SENDER = "Daily Papers <papers@example.org>"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # frozen for the module; the server's real clock agrees on the day
TODAY = NOW.date()
# The next digest: tomorrow at noon, after every reader's send_at (NOW + 1 day is before 07:00 when the tests run after midnight)
LATER = dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(12, 0), tzinfo=dt.UTC)
TIMEOUT = 60  # seconds: generous, for a loaded 2-core machine

READER = """
email = "{id}@example.org"
name = "{name}"
timezone = "UTC"
max_items = 3

[[topics]]
name = "Knowledge distillation"
keywords = ["knowledge distillation", "distillation", "teacher-student"]
weight = 2.0

[[topics]]
name = "Federated learning"
keywords = ["federated learning", "federated", "client participation"]
"""
# One reader per test (kim and lee are twins: the same topics, hence the same first digest).
READERS = {"kim": "Kim", "lee": "Lee", "uma": "Uma", "max": "Max", "ned": "Ned", "fay": "Fay", "bea": "Bea"}


# --- the deployment, the server, the delivered emails -------------------------------------------------------------


def web_deployment(root: Path, *, base_url: str | None, readers: dict[str, str]) -> Deployment:
    deployment = Deployment(root)
    deployment.header += f'sender = "{SENDER}"\n' + (f'base_url = "{base_url}"\n' if base_url else "")
    deployment.extra = f'\n[web]\nsecret_env = "{SECRET_ENV}"\n'
    deployment.add_feed("daily-papers", EXAMPLES / "daily-papers.xml")
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    for reader_id, name in readers.items():
        deployment.add_subscriber(reader_id, READER.format(id=reader_id, name=name))
    return deployment


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen[str]

    def get(self, path_or_url: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self._url(path_or_url), timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]

    def post(self, path_or_url: str, **kwargs: object) -> httpx.Response:
        return httpx.post(self._url(path_or_url), timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]

    def _url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else self.url + path_or_url


def start_web_server(config_path: Path, port: int) -> WebServer:
    """`newsletter serve` as a subprocess (the secret comes from this process's environment); polled until /healthz answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config_path), "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"newsletter serve exited {process.returncode}: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return WebServer(url, process)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(process)
    raise AssertionError(f"newsletter serve did not answer within {TIMEOUT} s")


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Delivered:
    """One reader's delivered digest: the message and the links in it."""

    message: EmailMessage
    raw: bytes
    html: str
    text: str

    @property
    def list_unsubscribe(self) -> list[str]:
        """The targets of the List-Unsubscribe header as it is on the wire."""
        head = self.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        (value,) = re.findall(r"^List-Unsubscribe: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, flags=re.MULTILINE | re.IGNORECASE)
        return re.findall(r"<([^<>]+)>", value)

    @property
    def footer_links(self) -> list[str]:
        return [a.get("href") for a in lxml.html.document_fromstring(self.html).find_class("footer")[0].iter("a")]

    def papers(self) -> list[tuple[str, str, str]]:
        """(title, "more like this" URL, "not for me" URL) of each paper, in the email's order."""
        return papers_in(self.html)


def papers_in(html: str) -> list[tuple[str, str, str]]:
    found = []
    for cell in lxml.html.document_fromstring(html).find_class("paper"):
        (heading,) = cell.find_class("paper-title")
        title = heading.text_content().split(".", 1)[1].strip()  # "1. Title"
        anchors = {a.text_content(): a.get("href") for box in cell.find_class("feedback") for a in box.iter("a")}
        found.append((title, anchors.get("More like this", ""), anchors.get("Not for me", "")))
    return found


def delivered(config: Config) -> dict[str, Delivered]:
    """Every message in the Maildir, newest last per reader, by reader id (the address's local part)."""
    found: dict[str, list[tuple[float, Delivered]]] = {}
    box = mailbox.Maildir(config.maildir, create=False)
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        message = email.message_from_bytes(raw, policy=policy.default)
        html, text = (message.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("html", "plain"))  # type: ignore[union-attr]
        reader = str(message["To"].addresses[0].username)  # type: ignore[union-attr]
        found.setdefault(reader, []).append((box.get_message(key).get_date(), Delivered(message, raw, html, text)))
    return {reader: [d for _, d in sorted(items, key=lambda item: item[0])][-1] for reader, items in found.items()}


def count_messages(config: Config, reader: str) -> int:
    if not config.maildir.exists():
        return 0
    box = mailbox.Maildir(config.maildir, create=False)
    return sum(1 for key in box.iterkeys() if f"{reader}@example.org" in (box.get_message(key)["To"] or ""))


@dataclass
class World:
    deployment: Deployment
    config: Config
    server: WebServer
    emails: dict[str, Delivered]  # the first digest of every reader, delivered at NOW
    previews: dict[str, RenderedEmail]  # what `preview` showed just before it was sent


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        port = free_port()
        deployment = web_deployment(tmp_path_factory.mktemp("web"), base_url=f"http://127.0.0.1:{port}", readers=READERS)
        server = start_web_server(deployment.config_path, port)  # at once: the port was free a moment ago
        try:
            config = deployment.config()
            clock = fixed_clock(NOW)
            assert all(feed.error is None for feed in pipeline.ingest_feeds(config, clock=clock).feeds)
            previews = {reader: pipeline.preview(config, reader, clock=clock) for reader in READERS}
            report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=clock)
            assert {o.subscriber: o.status for o in report.digests} == dict.fromkeys(READERS, "sent"), report
            emails = delivered(config)
            assert set(emails) == set(READERS)
            yield World(deployment, config, server, emails, previews)
        finally:
            stop_server(server.process)


def reader_state(config: Config, reader: str) -> tuple[dict[str, str] | None, dict[str, str]]:
    """(the reader's unsubscribe row or None, their feedback: entry id -> kind), straight from SQLite."""
    with Store(config.database, clock=fixed_clock(NOW), create=False) as store:
        return store.unsubscribed().get(reader), store.feedback_of(reader)


def everything(config: Config) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Every unsubscribe and every feedback row: what a request that must change nothing must leave as it was."""
    with sqlite3.connect(config.database) as conn:
        return (
            conn.execute("SELECT * FROM unsubscribed ORDER BY subscriber").fetchall(),
            conn.execute("SELECT * FROM feedback ORDER BY subscriber, entry_id").fetchall(),
        )


def entry_id_titled(config: Config, title: str) -> str:
    with sqlite3.connect(config.database) as conn:
        (row,) = conn.execute("SELECT id FROM entries WHERE title = ?", [title]).fetchall()
    return str(row[0])


def newsletter_cli(config_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(config_path), *args],
        capture_output=True, text=True, env=env if env is not None else dict(os.environ), timeout=TIMEOUT * 2, check=False,
    )


def page_text(response: httpx.Response) -> str:
    """The words of the page's body, as a reader sees them."""
    return " ".join(lxml.html.document_fromstring(response.text).body.text_content().split())


# --- the service ------------------------------------------------------------------------------------------------------


def test_health_check_unknown_routes_and_methods(world: World) -> None:
    health = world.server.get("/healthz")
    assert health.status_code == 200 and health.text == "ok\n"
    for path in ("/", "/nope", "/unsubscribe/", "/feedback", "/unsubscribe/a/b"):
        missing = world.server.get(path)
        assert missing.status_code == 404, path
        assert 'id="problem"' in missing.text and "Not Found" in missing.text, path
    before = everything(world.config)
    put = httpx.put(world.emails["ned"].list_unsubscribe[0], timeout=TIMEOUT)
    assert put.status_code == 405 and set(put.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert everything(world.config) == before


def test_links_point_at_the_server_and_preview_shows_the_same_links(world: World) -> None:
    """List-Unsubscribe (https first) == the footer link == what `preview` showed; each paper has both feedback links."""
    for reader, sent in world.emails.items():
        https, mailto = sent.list_unsubscribe
        assert https.startswith(f"{world.server.url}/unsubscribe/") and mailto.startswith("mailto:papers@example.org")
        assert sent.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert sent.footer_links == [https]
        assert f"   {https}" in sent.text.splitlines()
        preview = world.previews[reader]
        assert [a.get("href") for a in lxml.html.document_fromstring(preview.html).find_class("footer")[0].iter("a")] == [https]
        papers = sent.papers()
        assert len(papers) == 3 and papers == papers_in(preview.html), reader
        for title, more, less in papers:
            assert more.startswith(f"{world.server.url}/feedback/") and less.startswith(f"{world.server.url}/feedback/"), title
            assert more != less and f"   {more}" in sent.text.splitlines() and f"   {less}" in sent.text.splitlines()
    assert world.emails["kim"].list_unsubscribe[0] != world.emails["lee"].list_unsubscribe[0]  # one link per reader


# --- unsubscribe ------------------------------------------------------------------------------------------------------


class DownServer:
    """A mail server that cannot be reached: the digest stays queued in the outbox."""

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        raise ServerUnavailable("connection refused (test)")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_one_click_unsubscribe_exactly_as_mail_providers_send_it(world: World) -> None:
    """RFC 8058: a POST of ``List-Unsubscribe=One-Click`` (form-encoded, no cookies) to the List-Unsubscribe URL of the
    delivered message unsubscribes at once with a 200 (no redirect, no cookie), cancels the queued digest, and the next
    run sends nothing; `status` lists the reader and `resubscribe` brings them back."""
    config = world.config
    https = world.emails["uma"].list_unsubscribe[0]
    # The next day's digest waits in the outbox (the mail server is down) when the reader unsubscribes.
    queued = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("uma",)), clock=fixed_clock(LATER), transport=DownServer())
    later_period = queued.digests[0].period
    with Store(config.database, clock=fixed_clock(LATER), create=False) as store:
        assert store.digest_status("uma", later_period) == "queued", queued

    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as provider:  # a fresh client: no cookie jar content
        response = provider.post(
            https, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert not provider.cookies
    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert "You are unsubscribed" in response.text and "Uma" in response.text
    unsubscribed, _ = reader_state(config, "uma")
    assert unsubscribed is not None and unsubscribed["via"] == "one-click"
    with Store(config.database, clock=fixed_clock(LATER), create=False) as store:
        assert store.digest_status("uma", later_period) == "cancelled"

    again = httpx.post(https, data={"List-Unsubscribe": "One-Click"}, timeout=TIMEOUT)
    assert again.status_code == 200 and "already unsubscribed" in again.text  # idempotent

    before = count_messages(config, "uma")
    for day in (LATER, LATER + dt.timedelta(days=1)):
        report = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("uma",)), clock=fixed_clock(day))
        outcome = {o.subscriber: o for o in report.digests}["uma"]
        assert outcome.status == "unsubscribed" and "newsletter resubscribe uma" in (outcome.detail or "")
    assert count_messages(config, "uma") == before, "an unsubscribed reader got a digest"
    assert (config.subscribers / "uma.toml").exists()

    status = newsletter_cli(world.deployment.config_path, "status")
    assert status.returncode == 0, status.stderr
    unsubscribed_lines = status.stdout.split("unsubscribed (", 1)[1].splitlines()[1:]
    assert any(line.strip().startswith("uma: since ") and "(one-click)" in line for line in unsubscribed_lines), status.stdout

    resubscribed = newsletter_cli(world.deployment.config_path, "resubscribe", "uma")
    assert resubscribed.returncode == 0 and "uma: resubscribed" in resubscribed.stdout, resubscribed
    assert reader_state(config, "uma")[0] is None
    back = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("uma",)), clock=fixed_clock(LATER + dt.timedelta(days=2)))
    assert [o.status for o in back.digests] == ["sent"], back
    assert count_messages(config, "uma") == before + 1
    assert not re.search(r"^\s+uma: since", newsletter_cli(world.deployment.config_path, "status").stdout, flags=re.MULTILINE)


class RefusingServer:
    """A mail server that refuses the reader's address for good (5xx): the digest is recorded as bounced."""

    def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        raise RecipientRefused(f"{recipient}: 550 5.1.1 mailbox full (test)")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_retry_does_not_requeue_a_digest_of_a_reader_who_unsubscribed_since(world: World) -> None:
    """`newsletter retry` puts bounced and failed digests back in the outbox, except those of readers who left."""
    config = world.config
    bounced = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("bea",)), clock=fixed_clock(LATER), transport=RefusingServer())
    with Store(config.database, clock=fixed_clock(LATER), create=False) as store:
        assert store.digest_status("bea", bounced.digests[0].period) == "bounced", bounced
    response = world.server.post(world.emails["bea"].list_unsubscribe[0], data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    before = count_messages(config, "bea")

    assert pipeline.retry_failed(config, subscriber_id="bea", clock=fixed_clock(LATER)) == [
        ("bea", bounced.digests[0].period, "not requeued: the reader unsubscribed"),
    ]
    again = pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("bea",)), clock=fixed_clock(LATER))
    assert [o.status for o in again.digests] == ["unsubscribed"], again
    assert count_messages(config, "bea") == before


def test_one_click_as_multipart_form_data(world: World) -> None:
    https = world.emails["max"].list_unsubscribe[0]
    response = httpx.post(https, files={"List-Unsubscribe": (None, "One-Click")}, timeout=TIMEOUT)
    assert response.request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    unsubscribed, _ = reader_state(world.config, "max")
    assert unsubscribed is not None and unsubscribed["via"] == "one-click"


def test_get_never_changes_state(world: World) -> None:
    """GET and HEAD of every link in the email (as a link scanner or a prefetch would) leave the reader untouched;
    the GET pages are the confirm pages: a form that POSTs to the same URL."""
    sent = world.emails["ned"]
    unsubscribe = sent.list_unsubscribe[0]
    title, more, less = sent.papers()[0]
    before = everything(world.config)
    for url in (unsubscribe, more, less):
        for _ in range(2):
            assert world.server.get(url).status_code == 200
            assert httpx.head(url, timeout=TIMEOUT).status_code == 200
    assert everything(world.config) == before
    assert reader_state(world.config, "ned") == (None, {})

    confirm = world.server.get(unsubscribe)
    (form,) = lxml.html.document_fromstring(confirm.text).forms
    assert form.method.lower() == "post" and not form.get("action")  # posts back to the same signed URL
    assert "Unsubscribe from Daily Papers?" in page_text(confirm) and "Ned" in page_text(confirm)
    for url, action in ((more, "More like this"), (less, "Not for me")):
        page = world.server.get(url)
        (form,) = lxml.html.document_fromstring(page.text).forms
        assert form.method.lower() == "post" and form.get("id") == "act"
        assert page_text(page).startswith(f"{action} Ned, ") and title in page_text(page)
        assert 'document.getElementById("act").submit();' in page.text  # the auto-submit, allowed by the CSP's hash
        assert "script-src 'sha256-" in page.headers["content-security-policy"]
        assert "set-cookie" not in page.headers


def _reader_token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _sign_raw(payload: object) -> str:
    """A payload links.py would never sign, signed with the deployment's own secret (as links.py does)."""
    return URLSafeSerializer(SECRET, salt="newsletter-links").dumps(payload)


def _bad_tokens(world: World) -> dict[str, tuple[str, str]]:
    """name -> (URL, the words the 400 page must say)."""
    sent = world.emails["ned"]
    unsubscribe = sent.list_unsubscribe[0]
    base = unsubscribe.rsplit("/unsubscribe/", 1)[0]
    _, more, _ = sent.papers()[0]
    entry = entry_id_titled(world.config, sent.papers()[0][0])
    payload, signature = _reader_token(unsubscribe).rsplit(".", 1)
    # The first character: all six of its bits are signature (the last one's low bits are padding, ignored on decoding).
    flipped = ("A" if signature[0] != "A" else "Q") + signature[1:]
    foreign = LinkSigner("another deployment's secret, 0123456789")
    ours = LinkSigner(SECRET)
    altered = not_ours = "altered or was not made by this newsletter"  # a forger learns nothing from the message
    more_payload, more_signature = _reader_token(more).rsplit(".", 1)  # a long payload is compressed: ".<payload>.<signature>"
    more_base = more.rsplit("/", 1)[0]
    return {
        "another reader in the payload": (f"{base}/unsubscribe/{_b64([UNSUBSCRIBE, 'uma', None, TODAY.isoformat()])}.{signature}", altered),
        "signature changed": (f"{base}/unsubscribe/{payload}.{flipped}", altered),
        "signature cut off": (f"{base}/unsubscribe/{payload}", altered),
        "not a token": (f"{base}/unsubscribe/hello", altered),
        "feedback altered": (f"{more_base}/{more_payload}.{'A' if more_signature[0] != 'A' else 'Q'}{more_signature[1:]}", altered),
        "signed with another secret": (f"{base}/unsubscribe/{foreign.sign(UNSUBSCRIBE, 'ned', issued=TODAY)}", not_ours),
        "feedback signed with another secret": (f"{base}/feedback/{foreign.sign(MORE, 'ned', issued=TODAY, entry_id=entry)}", not_ours),
        "unsubscribe expired": (f"{base}/unsubscribe/{ours.sign(UNSUBSCRIBE, 'ned', issued=TODAY - dt.timedelta(days=400))}", "expired on"),
        "feedback expired": (f"{base}/feedback/{ours.sign(LESS, 'ned', issued=TODAY - dt.timedelta(days=120), entry_id=entry)}", "expired on"),
        "feedback link at /unsubscribe": (f"{base}/unsubscribe/{_reader_token(more)}", "not an unsubscribe link"),
        "unsubscribe link at /feedback": (f"{base}/feedback/{_reader_token(unsubscribe)}", "not a feedback link"),
        "a paper we do not have": (f"{base}/feedback/{ours.sign(MORE, 'ned', issued=TODAY, entry_id='arxiv:0000.00000')}", "no longer has"),
        "a made-up action, signed": (f"{base}/feedback/{_sign_raw(['delete', 'ned', entry, TODAY.isoformat()])}", "not one of ours"),
        "no issue day, signed": (f"{base}/unsubscribe/{_sign_raw([UNSUBSCRIBE, 'ned', None, 'soon'])}", "not one of ours"),
    }


BAD_TOKENS = [
    "another reader in the payload", "signature changed", "signature cut off", "not a token", "feedback altered",
    "signed with another secret", "feedback signed with another secret", "unsubscribe expired", "feedback expired",
    "feedback link at /unsubscribe", "unsubscribe link at /feedback", "a paper we do not have", "a made-up action, signed",
    "no issue day, signed",
]


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_tampered_expired_or_foreign_tokens_get_a_clear_400_and_change_nothing(world: World, case: str) -> None:
    url, says = _bad_tokens(world)[case]
    before = everything(world.config)
    for method in ("GET", "POST"):
        response = httpx.request(method, url, data={"List-Unsubscribe": "One-Click"} if method == "POST" else None, timeout=TIMEOUT)
        assert response.status_code == 400, (method, response.status_code, response.text)
        (problem,) = lxml.html.document_fromstring(response.text).xpath('//*[@id="problem"]')
        assert says in problem.text_content(), (method, problem.text_content())
        assert "Nothing was changed" in page_text(response)
    assert everything(world.config) == before


def test_recent_links_still_work_and_old_ones_expire_at_their_limit(world: World) -> None:
    """The expiry is about age: a feedback link from 30 days ago opens; one older than [web] link_days (90) does not."""
    ours = LinkSigner(SECRET)
    entry = entry_id_titled(world.config, world.emails["ned"].papers()[0][0])
    before = everything(world.config)
    for days, status in ((30, 200), (88, 200), (92, 400)):
        url = f"{world.server.url}/feedback/{ours.sign(MORE, 'ned', issued=TODAY - dt.timedelta(days=days), entry_id=entry)}"
        assert world.server.get(url).status_code == status, days
    old_unsubscribe = f"{world.server.url}/unsubscribe/{ours.sign(UNSUBSCRIBE, 'ned', issued=TODAY - dt.timedelta(days=300))}"
    assert world.server.get(old_unsubscribe).status_code == 200  # unsubscribe links work for a year
    assert everything(world.config) == before


def test_pages_escape_what_they_show(world: World) -> None:
    """A paper's title is feed text: the feedback page shows it as text, never as markup."""
    title = '<img src=x onerror="alert(1)"> & <script>alert(2)</script> "quoted"'
    with Store(world.config.database, clock=fixed_clock(NOW)) as store:
        store.save_entries([Entry(id="https://example.org/evil-paper", title=title, link="https://example.org/evil-paper")])
    url = f"{world.server.url}/feedback/{LinkSigner(SECRET).sign(MORE, 'ned', issued=TODAY, entry_id='https://example.org/evil-paper')}"
    before = everything(world.config)
    page = world.server.get(url)
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "<script>alert(2)" not in page.text
    assert "&lt;img src=x onerror=" in page.text and "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
    (paper,) = lxml.html.document_fromstring(page.text).xpath('//*[@id="paper"]')
    assert paper.text_content() == title
    assert everything(world.config) == before


# --- feedback ---------------------------------------------------------------------------------------------------------


def test_feedback_is_recorded_per_reader_and_counted_once(world: World) -> None:
    sent = world.emails["fay"]
    title, more, less = sent.papers()[1]
    entry = entry_id_titled(world.config, title)
    others = [row for row in everything(world.config)[1] if row[0] != "fay"]

    first = world.server.post(more)
    assert first.status_code == 200 and "Thanks, noted" in first.text and title in page_text(first)
    assert reader_state(world.config, "fay") == (None, {entry: MORE})

    second = world.server.post(more)
    assert second.status_code == 200 and "Already noted" in second.text and "it counts once" in page_text(second)
    with sqlite3.connect(world.config.database) as conn:
        assert conn.execute("SELECT count(*) FROM feedback WHERE subscriber = 'fay'").fetchone()[0] == 1

    changed_mind = world.server.post(less)  # the last click wins
    assert changed_mind.status_code == 200 and "Thanks, noted" in changed_mind.text and "push down" in changed_mind.text
    assert reader_state(world.config, "fay") == (None, {entry: LESS})
    assert [row for row in everything(world.config)[1] if row[0] != "fay"] == others  # one reader's clicks are theirs alone


def test_more_like_this_and_not_for_me_change_the_next_ranking(world: World) -> None:
    """Twins with the same topics got the same first digest. Lee asks for more like its first paper: Lee's next digest
    has a similar paper, with the reason "like a paper you liked: <title>". Kim says "not for me" to the same paper:
    those similar papers drop out of Kim's next digest or fall in score, and nothing rises."""
    config = world.config
    title, lee_more, _ = world.emails["lee"].papers()[0]
    kim_title, _, kim_less = world.emails["kim"].papers()[0]
    assert kim_title == title
    before = {item.entry.id: item.score for item in pipeline.rank_for(config, "kim", include_below_threshold=True, clock=fixed_clock(LATER))}
    kim_digest_before = [item.entry.id for item in pipeline.rank_for(config, "kim", clock=fixed_clock(LATER))]
    lee_before = pipeline.rank_for(config, "lee", clock=fixed_clock(LATER))
    assert not any(reason.kind == "liked" for item in lee_before for reason in item.reasons)

    assert "Thanks, noted" in world.server.post(lee_more).text
    assert "Thanks, noted" in world.server.post(kim_less).text

    lee_next = pipeline.rank_for(config, "lee", clock=fixed_clock(LATER))
    reason = f"like a paper you liked: {title}"
    assert any(reason in [r.describe() for r in item.reasons] for item in lee_next), [
        (item.entry.title, [r.describe() for r in item.reasons]) for item in lee_next
    ]
    similar = {
        item.entry.id for item in pipeline.rank_for(config, "lee", include_below_threshold=True, clock=fixed_clock(LATER))
        if reason in [r.describe() for r in item.reasons]
    }
    after = {item.entry.id: item.score for item in pipeline.rank_for(config, "kim", include_below_threshold=True, clock=fixed_clock(LATER))}
    kim_digest_after = [item.entry.id for item in pipeline.rank_for(config, "kim", clock=fixed_clock(LATER))]
    relevant = [entry_id for entry_id in similar if before[entry_id] > 0]  # a paper of no relevance to Kim cannot fall
    assert relevant, similar
    for entry_id in relevant:
        assert after.get(entry_id, 0.0) < before[entry_id], entry_id
    assert all(after[entry_id] <= score for entry_id, score in before.items() if entry_id in after)
    dropped = [entry_id for entry_id in kim_digest_before if entry_id in similar and entry_id not in kim_digest_after]
    assert dropped, (kim_digest_before, kim_digest_after)  # at least one similar paper left Kim's next digest


# --- configuration ----------------------------------------------------------------------------------------------------


def test_serve_refuses_in_one_line_without_base_url_or_secret_or_a_free_port(tmp_path: Path) -> None:
    (tmp_path / "no-base").mkdir()
    (tmp_path / "no-secret").mkdir()
    no_base = web_deployment(tmp_path / "no-base", base_url=None, readers={"ned": "Ned"})
    no_secret = web_deployment(tmp_path / "no-secret", base_url="https://papers.example.org", readers={"ned": "Ned"})
    env = {key: value for key, value in os.environ.items() if key != SECRET_ENV}
    for deployment, words in ((no_base, ["newsletter.base_url is not set"]), (no_secret, [SECRET_ENV, "is not set"])):
        result = newsletter_cli(deployment.config_path, "serve", "--port", str(free_port()), env=env)
        assert result.returncode == 1, result
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and all(word in line for word in words), line
        assert "Traceback" not in result.stderr and "Serving" not in result.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = newsletter_cli(no_secret.config_path, "serve", "--port", str(taken.getsockname()[1]), env={**env, SECRET_ENV: SECRET})
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot listen on 127.0.0.1:") and "Serving" not in result.stdout, line


def test_without_base_url_emails_carry_a_mailto_unsubscribe_and_no_feedback_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)  # no base_url: no secret needed either
    deployment = web_deployment(tmp_path, base_url=None, readers={"ned": "Ned"})
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOW))
    preview = pipeline.preview(config, "ned", clock=fixed_clock(NOW))
    report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOW))
    assert [o.status for o in report.digests] == ["sent"], report
    sent = delivered(config)["ned"]
    mailto = "mailto:papers@example.org?subject=unsubscribe%20ned"
    assert sent.list_unsubscribe == [mailto] and "List-Unsubscribe-Post" not in sent.message
    assert sent.footer_links == [mailto] and f"   {mailto}" in sent.text.splitlines()
    assert len(sent.papers()) == 3 and all(more == less == "" for _, more, less in sent.papers())
    for text in (sent.html, sent.text, preview.html, preview.text):
        assert "/feedback/" not in text and "More like this" not in text and "Not for me" not in text


def test_base_url_with_a_path_is_served_with_or_without_the_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url = http://host:port/papers: a proxy may pass /papers/... on or strip it; both reach the app."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    port = free_port()
    deployment = web_deployment(tmp_path, base_url=f"http://127.0.0.1:{port}/papers", readers={"ned": "Ned"})
    server = start_web_server(deployment.config_path, port)
    try:
        token = LinkSigner(SECRET).sign(UNSUBSCRIBE, "ned", issued=TODAY)
        assert server.get("/papers/healthz").text == "ok\n"
        assert "Unsubscribe from Daily Papers?" in server.get(f"/papers/unsubscribe/{token}").text
        assert "Unsubscribe from Daily Papers?" in server.get(f"/unsubscribe/{token}").text
        done = server.post(f"/papers/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert reader_state(deployment.config(), "ned")[0] is not None
    finally:
        stop_server(server.process)
