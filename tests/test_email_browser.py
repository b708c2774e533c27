"""The HTML email as readers see it, in a real (headless) Chromium: phone and desktop widths, light and dark, and
with the <style> block stripped as Gmail's web client does.

The digest is real: the ten papers with the longest abstracts in the arXiv JWST snapshots of the shared data,
ingested, ranked and rendered by the project's own code (``pipeline.preview``) for a reader whose topics match
all ten. Screenshots and the HTML go to test-artifacts/ at the repository's top.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from browser import (  # noqa: F401  (browser, artifacts: fixtures)
    MIN_CONTRAST,
    artifacts,
    backgrounds,
    browser,
    common_ancestor_selector,
    content_column,
    contrast_failures,
    email_page,
    horizontal_overflow,
    listing,
    screenshot,
    title_visibility,
    without_style_blocks,
)
from conftest import NOON, SHARED_DATA, Deployment, fixed_clock
from playwright.sync_api import Browser, Page

from newsletter import ingest, pipeline

SNAPSHOTS = sorted((SHARED_DATA / "feeds" / "arxiv-to-rss").glob("*/feeds/feed.xml"))
PAPERS = 10
MOBILE, DESKTOP, COLUMN = 375, 800, 600

READER = """
email = "reader@example.org"
name = "Reader"
timezone = "UTC"
max_items = 10

[[topics]]
name = "Galaxy evolution"
keywords = ["galaxies", "galaxy", "quenching", "reionization"]

[[topics]]
name = "Interstellar medium"
keywords = ["interstellar medium", "molecular", "photodissociation", "gas"]

