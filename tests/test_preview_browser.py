"""`newsletter preview --serve` in a real (headless) Chromium: what a person at the preview page sees.

The server is the real subprocess of tests/test_preview_server.py on a deployment with the example feeds ingested;
the email is looked at inside the page's ``iframe#email`` (its own Frame), measured with the helpers of
tests/browser.py. One server for the read-only tests; the live-reload test edits files and gets a server of its own.
Screenshots go to test-artifacts/ (preview-desktop.png, preview-mobile.png, preview-dark.png).
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from browser import (  # noqa: F401  (browser, artifacts: fixtures)
    ARTIFACTS,
    MIN_CONTRAST,
    artifacts,
    backgrounds,
    browser,
    common_ancestor_selector,
    content_column,
    contrast_failures,
    horizontal_overflow,
    listing,
    screenshot,
    text_contrasts,
    title_visibility,
)
from conftest import Deployment
from playwright.sync_api import Browser, Frame, Page, expect
from playwright.sync_api import Error as PlaywrightError
from test_preview_server import (
    PreviewServer,
    demo_deployment,
    start_preview_server,
    stop,
)

MOBILE, COLUMN, DESKTOP_PANE = 375, 600, 680
VIEWPORT = {"width": 1100, "height": 900}  # the preview is a desktop tool; the views set the iframe's width
RELOAD_WITHIN = 10.0  # seconds from an edit to the page having reloaded itself (it polls once a second)


@pytest.fixture(scope="module")
def preview(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreviewServer]:
    """One server for the tests that only look (nothing here edits its files)."""
    running = start_preview_server(demo_deployment(Deployment(tmp_path_factory.mktemp("preview-browser"))))
    yield running
    stop(running)


@pytest.fixture
def editable(deployment: Deployment) -> Iterator[PreviewServer]:
    """A server of its own for a test that edits the deployment's files."""
    running = start_preview_server(demo_deployment(deployment))
    yield running
    stop(running)


@contextmanager
def preview_page(
    browser: Browser, server: PreviewServer, path: str, *, color_scheme: str = "light",  # noqa: F811
    before: Callable[[Page], Any] | None = None,
) -> Iterator[Page]:
    """A fresh context at ``path``; only the preview server is reachable (remote images in the email are aborted).
    ``before`` sees the page before it loads (to listen to its requests from the start)."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)  # a page that never gets there fails in seconds, not Playwright's 30 s
    try:
        context.route(lambda url: not url.startswith(server.url + "/"), lambda route: route.abort())
        page = context.new_page()
        if before:
            before(page)
        page.goto(server.url + path, wait_until="load")  # "load" waits for the iframe too
        yield page
    finally:
        context.close()


def email_frame(page: Page, view: str) -> Frame:
    """The email inside the viewer's iframe#email, loaded."""
    handle = page.locator("iframe#email").element_handle(timeout=5000)
    frame = handle.content_frame()
    assert frame is not None, "iframe#email has no document"
    frame.wait_for_load_state("load")
    assert f"email.html?view={view}" in frame.url, frame.url
    return frame


def picks(page: Page) -> int:
    """The number of papers the digest's subject announces ("Daily Papers — 5 picks: ...")."""
    subject = page.locator("#subject").inner_text()
    found = re.search(r"(\d+) picks?\b", subject)
    assert found, f"the subject names no number of picks: {subject!r}"
    return int(found.group(1))


def _overflow_message(overflow: dict[str, Any], shot: Path) -> str:
    culprits = f"culprits (the email is narrower without them):\n{listing(overflow['culprits'])}\n" if overflow["culprits"] else ""
    return (
        f"in the {overflow['viewport']}px iframe the email is {overflow['scrollWidth']}px wide\n{culprits}"
        f"boxes past the edge:\n{listing(overflow['elements'], 4)}\ntexts past the edge:\n{listing(overflow['texts'], 4)}\n"
        f"screenshot: {shot}"
    )


def _assert_no_overflow(frame: Frame, width: int, shot: Path) -> None:
    overflow = horizontal_overflow(frame)  # type: ignore[arg-type]  (the helpers only need .evaluate)
    assert overflow["scrollWidth"] <= width and overflow["scrollWidth"] <= overflow["viewport"], _overflow_message(overflow, shot)
    assert not overflow["elements"] and not overflow["texts"], _overflow_message(overflow, shot)


def _assert_titles_visible(page: Page, frame: Frame, shot: Path) -> None:
    titles = title_visibility(frame)  # type: ignore[arg-type]
    expected = picks(page)
    assert expected >= 1, "the demo digest should have papers"
    assert len(titles) == expected, f"the subject announces {expected} papers, the email shows {len(titles)} titles (h3); {shot}"
    hidden = [title for title in titles if title["problems"]]
    assert not hidden, f"paper titles not visible:\n{listing(hidden)}\nscreenshot: {shot}"


