"""The ingest's shortcuts change nothing: each is checked against the long way on real feeds and texts."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from conftest import EXAMPLES, FEEDS

from newsletter import ingest
from newsletter.errors import FeedError
from newsletter.latex import _SPACES, _latex_in_text, _squeezed, latex_to_unicode
from newsletter.store.entries import _json_list

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


# --- the texts of real feeds and listings: what each shortcut is checked on ----------------------------------------

JSONL_JUNE = sorted((FEEDS.parent / "papers" / "daily-arXiv-ai-enhanced" / "data").glob("2026-06-*.jsonl"))


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    """Titles, abstracts, names and comments as feedparser gives them, cleaned, and converted from LaTeX."""
    raw: list[str] = []
    for path in REAL_FEEDS:
        if path.suffix != ".xml":
            continue
        for item in feedparser.parse(path.read_bytes(), sanitize_html=False, resolve_relative_uris=True).entries:
            raw += [item.get("title", ""), item.get("summary", ""), item.get("arxiv_comment", "")]
            raw += [author.get("name", "") for author in item.get("authors", [])]
    for path in JSONL_JUNE[:3]:  # the listings bench/pipeline.py's arXiv feed is made of: LaTeX as authors write it
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            raw += [row["title"], row["summary"], *row["authors"]]
    cleaned = [ingest.clean_text(text) for text in raw]
    return raw + cleaned + [latex_to_unicode(text) for text in cleaned]


@pytest.fixture(scope="module")
def real_lists() -> list[tuple[str, ...]]:
    """Every entry's authors and categories, from every real feed."""
    lists: list[tuple[str, ...]] = []
    for path in REAL_FEEDS:
        for entry in ingest.parse(path.read_bytes(), feed_name="real").entries:
            lists += [entry.authors, entry.categories]
    return lists


def test_the_real_texts_hold_what_the_shortcuts_skip(real_texts: list[str]) -> None:
    """Each shortcut is taken and refused on real text: LaTeX, double spaces, line breaks, markup, entities."""
    assert len(real_texts) > 20_000
    for needle in ("\\", "{", "}", "$", "``", "  ", "\n", "<", "&"):
        assert sum(needle in text for text in real_texts) > 20, needle


# --- the shortcuts, each against the long way -----------------------------------------------------------------------

EDGES = ["", " ", "  ", "a  b", "a   b  c", "`", "``", "a{b", "}", "\\", "$", "\\(", "x\u00a0 y", "\t", "a\n\nb", "<", "&amp;"]


def test_latex_in_text_agrees_with_the_regex_it_replaced(real_texts: list[str]) -> None:
    regex = re.compile(r"[\\{}]|``")
    for text in real_texts + EDGES:
        assert _latex_in_text(text) == (regex.search(text) is not None), text


def test_squeezing_spaces_agrees_with_the_regex_alone(real_texts: list[str]) -> None:
    for text in real_texts + EDGES:
        assert _squeezed(text) == _SPACES.sub(" ", text), text


def test_json_lists_are_json_dumps_text(real_lists: list[tuple[str, ...]]) -> None:
    odd = [(), ('say "hi"', "back\\slash", "tab\there", "\x00\x1f\x7f", "😀", "\ud800", "Pižurica"), (1, "a"), (None,), (True, 2.5)]
    assert sum(len(names) for names in real_lists) > 5_000
    for items in real_lists + odd:
        assert _json_list(items) == json.dumps(list(items), ensure_ascii=False), items


def test_printable_agrees_with_isprintable(real_texts: list[str]) -> None:
    long_ascii = "An abstract long enough to take the shortcut, " * 6
    edges = [long_ascii + chr(code) + long_ascii for code in range(128)] + [long_ascii + "é", long_ascii + "\u2028", long_ascii + "\x85"]
    for text in real_texts + EDGES + edges:
        assert ingest._printable(text) == text.isprintable(), repr(text[:80])


# The long ways, as they were before their shortcuts (ingest.py at c08dcc6).


def _authors_the_long_way(raw: dict) -> tuple[str, ...]:
    names = [ingest.clean_text(dict.get(author, "name", ""), is_html=False) for author in dict.get(raw, "authors", []) if isinstance(author, dict)]
    names = [name for name in names if name]
    if len(names) == 1 and "," in names[0]:
        names = [part.strip() for part in names[0].split(",") if part.strip()]
    return tuple(name for name in (ingest._unlatex(name) for name in names) if name)


def _split_summary_the_long_way(summary_html: str) -> tuple[str, tuple[str, ...]]:
    paragraphs = ingest._PARAGRAPH.findall(summary_html or "")
    labelled = [p for p in paragraphs if ingest._LABELLED.match(p)]
    if len(paragraphs) >= 2 and labelled:
        plain = [p for p in paragraphs if not ingest._LABELLED.match(p)]
        if len(plain) >= 2:
            authors = tuple(name for name in (ingest.readable_text(n) for n in ingest.clean_text(plain[0]).split(",")) if name)
            return ingest.clean_text(" ".join(plain[1:])), authors
        return ingest.clean_text(" ".join(plain)), ()
    text = ingest.clean_text(summary_html)
    return ingest._ARXIV_PREFIX.sub("", text), ()


@pytest.fixture(scope="module")
def raw_entries() -> list[dict]:
    """feedparser's entries of every real XML feed, and entries whose names each take the long way."""
    entries = [
        entry
        for path in REAL_FEEDS if path.suffix == ".xml"
        for entry in feedparser.parse(path.read_bytes(), sanitize_html=False, resolve_relative_uris=True).entries
    ]
    odd_names = [
        ["Ana Ruiz", "Jan Pi\\v{z}urica"], ["$\\alpha$-Team"], ["Ana  Ruiz"], ["Ana ", " Ruiz"], ["Ana\tRuiz", "B\nC"],
        ["A, B,  C"], ["A, Pi\\v{z}urica"], [" ", ""], [None, "Ana"], [5], ["Ana\x00Ruiz"], ["Ana\u00a0Ruiz"], [],
    ]
    return entries + [{"authors": [{"name": name} for name in names]} for names in odd_names] + [{"authors": ["not a dict"]}, {}]


def test_authors_agree_with_the_long_way(raw_entries: list[dict]) -> None:
    assert len(raw_entries) > 800
    for raw in raw_entries:
        assert ingest._authors(raw) == _authors_the_long_way(raw), raw.get("authors")


def test_summaries_agree_with_the_long_way(raw_entries: list[dict], real_texts: list[str]) -> None:
    summaries = [dict.get(raw, "summary", "") for raw in raw_entries] + real_texts + EDGES
    summaries += ["<p>Ana, Bo</p><p>The abstract.</p><p><b>Published:</b> today</p>", "<P>Ana, Bo</P><P>An abstract.</P><P><B>Published:</B> today</P>"]
    for summary in summaries:
        assert ingest._split_summary(summary) == _split_summary_the_long_way(summary), summary[:80]