[[topics]]
name = "Stars and dust"
keywords = ["stars", "stellar", "dust"]
"""


def _longest_abstracts_feed(path: Path, count: int = PAPERS) -> list[str]:
    """An RSS file of the ``count`` items with the longest abstracts across the snapshots, items byte for byte
    as served; returns their canonical ids."""
    items: dict[str, tuple[int, str]] = {}
    head = ""
    for snapshot in SNAPSHOTS:
        raw = snapshot.read_text(encoding="utf-8")
        head = head or raw[: raw.index("<item>")]
        blocks = re.findall(r"<item>.*?</item>", raw, re.DOTALL)
        entries = ingest.parse(raw.encode(), feed_name="probe").entries
        assert len(entries) == len(blocks), snapshot
        for entry, block in zip(entries, blocks):
            assert entry.link and entry.link.removesuffix("/") in block, (entry.id, snapshot)  # the same item
            items[entry.id] = (len(entry.summary), block)
    longest = sorted(items, key=lambda entry_id: (-items[entry_id][0], entry_id))[:count]
    path.write_text(head + "".join(items[entry_id][1] for entry_id in longest) + "</channel></rss>", encoding="utf-8")
    return longest


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> str:  # noqa: F811
    assert len(SNAPSHOTS) == 3, f"the arxiv-to-rss snapshots are missing under {SHARED_DATA}"
    deployment = Deployment(tmp_path_factory.mktemp("email-browser"))
    feed = deployment.root / "longest-abstracts.xml"
    ids = _longest_abstracts_feed(feed)
    deployment.add_feed("jwst-longest", feed)
    deployment.add_subscriber("reader", READER)
    config = deployment.config()
    report = pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    assert [one.new for one in report.feeds] == [PAPERS], report
    email = pipeline.preview(config, "reader", clock=fixed_clock(NOON))
    missing = [entry_id for entry_id in ids if f"arxiv.org/abs/{entry_id.removeprefix('arxiv:')}" not in email.html]
    assert not missing, f"the digest must show all ten longest abstracts; missing {missing}"
    (artifacts / "digest.html").write_text(email.html, encoding="utf-8")
    return email.html


def _overflow_message(overflow: dict[str, Any], shot: Path) -> str:
    culprits = f"culprits (the page is narrower without them):\n{listing(overflow['culprits'])}\n" if overflow["culprits"] else ""
    return (
        f"at {overflow['viewport']}px the email is {overflow['scrollWidth']}px wide\n{culprits}"
        f"boxes past the edge:\n{listing(overflow['elements'], 4)}\ntexts past the edge:\n{listing(overflow['texts'], 4)}\n"
        f"screenshot: {shot}"
    )


def _assert_no_overflow(overflow: dict[str, Any], shot: Path) -> None:
    assert overflow["scrollWidth"] <= overflow["viewport"] and not overflow["elements"] and not overflow["texts"], (
        _overflow_message(overflow, shot)
    )


def _assert_titles_visible(page: Page, shot: Path) -> None:
    titles = title_visibility(page)
    assert len(titles) == PAPERS, f"expected {PAPERS} paper titles (h3), found {len(titles)}; screenshot: {shot}"
    hidden = [title for title in titles if title["problems"]]
    assert not hidden, f"paper titles not visible:\n{listing(hidden)}\nscreenshot: {shot}"


def _assert_column(page: Page, shot: Path) -> None:
    column = content_column(page)
    assert column["width"] <= COLUMN + 0.5 and column["textSpread"] <= COLUMN + 0.5, (
        f"at {column['viewport']}px the content column is wider than {COLUMN}px: {column}\nscreenshot: {shot}"
    )
    assert column["width"] >= 0.8 * COLUMN, f"the content column collapsed: {column}\nscreenshot: {shot}"


def _assert_contrast(page: Page, label: str, shot: Path) -> None:
    """``shot`` is taken here if it was not taken yet and something fails."""
    result = contrast_failures(page)
    if (result["failures"] or result["checked"] < 4 * PAPERS) and not shot.exists():
        screenshot(page, shot)
    assert result["checked"] >= 4 * PAPERS, f"too few texts measured ({result['checked']}): is the page empty? {shot}"
    assert not result["failures"], (
        f"{label}: texts below {MIN_CONTRAST}:1 contrast ({len(result['failures'])} of {result['checked']}):\n"
        f"{listing(result['failures'])}\nscreenshot: {shot}"
    )


def test_mobile_nothing_overflows_and_every_title_shows(browser: Browser, html: str, artifacts: Path) -> None:  # noqa: F811
    with email_page(browser, html, width=MOBILE) as page:
        overflow = horizontal_overflow(page)
        shot = screenshot(page, artifacts / "mobile.png")
        _assert_no_overflow(overflow, shot)
        _assert_titles_visible(page, shot)


@pytest.mark.parametrize("width", [COLUMN, DESKTOP])
def test_desktop_column_is_at_most_600px(browser: Browser, html: str, artifacts: Path, width: int) -> None:  # noqa: F811
    with email_page(browser, html, width=width) as page:
        overflow = horizontal_overflow(page)
        shot = screenshot(page, artifacts / ("desktop.png" if width == DESKTOP else f"desktop-{width}.png"))
        _assert_no_overflow(overflow, shot)
        _assert_column(page, shot)
        _assert_titles_visible(page, shot)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_has_enough_contrast(browser: Browser, html: str, artifacts: Path, scheme: str) -> None:  # noqa: F811
    with email_page(browser, html, width=MOBILE, dark=scheme == "dark") as page:
        if scheme == "dark":
            shot = screenshot(page, artifacts / "dark.png")
        else:  # the same view as mobile.png: a screenshot of its own only on failure
            shot = artifacts / "light-contrast-failed.png"
            shot.unlink(missing_ok=True)
        _assert_contrast(page, scheme, shot)


def test_dark_mode_rules_apply(browser: Browser, html: str, artifacts: Path) -> None:  # noqa: F811
    (artifacts / "dark-mode-failed.png").unlink(missing_ok=True)
    with email_page(browser, html, width=MOBILE, dark=True) as page:
        measured = backgrounds(page, ["body", common_ancestor_selector(page, "h3")])
        light = {selector: value for selector, value in measured.items() if not value or value["luminance"] > 0.05}
        if light:
            shot = screenshot(page, artifacts / "dark-mode-failed.png")
            pytest.fail(
                "prefers-color-scheme: dark must make the page dark (background luminance <= 0.05); "
                f"measured (body, papers' column): {measured}\nscreenshot: {shot}",
                pytrace=False,
            )


@pytest.mark.parametrize("width", [MOBILE, COLUMN])
def test_without_style_block_like_gmail_web(browser: Browser, html: str, artifacts: Path, width: int) -> None:  # noqa: F811
    """Gmail's web client drops <style> (and so the media queries): the inlined CSS alone must hold the layout."""
    stripped = without_style_blocks(html)
    assert 'style="' in stripped, "premailer should have inlined the CSS"
    with email_page(browser, stripped, width=width) as page:
        overflow = horizontal_overflow(page)
        shot = screenshot(page, artifacts / f"no-style-{width}.png")
        _assert_no_overflow(overflow, shot)
        _assert_titles_visible(page, shot)
        _assert_contrast(page, "light, no <style>", shot)


def test_without_style_block_desktop_column_is_at_most_600px(browser: Browser, html: str, artifacts: Path) -> None:  # noqa: F811
    with email_page(browser, without_style_blocks(html), width=DESKTOP) as page:
        shot = screenshot(page, artifacts / "no-style-desktop.png")
        _assert_column(page, shot)
        _assert_titles_visible(page, shot)