# --- 1. the mobile and desktop views ------------------------------------------------------------


def test_mobile_view_nothing_overflows_and_every_title_shows(browser: Browser, preview: PreviewServer, artifacts: Path) -> None:  # noqa: F811
    with preview_page(browser, preview, "/s/ada?view=mobile") as page:
        shot = screenshot(page, artifacts / "preview-mobile.png")
        frame = email_frame(page, "mobile")
        assert frame.evaluate("() => window.innerWidth") == MOBILE, "the mobile view's iframe must be 375px wide"
        _assert_no_overflow(frame, MOBILE, shot)
        _assert_titles_visible(page, frame, shot)


def test_desktop_view_email_column_is_at_most_600px(browser: Browser, preview: PreviewServer, artifacts: Path) -> None:  # noqa: F811
    with preview_page(browser, preview, "/s/ada?view=desktop") as page:
        shot = screenshot(page, artifacts / "preview-desktop.png")
        frame = email_frame(page, "desktop")
        # A desktop reading pane is wider than the column, so the email's phone rules (max-width: 620px) must not apply.
        assert frame.evaluate("() => window.innerWidth") == DESKTOP_PANE, f"the desktop view's iframe must be {DESKTOP_PANE}px wide"
        column = content_column(frame)  # type: ignore[arg-type]
        assert column["width"] <= COLUMN + 0.5 and column["textSpread"] <= COLUMN + 0.5, (
            f"the email's column is wider than {COLUMN}px: {column}\nscreenshot: {shot}"
        )
        assert column["width"] >= COLUMN - 0.5, f"the email's column is narrower than {COLUMN}px on a desktop pane: {column}\nscreenshot: {shot}"
        title_size = frame.evaluate("() => getComputedStyle(document.querySelector('h3')).fontSize")
        assert title_size == "17px", f"the phone layout's title size ({title_size}) shows in the desktop view\nscreenshot: {shot}"
        _assert_no_overflow(frame, DESKTOP_PANE, shot)
        _assert_titles_visible(page, frame, shot)


# --- 2. the dark view ---------------------------------------------------------------------------


def test_dark_view_is_dark_and_titles_are_readable(browser: Browser, preview: PreviewServer, artifacts: Path) -> None:  # noqa: F811
    # The browser itself prefers light: the dark view must force the email's dark rules on by itself.
    with preview_page(browser, preview, "/s/ada?view=dark", color_scheme="light") as page:
        shot = screenshot(page, artifacts / "preview-dark.png")
        frame = email_frame(page, "dark")
        column = common_ancestor_selector(frame, "h3")  # type: ignore[arg-type]
        measured = backgrounds(frame, ["body", column])  # type: ignore[arg-type]
        light = {selector: value for selector, value in measured.items() if not value or value["luminance"] > 0.05}
        assert not light, (
            f"the dark view must be dark (background luminance <= 0.05); measured (body, papers' column): {measured}\n"
            f"screenshot: {shot}"
        )
        titles = text_contrasts(frame, "h3")
        assert len(titles) >= picks(page), f"too few title texts measured: {titles}\nscreenshot: {shot}"
        dim = [title for title in titles if title["ratio"] < MIN_CONTRAST]
        assert not dim, f"paper titles below {MIN_CONTRAST}:1 on the dark background:\n{listing(dim)}\nscreenshot: {shot}"
        every_text = contrast_failures(frame)  # type: ignore[arg-type]
        assert not every_text["failures"], (
            f"texts below {MIN_CONTRAST}:1 in the dark view ({len(every_text['failures'])} of {every_text['checked']}):\n"
            f"{listing(every_text['failures'])}\nscreenshot: {shot}"
        )


# --- 3. live reload, as the page sees it --------------------------------------------------------


class Polls:
    """Counts the current document's requests for /_version. The page takes its baseline version from its first
    poll, so an edit made before that poll has answered would go unnoticed: ``settled`` waits for the document's
    second poll, which starts only after the first one has answered."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0
        page.on("framenavigated", self._on_navigated)
        page.on("request", self._on_request)

    def _on_navigated(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.count = 0

    def _on_request(self, request: Any) -> None:
        if request.url.endswith("/_version") and request.frame == self.page.main_frame:
            self.count += 1

    def settled(self) -> None:
        wait_until(self.page, lambda: self.count >= 2, 5.0, "the page does not poll /_version once a second")


def wait_until(page: Page, condition: Callable[[], bool], timeout: float, failure: str) -> float:
    """Seconds until ``condition()`` holds; fails (with a screenshot) after ``timeout``. Errors while the page
    navigates count as "not yet"."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except PlaywrightError:
            pass
        if time.monotonic() - start > timeout:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "preview-reload-failed.png"
            page.screenshot(path=str(shot))
            pytest.fail(f"{failure} (waited {timeout:.0f} s); the page is at {page.url}; screenshot: {shot}", pytrace=False)
        page.wait_for_timeout(100)  # lets Playwright deliver the page's events meanwhile


