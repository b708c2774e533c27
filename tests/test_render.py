"""Rendering: matched terms highlighted, feed text escaped, numbering and grouping as the reader sees them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import pytest
from conftest import REPO

from newsletter import render_fragments
from newsletter.errors import RenderError
from newsletter.links import DigestLinks, LinkSigner, digest_links
from newsletter.models import Digest, Entry, Reason, ScoredEntry, Subscriber, Topic
from newsletter.render import Branding, Renderer, highlight_parts
from newsletter.render_fragments import FragmentCache

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


# --- {% cache %}: what is the same for every reader is rendered once, and nothing else is shared -------------------


def _reader(name: str, topic: str) -> Subscriber:
    return Subscriber(id=name, email=f"{name}@example.org", name=name.title(), timezone="UTC", send_at=dt.time(7), topics=(Topic(topic, ("distill",)),))


def _signed_links(reader: str, entry_ids: list[str]) -> DigestLinks:
    signer = LinkSigner("s" * 32)
    return digest_links(subscriber_id=reader, sender="p@example.org", base_url="https://p.example.org", signer=signer, issued=NOW.date(), entry_ids=entry_ids)


def test_shared_renderer_gives_every_reader_what_a_fresh_renderer_gives() -> None:
    """Readers share papers in other orders, with other marked terms, reasons and signed links: one Renderer for
    all of them (fragments cached) renders each exactly as a Renderer of its own does."""
    papers = [_item(n, f"We distil teachers into students, paper {n}.", "KD", ("distil",)).entry for n in range(1, 6)]
    shared = Renderer(REPO / "templates")
    for turn, (name, order, highlights) in enumerate([
        ("ada", [0, 1, 2], ("distil",)), ("bob", [2, 1, 0, 3], ("teachers",)), ("cy", [1, 4], ("distil",)), ("dee", [0, 1, 2], ("distil",)),
    ]):
        items = tuple(ScoredEntry(papers[i], 9.0 - rank, (Reason("topic", "KD" if turn % 2 else "FL", highlights),), highlights) for rank, i in enumerate(order))
        digest = Digest(subscriber=_reader(name, "KD"), items=items, considered=40, period="2026-11-26", created_at=NOW)
        links = _signed_links(name, [item.entry.id for item in items])
        fresh = Renderer(REPO / "templates").render(digest, branding=BRANDING, links=links)
        assert shared.render(digest, branding=BRANDING, links=links) == fresh
        assert all(url in fresh.html and url in fresh.text for pair in links.feedback.values() for url in pair)


def test_each_cache_tag_keeps_its_own_fragments() -> None:
    """Two tags with equal keys, and one tag with other keys, never print each other's output."""
    env = jinja2.Environment(extensions=[FragmentCache])
    template = env.from_string("{% for n in ns %}{% cache n % 2 %}[{{ n }}]{% endcache %}{% cache n % 2 %}<{{ n * 10 }}>{% endcache %}{% endfor %}")
    assert template.render(ns=[1, 2, 3, 4]) == "[1]<10>[2]<20>[1]<10>[2]<20>"  # 3 and 4 reuse what 1 and 2 rendered


def test_fragment_store_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_fragments, "MAX_FRAGMENTS", 3)
    env = jinja2.Environment(extensions=[FragmentCache])
    env.from_string("{% for n in ns %}{% cache n %}{{ n }}{% endcache %}{% endfor %}").render(ns=range(10))
    (cache,) = env.extensions.values()
    assert isinstance(cache, FragmentCache) and [key for _, key in cache.fragments] == [7, 8, 9]


def test_unhashable_cache_key_is_a_render_error_naming_the_line(tmp_path: Path) -> None:
    for name in ("digest.html.j2", "digest.txt.j2"):
        (tmp_path / name).write_text((REPO / "templates" / name).read_text(encoding="utf-8"), encoding="utf-8")
    text = tmp_path / "digest.txt.j2"
    text.write_text(text.read_text(encoding="utf-8").replace("{% cache item.authors,", "{% cache [item.authors],"), encoding="utf-8")
    line = next(n for n, row in enumerate(text.read_text(encoding="utf-8").splitlines(), start=1) if "{% cache [" in row)
    with pytest.raises(RenderError, match=rf"digest.txt.j2:{line}: template error: .*unhashable"):
        Renderer(tmp_path).render(_digest(_item(1, "a", "KD")), branding=BRANDING, links=LINKS)


def test_custom_templates_still_see_jinjas_globals(tmp_path: Path) -> None:
    """Renderer keeps each template's globals as a plain dict (a faster copy per email): range, joiner, namespace remain."""
    (tmp_path / "digest.html.j2").write_text(
        "<p>{% set sep = joiner(' | ') %}{% for n in range(3) %}{{ sep() }}{{ n }}{% endfor %}</p>"
        "{% set ns = namespace(count=0) %}{% for item in items %}{% set ns.count = ns.count + 1 %}{% endfor %}<p>{{ ns.count }}</p>",
        encoding="utf-8",
    )
    (tmp_path / "digest.txt.j2").write_text("{{ range(2) | list }} {{ dict(a=1) }} {{ cycler('x', 'y').next() }}", encoding="utf-8")
    for inline in (True, False):
        email = Renderer(tmp_path, inline=inline).render(_digest(_item(1, "a", "KD"), _item(2, "b", "KD")), branding=BRANDING, links=LINKS)
        assert "<p>0 | 1 | 2</p><p>2</p>" in email.html.replace("\n", "") and email.text == "[0, 1] {'a': 1} x\n"
