"""Rendering: matched terms highlighted, feed text escaped, numbering and grouping as the reader sees them."""

from __future__ import annotations

import datetime as dt

from conftest import REPO

from newsletter.links import digest_links
from newsletter.models import Digest, Entry, Reason, ScoredEntry, Subscriber, Topic
from newsletter.render import Branding, Renderer, highlight_parts

NOW = dt.datetime(2026, 11, 26, 7, 30, tzinfo=dt.timezone.utc)


def _digest(*items: ScoredEntry) -> Digest:
    subscriber = Subscriber(id="ada", email="ada@example.org", name="Ada", timezone="UTC", send_at=dt.time(7), topics=(Topic("KD", ("distill",)),))
    return Digest(subscriber=subscriber, items=items, considered=40, period="2026-11-26", created_at=NOW)


def _item(number: int, summary: str, topic: str, highlights: tuple[str, ...] = ()) -> ScoredEntry:
    entry = Entry(id=f"arxiv:2601.{number:05d}", title=f"Paper {number} <b>", link=f"https://arxiv.org/abs/2601.{number:05d}", summary=summary)
    return ScoredEntry(entry, 5.0 - number, (Reason("topic", topic, ("distill",)),), highlights)


BRANDING = Branding(title="Daily Papers", sender="p@example.org")
LINKS = digest_links(subscriber_id="ada", sender="p@example.org", base_url=None, signer=None, issued=dt.date(2026, 11, 26))


def test_highlight_marks_whole_words_only() -> None:
    parts = highlight_parts("Distilling <script>x</script> & distillation-based, not predistillation", ["Distilling", "distillation"])
    assert parts == [
        ("Distilling", True), (" <script>x</script> & ", False), ("distillation", True), ("-based, not predistillation", False),
    ]


def test_email_marks_matched_terms_and_escapes_feed_text() -> None:
    digest = _digest(_item(1, "We distil <img src=x onerror=alert(1)> teachers.", "KD", ("distil",)))
    email = Renderer(REPO / "templates").render(digest, branding=BRANDING, links=LINKS)
    assert '<mark class="hit"' in email.html and ">distil</mark>" in email.html
    assert "<img src=x" not in email.html and "&lt;img src=x onerror=alert(1)&gt;" in email.html
    assert "Paper 1 &lt;b&gt;" in email.html
    assert "<mark" not in email.text and "<img src=x onerror=alert(1)>" in email.text  # plain text shows text as is


def test_text_part_numbers_papers_in_reading_order() -> None:
    digest = _digest(_item(1, "a", "KD"), _item(2, "b", "FL"), _item(3, "c", "KD"))
    text = Renderer(REPO / "templates").render(digest, branding=BRANDING, links=LINKS).text
    order = [line.split(".")[0] + ". " + line.split(". ")[1][:7] for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert order == ["1. Paper 1", "2. Paper 3", "3. Paper 2"]  # KD group (papers 1, 3) then FL


def test_highlight_marks_every_spelling_of_a_term() -> None:
    parts = highlight_parts("Knowledge Distillation. We study knowledge distillation.", ["Knowledge Distillation"])
    assert [piece for piece, hit in parts if hit] == ["Knowledge Distillation", "knowledge distillation"]