def _mark(page: Page) -> None:
    page.evaluate("() => { window.__marker = 1; }")


def _reloaded(page: Page) -> Callable[[], bool]:
    return lambda: page.evaluate("() => window.__marker === undefined") is True


def test_live_reload_seen_by_a_real_page(browser: Browser, editable: PreviewServer, artifacts: Path) -> None:  # noqa: F811
    root = editable.deployment.root
    subscriber = root / "subscribers" / "ada.toml"
    template = root / "templates" / "digest.html.j2"
    polls: list[Polls] = []
    with preview_page(browser, editable, "/s/ada?view=desktop", before=lambda page: polls.append(Polls(page))) as page:
        papers = picks(page)
        expect(page.frame_locator("iframe#email").locator("h3")).to_have_count(papers)

        # An edit of the subscriber's topics: the page reloads by itself and shows the new topic name.
        polls[0].settled()
        _mark(page)
        before = subscriber.read_text(encoding="utf-8")
        assert 'name = "Knowledge distillation"' in before
        subscriber.write_text(before.replace('name = "Knowledge distillation"', 'name = "Zeppelin distillation"'), encoding="utf-8")
        wait_until(page, _reloaded(page), RELOAD_WITHIN, "the page did not reload itself after ada.toml changed")
        expect(page.frame_locator("iframe#email").locator("h2.topic").first).to_have_text("Zeppelin distillation")
        expect(page.locator("pre.text")).to_contain_text("== Zeppelin distillation ==")
        expect(page.locator("#subject")).to_contain_text(re.compile("zeppelin distillation", re.IGNORECASE))

        # A syntax error in the template: the page reloads into the problem, with the file and line.
        polls[0].settled()
        _mark(page)
        good = template.read_text(encoding="utf-8")
        lines = good.splitlines()
        broken_line = next(number for number, line in enumerate(lines, start=1) if "paper-title" in line and "<h3" in line)
        assert "{% if item.link %}" in lines[broken_line - 1]
        lines[broken_line - 1] = lines[broken_line - 1].replace("{% if item.link %}", "{% if item.link %", 1)
        template.write_text("\n".join(lines) + "\n", encoding="utf-8")
        wait_until(page, _reloaded(page), RELOAD_WITHIN, "the page did not reload itself after digest.html.j2 broke")
        expect(page.locator("p#problem")).to_contain_text(f"digest.html.j2:{broken_line}")
        expect(page.locator("iframe#email")).to_have_count(0)

        # The fix: the problem page reloads by itself and the email comes back.
        polls[0].settled()
        _mark(page)
        template.write_text(good, encoding="utf-8")
        wait_until(page, _reloaded(page), RELOAD_WITHIN, "the problem page did not reload itself after the fix")
        expect(page.locator("p#problem")).to_have_count(0)
        expect(page.frame_locator("iframe#email").locator("h3")).to_have_count(papers)
        expect(page.frame_locator("iframe#email").locator("h2.topic").first).to_have_text("Zeppelin distillation")


# --- 4. the index -------------------------------------------------------------------------------


def test_index_lists_every_subscriber_and_the_mobile_link_opens_the_mobile_view(
    browser: Browser, preview: PreviewServer  # noqa: F811
) -> None:
    files = sorted((preview.deployment.root / "subscribers").glob("*.toml"))
    assert len(files) == 2
    with preview_page(browser, preview, "/") as page:
        rows = page.locator("tbody tr[id^='subscriber-']")
        assert sorted(rows.evaluate_all("rows => rows.map(row => row.id)")) == [f"subscriber-{path.stem}" for path in files]
        for path in files:
            settings = tomllib.loads(path.read_text(encoding="utf-8"))
            row = page.locator(f"tr#subscriber-{path.stem}")
            expect(row).to_be_visible()
            expect(row).to_contain_text(settings["name"])
            expect(row).to_contain_text(settings["email"])

        for path in files:
            page.goto(preview.url + "/", wait_until="load")
            page.locator(f"tr#subscriber-{path.stem}").get_by_role("link", name="mobile", exact=True).click()
            expect(page).to_have_url(f"{preview.url}/s/{path.stem}?view=mobile")
            page.wait_for_load_state("load")
            expect(page.locator("nav a[aria-current='page']")).to_have_text("mobile (375px)")
            frame = email_frame(page, "mobile")
            assert frame.evaluate("() => window.innerWidth") == MOBILE
            expect(page.frame_locator("iframe#email").locator("h3")).to_have_count(picks(page))
