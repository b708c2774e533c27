"""The links of a delivered email, followed in a real (headless) Chromium against a real `newsletter serve` process.

A reader opens the email's HTML (as delivered into the Maildir by ``pipeline.run_digests``) and clicks: "More like
this" records the feedback through the page's auto-submit (a second click counts once); the footer's "Unsubscribe"
opens a confirm page that changes nothing until its button is pressed; a link scanner that does not run JavaScript
changes nothing. Only the server is reachable from the pages; any console error (a Content-Security-Policy violation
would be one) fails the test. Screenshots go to test-artifacts/ (web-feedback.png, web-unsubscribe-confirm.png,
web-unsubscribed.png).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser import artifacts, browser, screenshot  # noqa: F401  (browser, artifacts: fixtures)
from conftest import fixed_clock
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect
from test_preview_server import free_port
from test_web import (
    NOW,
    SECRET,
    SECRET_ENV,
    Delivered,
    WebServer,
    delivered,
    entry_id_titled,
    reader_state,
    start_web_server,
    stop_server,
    web_deployment,
)

from newsletter import pipeline
from newsletter.config import Config
from newsletter.links import MORE

WAIT_MS = 30_000  # generous: a loaded 2-core machine


@dataclass
class Site:
    config: Config
    server: WebServer
    emails: dict[str, Delivered]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        port = free_port()
        deployment = web_deployment(
            tmp_path_factory.mktemp("web-browser"), base_url=f"http://127.0.0.1:{port}", readers={"ada": "Ada", "bob": "Bob", "cy": "Cy"},
        )
        server = start_web_server(deployment.config_path, port)  # at once: the port was free a moment ago
        try:
            config = deployment.config()
            pipeline.ingest_feeds(config, clock=fixed_clock(NOW))
            report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOW))
            assert [o.status for o in report.digests] == ["sent"] * 3, report
            yield Site(config, server, delivered(config))
        finally:
            stop_server(server.process)


@dataclass
class Seen:
    """What the pages did: the requests to the server (method, path; not the browser's own favicon fetch) and any
    console error of the server's pages (a Content-Security-Policy violation is one)."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def reader_page(browser: Browser, site: Site, *, javascript: bool = True) -> Iterator[tuple[Page, Seen]]:  # noqa: F811
    """A fresh context (no cookies) where only the server is reachable; the email's remote images etc. are aborted."""
    context = browser.new_context(viewport={"width": 800, "height": 900}, java_script_enabled=javascript)
    context.set_default_timeout(WAIT_MS)
    seen = Seen()
    try:
        context.route(lambda url: not url.startswith(site.server.url + "/"), lambda route: route.abort())
        page = context.new_page()
        ours = site.server.url + "/"

        def on_request(request: Request) -> None:
            if request.url.startswith(ours) and not request.url.endswith("/favicon.ico"):
                seen.requests.append((request.method, request.url.removeprefix(site.server.url)))

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and page.url.startswith(ours):  # not the email's own (aborted remote images)
                seen.errors.append(message.text)

        page.on("request", on_request)
        page.on("console", on_console)
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        yield page, seen
    finally:
        context.close()


def open_email(page: Page, email: Delivered) -> None:
    """The delivered HTML part, as a mail client shows it."""
    page.set_content(email.html, wait_until="load")


def feedback_rows(config: Config, reader: str) -> int:
    with sqlite3.connect(config.database) as conn:
        return int(conn.execute("SELECT count(*) FROM feedback WHERE subscriber = ?", [reader]).fetchone()[0])


def test_more_like_this_in_the_email_is_one_click_and_a_second_click_counts_once(
    browser: Browser, site: Site, artifacts: Path,  # noqa: F811
) -> None:
    email = site.emails["ada"]
    title, more, _ = email.papers()[0]
    token_path = more.removeprefix(site.server.url)
    entry = entry_id_titled(site.config, title)
    with reader_page(browser, site) as (page, seen):
        open_email(page, email)
        page.get_by_role("link", name="More like this").first.click()
        result = page.locator("#result")
        expect(result).to_have_attribute("data-changed", "yes", timeout=WAIT_MS)  # the page submitted itself
        assert title in result.inner_text() and "Ada" in result.inner_text()
        screenshot(page, artifacts / "web-feedback.png")
        assert seen.requests == [("GET", token_path), ("POST", token_path)], seen.requests
        assert reader_state(site.config, "ada") == (None, {entry: MORE})

        open_email(page, email)
        page.get_by_role("link", name="More like this").first.click()
        expect(result).to_have_attribute("data-changed", "no", timeout=WAIT_MS)
        assert "it counts once" in result.inner_text()
        assert feedback_rows(site.config, "ada") == 1
        assert reader_state(site.config, "ada") == (None, {entry: MORE})
        assert not seen.errors, seen.errors


def test_footer_unsubscribe_opens_a_confirm_page_and_only_its_button_unsubscribes(
    browser: Browser, site: Site, artifacts: Path,  # noqa: F811
) -> None:
    email = site.emails["bob"]
    (footer_link,) = email.footer_links
    with reader_page(browser, site) as (page, seen):
        open_email(page, email)
        page.get_by_role("link", name="Unsubscribe", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe from Daily Papers?")
        page.wait_for_load_state("networkidle")  # whatever the page would do by itself, it has done
        assert page.url == footer_link
        assert reader_state(site.config, "bob") == (None, {}), "opening the link unsubscribed the reader"
        assert [method for method, _ in seen.requests] == ["GET"], seen.requests
        screenshot(page, artifacts / "web-unsubscribe-confirm.png")

        page.get_by_role("button", name="Unsubscribe").click()
        result = page.locator("#result")
        expect(result).to_have_attribute("data-changed", "yes", timeout=WAIT_MS)
        expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
        screenshot(page, artifacts / "web-unsubscribed.png")
        unsubscribed, _ = reader_state(site.config, "bob")
        assert unsubscribed is not None and unsubscribed["via"] == "web"
        assert [method for method, _ in seen.requests] == ["GET", "POST"], seen.requests
        assert not page.context.cookies()
        assert not seen.errors, seen.errors


def test_a_link_scanner_without_javascript_changes_nothing_and_the_button_still_works(browser: Browser, site: Site) -> None:  # noqa: F811
    email = site.emails["cy"]
    title, _, less = email.papers()[0]
    with reader_page(browser, site, javascript=False) as (page, seen):
        page.goto(less, wait_until="load")
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("heading", level=1)).to_have_text("Not for me")
        assert title in page.locator("#paper").inner_text()
        assert reader_state(site.config, "cy") == (None, {}), "a GET without JavaScript recorded feedback"
        assert seen.requests == [("GET", less.removeprefix(site.server.url))]

        page.get_by_role("button", name=re.compile("not for me", re.IGNORECASE)).click()  # a person with scripts off
        expect(page.locator("#result")).to_have_attribute("data-changed", "yes", timeout=WAIT_MS)
        assert reader_state(site.config, "cy") == (None, {entry_id_titled(site.config, title): "less"})
