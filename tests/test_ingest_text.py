"""Feed text becomes clean plain text: HTML stripped only where the feed says it is HTML."""

from __future__ import annotations

import json

from conftest import EXAMPLES

from newsletter import ingest

ATOM = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id>
<entry><id>http://arxiv.org/abs/2401.00001v1</id><title>Bounds for x&lt;y and y&gt;z</title>
<summary>If x&lt;y and y&gt;z then   AT&amp;T
holds.</summary><link href="http://arxiv.org/abs/2401.00001v1"/></entry>
<entry><id>http://arxiv.org/abs/2401.00002v1</id><title type="html">A &lt;i&gt;bold&lt;/i&gt; claim</title>
<summary type="html">&lt;p&gt;Hello &lt;script&gt;alert(1)&lt;/script&gt;world &lt;b onclick="x()"&gt;now&lt;/b&gt;&lt;/p&gt;</summary>
<link href="http://arxiv.org/abs/2401.00002v1"/></entry></feed>"""


def test_plain_text_fields_keep_angle_brackets_and_ampersands() -> None:
    first, _ = ingest.parse(ATOM, feed_name="t").entries
    assert first.title == "Bounds for x<y and y>z"
    assert first.summary == "If x<y and y>z then AT&T holds."


def test_html_fields_lose_tags_scripts_and_handlers() -> None:
    _, second = ingest.parse(ATOM, feed_name="t").entries
    assert second.title == "A bold claim"
    assert second.summary == "Hello world now"


def test_html5_entities_that_feedparser_truncates_are_repaired() -> None:
    entries = ingest.parse((EXAMPLES / "arxiv-jwst.rss.xml").read_bytes(), feed_name="jwst").entries
    assert "below 5% Z⊙," in entries[0].summary
    assert not any("&percnt" in e.summary or "&odot" in e.summary for e in entries)


def test_daily_papers_json_text_is_plain() -> None:
    item = {"paper": {"id": "2401.00003", "title": "x<y: a <b>study</b>", "summary": "A & B\n  wrapped", "authors": [{"name": "Ana  Ruiz"}]}}
    (entry,) = ingest.parse(json.dumps([item]).encode(), feed_name="hf").entries
    assert (entry.title, entry.summary, entry.authors) == ("x<y: a <b>study</b>", "A & B wrapped", ("Ana Ruiz",))


def test_control_characters_from_feeds_are_dropped_at_ingest() -> None:
    """NUL, ESC (terminal escapes), DEL and C1 codes are never text; tabs and line breaks become spaces."""
    from newsletter.ingest import clean_text

    assert clean_text("a\x00b\x1b[31mc\x7fd\x9be\x85f\tg\r\nh", is_html=False) == "ab[31mcde f g h"
    assert clean_text("<b>bold</b>\x1b &amp; \x07bell") == "bold & bell"
