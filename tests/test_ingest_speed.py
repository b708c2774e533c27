"""The ingest's shortcuts change nothing: each is checked against the long way on real feeds and texts."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, FEEDS

from newsletter import ingest
from newsletter.errors import FeedError

REAL_FEEDS = sorted(
    [*EXAMPLES.glob("*.xml"), *EXAMPLES.glob("*.json"), *FEEDS.rglob("*.xml"), *FEEDS.rglob("*.json")]
)


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_the_real_feeds_are_there() -> None:
    assert len(REAL_FEEDS) >= 12, REAL_FEEDS


@pytest.mark.usefixtures("collector_on")
def test_parsing_leaves_the_collector_on_whether_it_succeeds_or_fails() -> None:
    assert ingest.parse((EXAMPLES / "arxiv-jwst.rss.xml").read_bytes(), feed_name="jwst").entries
    assert gc.isenabled()
    with pytest.raises(FeedError):
        ingest.parse(b"<html><body>502 Bad Gateway</body></html>", feed_name="down")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_parsing_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    assert ingest.parse((EXAMPLES / "arxiv-jwst.rss.xml").read_bytes(), feed_name="jwst").entries
    assert not gc.isenabled()


@pytest.mark.usefixtures("collector_on")
@pytest.mark.parametrize("path", REAL_FEEDS, ids=lambda path: path.name)
def test_a_parse_leaves_no_reference_cycles_for_the_collector(path: Path) -> None:
    """Why pausing the collector during a parse costs no memory: a parse leaves nothing only it could free.

    Except what a damaged feed's repair leaves (an ill-formed XML's error and its traceback, the
    syntax trees of Python repr strings): a few thousand objects, freed once the parse is over.
    """
    content = path.read_bytes()
    gc.collect()
    gc.disable()
    parsed = ingest.parse(content, feed_name="real")
    assert parsed.entries
    damaged = parsed.warning is not None
    del parsed
    found = gc.collect()
    assert found < 5_000 if damaged else found == 0
