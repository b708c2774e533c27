"""The email as readers get it, on real papers: HTML layout and accessibility, size, untrusted feed text, the
subject, the plain-text part, quiet days, the pre-inlined fast path, and signed unsubscribe links.

Most tests read one real run: the shipped example feeds (real arXiv / daily-papers data) ingested and sent by
``pipeline.run_digests`` into a Maildir for four readers, with ``base_url`` set and the link secret in the
environment. The rest render real papers from the shared data (the arXiv RSS snapshots and JSONL listings)
through ``Renderer`` directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import functools
import json
import logging
import mailbox
import os
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import cssutils
import lxml.html
import pytest
from conftest import (
    EXAMPLES,
    NOON,
    REPO,
    SHARED_DATA,
    SUBSCRIBER_GRACE,
    Deployment,
    fixed_clock,
)

from newsletter import ingest, pipeline
from newsletter.config import Config
from newsletter.deliver import Envelope, build_message
from newsletter.links import DigestLinks, LinkSigner, digest_links
from newsletter.models import (
    Digest,
    DigestOutcome,
    Entry,
    Reason,
    ScoredEntry,
    Subscriber,
    Topic,
)
from newsletter.render import ABSTRACT_CHARS, Branding, Renderer, trim_text
from newsletter.store import Store

SNAPSHOTS = sorted((SHARED_DATA / "feeds" / "arxiv-to-rss").glob("*/feeds/feed.xml"))
LISTINGS = sorted((SHARED_DATA / "papers" / "daily-arXiv-ai-enhanced" / "data").glob("*.jsonl"))
SENDER = "Daily Papers <papers@example.org>"
BRANDING = Branding(title="Daily Papers", sender=SENDER)
BASE_URL = "https://papers.example.org"
SECRET_ENV = "EMAIL_TEST_LINK_SECRET"
SECRET = "correct-horse-battery-staple-0123456789"
WIDTH = 76
HTML_BUDGET = 100_000  # bytes of HTML for a 10-paper digest
URL_LINE = re.compile(r"   (?:https?://|mailto:)\S+")  # a line that is only a URL, indented
ENTITY_OR_TAG = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]*|#\d+|#x[0-9a-fA-F]+);|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")

KIM = """
email = "kim@example.org"
name = "Kim"
timezone = "UTC"
max_items = 8

[[topics]]
name = "Knowledge distillation"
keywords = ["knowledge distillation", "distillation", "teacher-student"]
weight = 2.0

[[topics]]
name = "Federated learning"
keywords = ["federated learning", "federated", "client participation"]
"""

VERA = """
email = "vera@example.org"
name = "Vera"
timezone = "Asia/Tokyo"
max_items = 10

[[topics]]
name = "High-redshift galaxies"
keywords = ["high-redshift", "reionization", "galaxies"]
weight = 2.0

[[topics]]
name = "Dust and stars"
keywords = ["dust", "stellar"]
"""

QUINN = """
email = "quinn@example.org"
name = "Quinn"
timezone = "UTC"
quiet_days = "note"

[[topics]]
name = "Tokamaks"
keywords = ["tokamak", "stellarator"]
"""


# --- reading emails ---------------------------------------------------------------------------------------------


def maildir_messages(path: Path) -> dict[str, tuple[EmailMessage, bytes]]:
    """Every message in the Maildir as (parsed, raw bytes), by recipient address."""
    if not path.exists():
        return {}
    box = mailbox.Maildir(path, create=False)
    found = {}
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        message = email.message_from_bytes(raw, policy=policy.default)
        found[str(message["To"].addresses[0].addr_spec)] = (message, raw)  # type: ignore[union-attr]
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    """(HTML, text) of a multipart/alternative digest, with \n line ends."""
    html, text = (message.get_body((kind,)).get_content() for kind in ("html", "plain"))  # type: ignore[union-attr]
    return html.replace("\r\n", "\n"), text.replace("\r\n", "\n")


def raw_headers(raw: bytes) -> dict[str, str]:
    """Header fields as they are on the wire (unfolded, not decoded), by lower-cased name."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]", " ", head)
    return {name.lower(): value for name, _, value in (line.partition(": ") for line in unfolded.split("\r\n"))}


def words(text: str | None) -> str:
    return " ".join((text or "").split())


def tree(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def columns(line: str) -> int:
    """Display width: wide (CJK) characters take two columns, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def shortened(authors: tuple[str, ...]) -> str:
    """The issue's rule, written out independently: up to six names, else five and "… +N"."""
    return ", ".join(authors) if len(authors) <= 6 else ", ".join(authors[:5]) + f" … +{len(authors) - 5}"


# --- the real run every section reads ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One real digest run: what was built, what happened, what landed in the Maildir."""

    config: Config
    digests: dict[str, Digest]  # built just before sending, for the fast-path comparison
    outcomes: dict[str, DigestOutcome]
    messages: dict[str, tuple[EmailMessage, bytes]]  # by subscriber id
    entries: dict[str, dict[str, Entry]]  # subscriber id -> sent entries by title

    def html(self, subscriber: str) -> str:
        return parts(self.messages[subscriber][0])[0]

    def text(self, subscriber: str) -> str:
        return parts(self.messages[subscriber][0])[1]


def demo_deployment(root: Path) -> Deployment:
    """The shipped example feeds, four readers, base_url set and the link secret read from SECRET_ENV."""
    deployment = Deployment(root)
    deployment.header += f'sender = "{SENDER}"\nbase_url = "{BASE_URL}"\n'
    deployment.extra = f'\n[web]\nsecret_env = "{SECRET_ENV}"\n'
    for name, file in [
        ("daily-papers", "daily-papers.xml"), ("cs-ai", "arxiv-cs.AI.atom.xml"),
        ("hf", "hf-daily-papers-2026-08-21.json"), ("jwst", "arxiv-jwst.rss.xml"),
    ]:
        deployment.add_feed(name, EXAMPLES / file)
    for subscriber_id, toml in [("kim", KIM), ("grace", SUBSCRIBER_GRACE), ("vera", VERA), ("quinn", QUINN)]:
        deployment.add_subscriber(subscriber_id, toml)
    return deployment


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The example feeds ingested and sent at NOON to kim (8 picks), grace (upvotes), vera (long author lists), quinn (a note)."""
    deployment = demo_deployment(tmp_path_factory.mktemp("email"))
    config = deployment.config()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        assert all(feed.error is None for feed in pipeline.ingest_feeds(config, clock=fixed_clock(NOON)).feeds)
        loaded = pipeline.subscribers_of(config).subscribers
        with pipeline.open_store(config, clock=fixed_clock(NOON)) as store:
            digests = {s.id: pipeline.build_digest(config, store, s, now=NOON) for s in loaded}
        report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    outcomes = {outcome.subscriber: outcome for outcome in report.digests}
    assert {sid: o.status for sid, o in outcomes.items()} == dict.fromkeys(["grace", "kim", "quinn", "vera"], "sent"), report
    by_address = maildir_messages(config.maildir)
    messages = {s.id: by_address[s.email] for s in loaded}
    entries = {}
    with Store(config.database, clock=fixed_clock(NOON)) as store:
        for subscriber_id, (message, _) in messages.items():
            ids = [row[0] for row in store.db.execute(
                "SELECT entry_id FROM sent_items s JOIN digests d ON d.id = s.digest_id WHERE d.message_id = ?", [message["Message-ID"]],
            )]
            entries[subscriber_id] = {entry.title: entry for entry in store.entries_by_id(ids)}
    assert len(entries["kim"]) == 8 and entries["grace"] and entries["vera"] and not entries["quinn"]
    yield Run(config, digests, outcomes, messages, entries)


# --- real papers from the shared data ---------------------------------------------------------------------------


@functools.cache
def real_entries() -> tuple[Entry, ...]:
    """Every paper of the arXiv RSS snapshots (through the project's parser) and the JSONL listings, one per id."""
    assert SNAPSHOTS and LISTINGS, f"the shared data is missing under {SHARED_DATA}"
    found: dict[str, Entry] = {}
    for snapshot in SNAPSHOTS:
        for entry in ingest.parse(snapshot.read_bytes(), feed_name="arxiv-to-rss").entries:
            found.setdefault(entry.id, entry)
    for listing in LISTINGS:
        for line in listing.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            entry = Entry(
                id=f"arxiv:{row['id']}", title=ingest.clean_text(row["title"], is_html=False), link=row["abs"],
                summary=ingest.clean_text(row.get("summary") or "", is_html=False), authors=tuple(row.get("authors") or ()),
                categories=tuple(row.get("categories") or ()), pdf_url=row.get("pdf"), source="daily-arxiv",
            )
            found.setdefault(entry.id, entry)
    return tuple(found.values())


READER = Subscriber(
    id="reader", email="reader@example.org", name="Reader", timezone="UTC", send_at=dt.time(7),
    topics=(Topic("Galaxy evolution", ("galaxies", "galaxy")), Topic("Language models", ("language model", "model"))),
)
TERMS = ("galaxies", "galaxy", "stars", "dust", "gas", "language model", "model", "models", "learning", "data")


def picked(entry: Entry, rank: int) -> ScoredEntry:
    """A pick the way rank() makes one: a topic reason with the matched terms, highlights, a followed author."""
    found = tuple(term for term in TERMS if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", f"{entry.title} {entry.summary}", re.I))
    topic = READER.topics[rank % 2].name
    reasons = (Reason("topic", topic, found or ("model",)),) + ((Reason("author", entry.authors[0]),) if entry.authors else ())
    return ScoredEntry(entry, 10.0 - rank, reasons, found)


def digest_of(entries: list[Entry] | tuple[Entry, ...], *, considered: int = 214, subscriber: Subscriber = READER) -> Digest:
    items = tuple(picked(entry, rank) for rank, entry in enumerate(entries))
    return Digest(subscriber=subscriber, items=items, considered=considered, period="2026-11-26", created_at=NOON)


def links_for(subscriber_id: str = "reader", *, https: bool = True) -> DigestLinks:
    signer = LinkSigner(SECRET) if https else None
    return digest_links(subscriber_id=subscriber_id, sender=SENDER, base_url=BASE_URL if https else None, signer=signer, issued=NOON.date())


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(REPO / "templates")


# === HTML: layout, header, papers, accessibility, footer ========================================================


def test_html_is_a_600px_table_layout_with_inlined_css(run: Run) -> None:
    """Tables with role=presentation, a 600px column, every class's rules inlined; only @media/dark rules stay in <style>."""
    for subscriber in run.messages:
        doc = tree(run.html(subscriber))
        tables = doc.findall(".//table")
        assert tables and all(table.get("role") == "presentation" for table in tables), subscriber
        (container,) = doc.find_class("container")
        assert container.get("width") == "600" and "max-width:600px" in container.get("style", "").replace(" ", "")
        unstyled = [f"<{el.tag} class={el.get('class')}>" for el in doc.iter() if el.get("class") and not el.get("style")]
        assert not unstyled, f"{subscriber}: classes whose CSS was not inlined: {unstyled[:5]}"
        blocks = [style.text or "" for style in doc.iter("style")]
        kept = " ".join(blocks)
        assert "@media only screen and (max-width: 620px)" in kept and "prefers-color-scheme: dark" in kept and "[data-ogsc]" in kept
        cssutils.log.setLevel(logging.CRITICAL)
        for block in blocks:
            for rule in cssutils.parseString(block):
                if rule.type == rule.STYLE_RULE:  # a plain rule left behind must be one premailer cannot inline
                    assert rule.selectorText.startswith((":root", "[data-og")), f"{subscriber}: rule left in <style>: {rule.selectorText}"
        metas = {meta.get("name"): meta.get("content") for meta in doc.iter("meta") if meta.get("name")}
        assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
        assert metas["viewport"].startswith("width=device-width")


def test_preheader_is_hidden_and_summarises(run: Run) -> None:
    """The first thing in <body> is the hidden preheader the inbox shows after the subject."""
    outcome = run.outcomes["kim"]
    body = tree(run.html("kim")).find("body")
    preheader = body[0]
    assert preheader.get("class") == "preheader"
    style = preheader.get("style", "").replace(" ", "")
    assert all(rule in style for rule in ("display:none", "max-height:0", "opacity:0", "overflow:hidden"))
    assert words(preheader.text_content()).startswith(f"{outcome.items} of {outcome.considered} new papers matched your topics:")


def test_header_shows_the_date_and_how_many_papers_matched(run: Run) -> None:
    """h1 is the newsletter's title; under it the reader's local date and "8 of 214 new papers matched your topics"."""
    doc = tree(run.html("kim"))
    (h1,) = doc.iter("h1")
    assert words(h1.text_content()) == "Daily Papers"
    (meta,) = doc.find_class("meta")
    outcome = run.outcomes["kim"]
    assert outcome.items == 8 and outcome.considered > 8
    assert words(meta.text_content()) == f"Thursday 26 November 2026 · Hello Kim: 8 of {outcome.considered} new papers matched your topics."
    vera = words(tree(run.html("vera")).find_class("meta")[0].text_content())
    assert vera.startswith("Thursday 26 November 2026 · ")  # 21:00 in Tokyo, still the 26th


def test_papers_are_grouped_by_topic_with_title_link_authors_abstract_links_upvotes_and_reasons(run: Run) -> None:
    """Every paper, checked against its stored entry: group, linked title, authors, trimmed abstract, links, upvotes, why."""
    seen_upvotes = seen_long_author_list = seen_daily_papers = 0
    for subscriber in ("kim", "grace", "vera"):
        doc = tree(run.html(subscriber))
        group = None
        for cell in doc.iter("td"):
            if cell.get("class") == "topic-cell":
                group = words(cell.text_content())
                continue
            if cell.get("class") != "paper":
                continue
            h3 = cell.find(".//h3")
            number, _, title = words(h3.text_content()).partition(". ")
            entry = run.entries[subscriber][title]
            where = f"{subscriber} #{number} {entry.id}"
            arxiv = entry.id.removeprefix("arxiv:") if entry.id.startswith("arxiv:") else None
            assert h3.find("a").get("href") == (entry.link if entry.link.startswith("http") else f"https://arxiv.org/abs/{arxiv}"), where
            why = words(cell.find_class("why")[0].text_content())
            assert why.startswith(f"Why: {group}: ") or (group == "Authors you follow" and "whom you follow" in why), where
            assert cell.find_class("why")[0].findall(".//mark"), f"{where}: no matched term marked in the reasons"

            authors = cell.find_class("authors")
            assert (words(authors[0].text_content()) if authors else "") == shortened(entry.authors), where
            seen_long_author_list += len(entry.authors) > 6

            abstract = words(cell.find_class("abstract")[0].text_content())
            assert entry.summary.startswith(abstract.removesuffix(" …")) and len(abstract) <= ABSTRACT_CHARS + 2, where

            links = cell.find_class("links")[0]
            labels = {words(a.text_content()): a.get("href") for a in links.iter("a")}
            if arxiv:
                expected = {"Abstract": f"https://arxiv.org/abs/{arxiv}", "PDF": entry.pdf_url or f"https://arxiv.org/pdf/{arxiv}"}
                if entry.upvotes is not None or entry.link.startswith("https://huggingface.co/papers/"):
                    expected["Daily Papers"] = f"https://huggingface.co/papers/{arxiv}"
                    seen_daily_papers += 1
                assert labels == expected, where
            else:
                assert labels == {"Read": entry.link, **({"PDF": entry.pdf_url} if entry.pdf_url else {})}, where
            upvotes = links.find_class("upvotes")
            if entry.upvotes:
                seen_upvotes += 1
                assert words(upvotes[0].text_content()) == f"▲ {entry.upvotes} upvote" + ("" if entry.upvotes == 1 else "s"), where
            else:
                assert not upvotes, where
    assert seen_upvotes and seen_long_author_list and seen_daily_papers  # the run exercised every part


def test_matched_terms_are_marked_as_whole_words(run: Run) -> None:
    """<mark> sits on whole words in abstracts, and on each matched term of the reasons (the same terms the text lists)."""
    for subscriber in ("kim", "grace", "vera"):
        doc = tree(run.html(subscriber))
        hits = [mark for mark in doc.iter("mark") if mark.get("class") == "hit"]
        assert hits, subscriber
        for mark in hits:
            before = (mark.getprevious().tail if mark.getprevious() is not None else mark.getparent().text) or " "
            after = mark.tail or " "
            assert not before[-1].isalnum() and not after[0].isalnum(), f"{subscriber}: <mark> inside a word: {before[-10:]}[{mark.text}]{after[:10]}"
        html_terms = [mark.text for mark in doc.iter("mark") if mark.get("class") == "term"]
        text_terms = re.findall(r"“([^”]+)”", run.text(subscriber))
        assert html_terms == text_terms, subscriber


def test_accessibility_lang_headings_and_alt_text(run: Run) -> None:
    """lang on <html>; one h1, an h2 per topic group, an h3 per paper; any <img> has alt text; no scripts."""
    for subscriber in run.messages:
        doc = tree(run.html(subscriber))
        assert doc.get("lang") == "en"
        assert len(list(doc.iter("h1"))) == 1
        papers = len(run.entries[subscriber])
        assert len(list(doc.iter("h3"))) == papers == len(doc.find_class("paper")), subscriber
        groups = len(doc.find_class("topic-cell"))
        assert len(list(doc.iter("h2"))) == groups and (groups >= 1) == (papers >= 1), subscriber
        assert all((img.get("alt") or "").strip() for img in doc.iter("img")), subscriber
        assert not list(doc.iter("script")), subscriber


def test_footer_says_why_where_the_preferences_live_and_how_to_leave(run: Run) -> None:
    """Footer: the reader's address and topics, their preferences file, and an unsubscribe link."""
    doc = tree(run.html("kim"))
    (footer,) = doc.find_class("footer")
    text = words(footer.text_content())
    assert "You get this email because kim@example.org is subscribed to Daily Papers for Knowledge distillation, Federated learning." in text
    assert "live in subscribers/kim.toml; edit that file" in text
    (link,) = [a for a in footer.iter("a") if words(a.text_content()) == "Unsubscribe"]
    assert link.get("href").startswith(f"{BASE_URL}/unsubscribe/")


def test_footer_names_the_preferences_file_in_its_own_folder(renderer: Renderer) -> None:
    """newsletter.subscribers may point elsewhere: the footer names the reader's real file, not a guess."""
    reader = dataclasses.replace(READER, path=Path("/srv/papers/people/reader.toml"))
    email_ = renderer.render(digest_of(real_entries()[:2], subscriber=reader), branding=BRANDING, links=links_for())
    assert [code.text for code in tree(email_.html).iter("code")] == ["people/reader.toml"]
    assert "people/reader.toml" in email_.text and "subscribers/reader.toml" not in email_.text


def test_list_headers_one_click_unsubscribe_and_list_id(run: Run) -> None:
    """On the wire: List-Unsubscribe <https>, <mailto> (never RFC 2047-encoded), RFC 8058 one-click, List-Id."""
    for subscriber, (message, raw) in run.messages.items():
        headers = raw_headers(raw)
        assert "=?" not in headers["list-unsubscribe"], f"{subscriber}: List-Unsubscribe was encoded: {headers['list-unsubscribe']}"
        https, mailto = re.fullmatch(r"<([^<>]+)>, <([^<>]+)>", headers["list-unsubscribe"]).groups()  # type: ignore[union-attr]
        assert https.startswith(f"{BASE_URL}/unsubscribe/")
        assert mailto == f"mailto:papers@example.org?subject=unsubscribe%20{subscriber}"
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert headers["list-id"] == "Daily Papers <daily-papers.example.org>"
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_without_base_url_only_a_mailto_unsubscribe_and_no_one_click(renderer: Renderer) -> None:
    """No base_url: the footer and List-Unsubscribe carry the mailto; List-Unsubscribe-Post would be a lie, so none."""
    links = links_for(https=False)
    rendered = renderer.render(digest_of(real_entries()[:3]), branding=BRANDING, links=links)
    envelope = Envelope(SENDER, "reader@example.org", "Reader", "Daily Papers <daily-papers.example.org>", links.unsubscribe_mailto)
    _, raw = build_message(rendered, envelope=envelope, now=NOON)
    headers = raw_headers(raw)
    assert headers["list-unsubscribe"] == "<mailto:papers@example.org?subject=unsubscribe%20reader>"
    assert "list-unsubscribe-post" not in headers
    (footer,) = tree(rendered.html).find_class("footer")
    assert [a.get("href") for a in footer.iter("a")] == ["mailto:papers@example.org?subject=unsubscribe%20reader"]


# === Size ========================================================================================================


def _longest(key: str) -> list[Entry]:
    size = {"abstracts": lambda e: len(e.summary), "authors": lambda e: len(e.authors), "titles": lambda e: len(e.title)}[key]
    return sorted(real_entries(), key=lambda e: (-size(e), e.id))[:10]


@pytest.mark.parametrize("longest", ["abstracts", "authors", "titles"])
def test_ten_paper_digest_of_the_longest_real_papers_stays_under_100kb(renderer: Renderer, longest: str) -> None:
    """The 10 longest abstracts / author lists / titles in the shared data, every matching word marked: HTML < 100 KB."""
    entries = _longest(longest)
    rendered = renderer.render(digest_of(entries, considered=6933), branding=BRANDING, links=links_for())
    size = len(rendered.html.encode("utf-8"))
    links = links_for()
    envelope = Envelope(SENDER, "reader@example.org", "Reader", "Daily Papers <daily-papers.example.org>", links.unsubscribe_mailto, links.unsubscribe_https)
    _, raw = build_message(rendered, envelope=envelope, now=NOON)
    print(f"10 longest {longest}: HTML {size:,} bytes, whole message {len(raw):,} bytes")
    assert len(list(tree(rendered.html).iter("h3"))) == 10
    assert size < HTML_BUDGET, f"10 longest {longest}: {size:,} bytes of HTML"
    if longest == "authors":
        assert len(entries[0].authors) > 500 and f" … +{len(entries[0].authors) - 5}" in rendered.html


# === Abstracts: trimmed at a sentence or a word, never mid-word or mid-entity ===================================

ABBREVIATION = re.compile(r"(?:^|[\s(])(?:et al|e\.g|i\.e|vs|cf|etc|w\.r\.t|i\.i\.d|a\.k\.a|Fig|Eq|Sec|Ref)\.$", re.I)


def test_abstracts_are_cut_at_a_sentence_end_or_a_word_boundary() -> None:
    """For every long real abstract: a prefix of the original, ended by a true sentence end or by a word and " …"."""
    long = [entry.summary for entry in real_entries() if len(entry.summary) > ABSTRACT_CHARS]
    assert len(long) > 5000
    problems = []
    for summary in long:
        cut = trim_text(summary, ABSTRACT_CHARS)
        kept = cut.removesuffix(" …")
        if not summary.startswith(kept) or len(kept) > ABSTRACT_CHARS:
            problems.append(f"not a prefix within {ABSTRACT_CHARS} characters: …{cut[-40:]!r}")
        elif summary[len(kept)].isalnum() and kept[-1:].isalnum():
            problems.append(f"cut mid-word: …{kept[-30:]!r} | {summary[len(kept):len(kept) + 10]!r}")
        elif cut == kept and (not re.search(r"[.?!]$", kept) or ABBREVIATION.search(kept)):
            problems.append(f"ends without an ellipsis but not at a sentence end: …{kept[-40:]!r}")
    assert not problems, f"{len(problems)} of {len(long)} abstracts badly cut, e.g.:\n" + "\n".join(problems[:8])


def test_trimming_never_splits_an_html_entity(renderer: Renderer) -> None:
    """A real abstract full of & and < around the cut: every & in the HTML starts a whole entity."""
    base = next(entry for entry in _longest("abstracts") if entry.id.startswith("arxiv:"))
    dense = dataclasses.replace(base, summary=base.summary.replace(" ", " & ").replace("e", "<"))
    rendered = renderer.render(digest_of([dense]), branding=BRANDING, links=links_for())
    (abstract,) = tree(rendered.html).find_class("abstract")
    raw = re.search(r'<p class="abstract"[^>]*>(.*?)</p>', rendered.html, re.S).group(1)  # type: ignore[union-attr]
    assert raw.count("&") == len(re.findall(r"&(?:amp|lt|gt|quot|#\d+);", raw))
    assert dense.summary.startswith(words(abstract.text_content()).removesuffix(" …"))


# === Untrusted feed text =========================================================================================

EVIL = '<img src=x onerror=alert(1)> <script>alert("x")</script> <a href="javascript:alert(2)">click</a>'


def _write_json_feed(path: Path) -> None:
    """A daily-papers JSON feed (the format is plain text, so markup reaches the renderer as text)."""
    path.write_text(json.dumps([{
        "title": f"Knowledge distillation {EVIL}",
        "paper": {
            "id": "2601.00042", "title": f"Knowledge distillation {EVIL}", "upvotes": 1,
            "summary": f"We study knowledge distillation. {EVIL} Teachers & students <b>bold</b>.",
            "authors": [{"name": f"Mallory {EVIL}"}, {"name": "Alice"}],
        },
    }]), encoding="utf-8")


def _write_atom_feed(path: Path) -> None:
    """An Atom feed whose links are javascript: and data: URLs, one arXiv paper and one plain post."""
    path.write_text("""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id><updated>2026-11-26T00:00:00Z</updated>
<entry><id>http://arxiv.org/abs/2601.00043v1</id><title>Distillation with unsafe links</title>
<updated>2026-11-26T00:00:00Z</updated><summary>Knowledge distillation again.</summary>
<link rel="alternate" href="javascript:alert(3)"/><link type="application/pdf" href="javascript:alert(4)"/>
<author><name>A. Author</name></author></entry>
<entry><id>tag:blog.example.org,2026:post-7</id><title>A distillation blog post</title>
<updated>2026-11-26T00:00:00Z</updated><summary>Knowledge distillation on a blog.</summary>
<link rel="alternate" href="data:text/html,&lt;script&gt;alert(5)&lt;/script&gt;"/>
<link type="application/pdf" href="vbscript:msgbox(6)"/></entry>
</feed>""", encoding="utf-8")


def _assert_inert(html: str, where: str) -> None:
    doc = tree(html)
    assert not list(doc.iter("script", "img", "iframe", "object", "embed", "form")), where
    handlers = [f"{el.tag}[{name}]" for el in doc.iter() if isinstance(el.tag, str) for name in el.attrib if name.lower().startswith("on")]
    assert not handlers, f"{where}: event handlers {handlers}"
    hrefs = [el.get(name) for el in doc.iter() if isinstance(el.tag, str) for name in ("href", "src", "action") if el.get(name)]
    bad = [href for href in hrefs if not re.match(r"(?:https?:|mailto:)", href, re.I)]
    assert not bad, f"{where}: links that are not http(s)/mailto: {bad}"


def test_markup_in_feed_text_is_escaped_end_to_end(deployment: Deployment) -> None:
    """Tags and handlers in a feed's title, abstract and author names arrive as visible text, never as markup."""
    feed = deployment.root / "evil.json"
    _write_json_feed(feed)
    deployment.add_feed("evil", feed)
    deployment.add_subscriber("kim", KIM)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    assert [o.status for o in pipeline.run_digests(config, clock=fixed_clock(NOON)).digests] == ["sent"]
    html, text = parts(maildir_messages(config.maildir)["kim@example.org"][0])
    _assert_inert(html, "evil.json")
    doc = tree(html)
    assert words(doc.find(".//h3").text_content()) == f"1. Knowledge distillation {EVIL}"
    assert EVIL in words(doc.find_class("abstract")[0].text_content())
    assert words(doc.find_class("authors")[0].text_content()) == f"Mallory {EVIL}, Alice"
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(\"x\")</script>" in text.replace("\n   ", " ")  # the text part shows it as written


def test_only_http_https_and_mailto_links_become_hrefs(deployment: Deployment, run: Run) -> None:
    """javascript:/data:/vbscript: links from a feed never become an href: arXiv papers fall back to arxiv.org."""
    feed = deployment.root / "links.atom"
    _write_atom_feed(feed)
    deployment.add_feed("links", feed)
    deployment.add_subscriber("kim", KIM)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    assert [o.status for o in pipeline.run_digests(config, clock=fixed_clock(NOON)).digests] == ["sent"]
    html, text = parts(maildir_messages(config.maildir)["kim@example.org"][0])
    _assert_inert(html, "links.atom")
    assert not re.search(r"javascript|vbscript|data:", html + text, re.I)
    doc = tree(html)
    titles = {words(h3.text_content()).partition(". ")[2]: h3 for h3 in doc.iter("h3")}
    arxiv_title = titles["Distillation with unsafe links"]
    assert arxiv_title.find("a").get("href") == "https://arxiv.org/abs/2601.00043"
    assert titles["A distillation blog post"].find("a") is None  # nothing safe to link to
    for subscriber in run.messages:  # and every link in the real run
        _assert_inert(run.html(subscriber), subscriber)


def test_unsafe_entry_fields_render_inert(renderer: Renderer) -> None:
    """Straight into the renderer: unsafe schemes in any case or with spaces, markup in every field."""
    base = real_entries()[0]
    schemes = ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "vbscript:x", "//evil.example/x"]
    entries = [
        dataclasses.replace(base, id=f"doi:10.1/{n}", title=f"{EVIL} {n}", summary=EVIL, authors=(EVIL,), link=url, pdf_url=url)
        for n, url in enumerate(schemes)
    ] + [dataclasses.replace(base, link="javascript:alert(1)", pdf_url="javascript:alert(2)", title=EVIL)]
    rendered = renderer.render(digest_of(entries), branding=BRANDING, links=links_for())
    _assert_inert(rendered.html, "renderer")
    arxiv = base.id.removeprefix("arxiv:")
    assert f'href="https://arxiv.org/abs/{arxiv}"' in rendered.html and f'href="https://arxiv.org/pdf/{arxiv}"' in rendered.html


# === Subject =====================================================================================================


def test_subject_counts_the_picks_and_names_their_topics(run: Run) -> None:
    """The sent subject is exactly the issue's: count, then the topics (lower-cased as in a sentence), best first."""
    assert run.messages["kim"][0]["Subject"] == "Daily Papers — 8 picks: knowledge distillation, federated learning"
    assert run.messages["quinn"][0]["Subject"] == "Daily Papers — nothing new matched today"


def test_subject_keeps_acronyms_and_shortens_many_topics(renderer: Renderer) -> None:
    """One pick is "1 pick"; acronyms and mixed case stay ("LLM agents"); more than three topics end in "…"."""
    entries = list(real_entries()[:5])
    names = ["LLM agents", "Efficient LLMs", "High-Redshift Galaxies", "X-ray binaries", "Knowledge Distillation"]
    items = tuple(ScoredEntry(entry, 5.0 - n, (Reason("topic", name, ("x",)),)) for n, (entry, name) in enumerate(zip(entries, names)))
    digest = dataclasses.replace(digest_of(entries[:1]), items=items)
    assert renderer.render(digest, branding=BRANDING, links=links_for()).subject == (
        "Daily Papers — 5 picks: LLM agents, efficient LLMs, high-redshift galaxies …"
    )
    one = dataclasses.replace(digest, items=items[4:])
    assert renderer.render(one, branding=BRANDING, links=links_for()).subject == "Daily Papers — 1 pick: knowledge distillation"


# === Plain-text part =============================================================================================


def _paper_blocks(text: str) -> list[str]:
    """The text part's numbered papers, each as one whitespace-normalised string."""
    body = text.split("\n--\n")[0]
    return [words(block) for block in re.split(r"\n(?=\d+\. )", body)[1:]]


def _check_text_part(text: str, html: str, where: str) -> None:
    lines = text.splitlines()
    too_wide = [line for line in lines if columns(line) > WIDTH and not URL_LINE.fullmatch(line)]
    assert not too_wide, f"{where}: lines over {WIDTH} columns that are not an indented URL: {too_wide[:3]}"
    assert not ENTITY_OR_TAG.search(text), f"{where}: HTML in the text part: {ENTITY_OR_TAG.search(text).group()!r}"  # type: ignore[union-attr]
    doc = tree(html)
    hrefs = {a.get("href") for cell in doc.find_class("links") + doc.find_class("footer") for a in cell.iter("a")}
    for line in lines:  # the email's own links (not URLs an abstract quotes) stand alone on their lines
        if hrefs & set(line.split()):
            assert URL_LINE.fullmatch(line), f"{where}: a link shares its line: {line!r}"
    url_lines = {line.strip() for line in lines if URL_LINE.fullmatch(line)}
    assert hrefs <= url_lines, f"{where}: links missing from the text part: {sorted(hrefs - url_lines)[:3]}"
    titles = [words(h3.text_content()) for h3 in doc.iter("h3")]
    blocks = _paper_blocks(text)
    assert [block.partition(". ")[0] for block in blocks] == [str(n) for n in range(1, len(titles) + 1)], where
    for block, title, why in zip(blocks, titles, doc.find_class("why")):
        assert block.startswith(title), f"{where}: text has {block[:60]!r}, HTML {title!r}"
        assert words(why.text_content()) in block.replace("“", "").replace("”", ""), f"{where}: reasons differ for {title!r}"
    footer = text.split("\n--\n")[1]
    assert "You get this email because" in footer and "Unsubscribe:" in footer
    (unsubscribe,) = [a.get("href") for a in doc.find_class("footer")[0].iter("a")]
    assert f"   {unsubscribe}" in footer.splitlines()


def test_text_part_reads_alone(run: Run) -> None:
    """Each sent text part: ≤76 columns but indented URL lines, numbered like the HTML, same reasons, URLs alone, footer."""
    for subscriber in run.messages:
        _check_text_part(run.text(subscriber), run.html(subscriber), subscriber)
    assert "Nothing new matched your topics today" in run.text("quinn")


@pytest.mark.parametrize("longest", ["abstracts", "authors", "titles"])
def test_text_part_of_the_longest_real_papers(renderer: Renderer, longest: str) -> None:
    """The same rules hold for the longest abstracts, author lists and titles in the shared data."""
    rendered = renderer.render(digest_of(_longest(longest), considered=6933), branding=BRANDING, links=links_for())
    _check_text_part(rendered.text, rendered.html, f"10 longest {longest}")
    widths = [columns(line) for line in rendered.text.splitlines() if not URL_LINE.fullmatch(line)]
    print(f"10 longest {longest}: widest text line {max(widths)} columns (URL lines excepted)")


def test_text_part_keeps_ampersands_angle_brackets_and_quotes_verbatim(renderer: Renderer) -> None:
    """An abstract and title with &, < and ": shown as written in the text part, escaped in the HTML."""
    base = real_entries()[0]
    entry = dataclasses.replace(
        base, title='Galaxies at 1.2 < z < 6.6 & the "Capotauro" candidate',
        summary='We compare "teacher" & "student" galaxies at 0<z<7 and z > 10; R&D <b>matters</b> & so does S/N>5.',
    )
    rendered = renderer.render(digest_of([entry]), branding=BRANDING, links=links_for())
    flat = words(rendered.text)
    assert entry.title in flat and entry.summary in flat
    assert not re.search(r"&(?:amp|lt|gt|quot|#34|#39);", rendered.text)
    assert "1.2 &lt; z &lt; 6.6 &amp; the" in rendered.html and "&lt;b&gt;matters&lt;/b&gt;" in rendered.html


# === Quiet days ==================================================================================================


def _quiet_deployment(deployment: Deployment, *, default: str | None, override: str | None) -> Config:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    if default:
        deployment.extra += f'\n[delivery]\nquiet_days = "{default}"\n'
    extra = f'quiet_days = "{override}"\n' if override else ""
    deployment.add_subscriber("quinn", QUINN.replace('quiet_days = "note"\n', extra))
    deployment.add_subscriber("otto", QUINN.replace("quinn", "otto").replace("Quinn", "Otto").replace('quiet_days = "note"\n', ""))
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    return config


def test_quiet_day_by_default_sends_nothing_and_status_shows_it(deployment: Deployment) -> None:
    """Nothing matched and quiet_days is "skip" (the default): no email, an 'empty' digest in status."""
    config = _quiet_deployment(deployment, default=None, override=None)
    report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    assert {(o.subscriber, o.status) for o in report.digests} == {("quinn", "empty"), ("otto", "empty")}
    status = pipeline.status(config, clock=fixed_clock(NOON))
    assert all(o.considered == status["entries"] > 0 for o in report.digests)  # the whole feed was considered
    assert maildir_messages(config.maildir) == {}
    digests = status["digests"]
    assert digests == [{"period": "2026-11-26", "sent": 0, "queued": 0, "retrying": 0, "sending": 0, "bounced": 0, "failed": 0, "empty": 2, "cancelled": 0, "last_error": None}]


def test_quiet_day_note_sends_a_short_note(deployment: Deployment) -> None:
    """[delivery] quiet_days = "note" sends a short note; a reader's own quiet_days = "skip" overrides it."""
    config = _quiet_deployment(deployment, default="note", override="skip")
    report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    statuses = {o.subscriber: o for o in report.digests}
    assert (statuses["otto"].status, statuses["quinn"].status) == ("sent", "empty")
    messages = maildir_messages(config.maildir)
    assert list(messages) == ["otto@example.org"]
    message, _ = messages["otto@example.org"]
    html, text = parts(message)
    assert message["Subject"] == "Daily Papers — nothing new matched today"
    considered = statuses["otto"].considered
    assert f"Nothing new matched your topics today ({considered} new papers considered)." in words(text)
    doc = tree(html)
    assert not list(doc.iter("h3")) and f"({considered} new papers considered)" in words(doc.find_class("quiet")[0].text_content())
    assert len(text.splitlines()) < 20 and "Unsubscribe:" in text
    (row,) = pipeline.status(config, clock=fixed_clock(NOON))["digests"]
    assert {key: n for key, n in row.items() if key not in ("period", "last_error") and n} == {"sent": 1, "empty": 1}


def test_reader_override_note_beats_default_skip(deployment: Deployment) -> None:
    """The default stays "skip" for everyone else; the reader who asked for notes gets one."""
    config = _quiet_deployment(deployment, default=None, override="note")
    report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    assert {o.subscriber: o.status for o in report.digests} == {"quinn": "sent", "otto": "empty"}
    assert list(maildir_messages(config.maildir)) == ["quinn@example.org"]


# === The fast path: HTML inlined once per template == premailer on every email ==================================


def _style(value: str) -> list[tuple[str, str]]:
    declarations = (declaration.partition(":") for declaration in value.split(";") if declaration.strip())
    return [(name.strip().lower(), words(rest)) for name, _, rest in declarations]


def _path(element: lxml.html.HtmlElement) -> str:
    steps = []
    while element is not None:
        parent = element.getparent()
        name = element.tag if isinstance(element.tag, str) else "comment()"
        if isinstance(element.tag, str) and element.get("class"):
            name += "." + ".".join(element.get("class").split())
        if parent is not None:
            name += f"[{[sibling for sibling in parent if sibling.tag == element.tag].index(element) + 1}]"
        steps.append(name)
        element = parent
    return "/".join(reversed(steps))


def _attributes(element: lxml.html.HtmlElement) -> dict[str, object]:
    return {name: _style(value) if name == "style" else value for name, value in element.attrib.items()}


def tree_differences(expected: str, actual: str) -> list[str]:
    """Elements that differ in tag, attributes (style declarations normalised) or text, each named by its path.

    Text is compared with whitespace runs collapsed: premailer's serialiser adds newlines where HTML ignores
    them. Each element's whole text is compared too (deepest first), so a lost space between two inline
    elements is still found.
    """
    left, right = list(tree(expected).iter()), list(tree(actual).iter())
    found = []
    for a, b in zip(left, right):
        where = _path(a)
        if a.tag != b.tag:
            return found + [f"{where}: <{a.tag}> became <{b.tag}> at {_path(b)}"]
        if isinstance(a.tag, str) and _attributes(a) != _attributes(b):
            found.append(f"{where}: attributes {_attributes(a)} != {_attributes(b)}")
        for part in ("text", "tail"):
            if words(getattr(a, part)) != words(getattr(b, part)):
                found.append(f"{where}: {part} {getattr(a, part)!r} != {getattr(b, part)!r}")
    if len(left) != len(right):
        found.append(f"{len(left)} elements != {len(right)} elements")
    for a, b in reversed(list(zip(left, right))):
        if isinstance(a.tag, str) and words(a.text_content()) != words(b.text_content()):
            found.append(f"{_path(a)}: text {words(a.text_content())[:80]!r} != {words(b.text_content())[:80]!r}")
            break
    return found


def test_pre_inlined_html_equals_premailer_on_each_email(run: Run, renderer: Renderer) -> None:
    """Real digests (four readers incl. a quiet note, highlights, long author lists, upvotes, an unlinked title):
    the once-per-template inlining gives the same parsed HTML as premailer run on every rendered email."""
    slow = Renderer(REPO / "templates", inline=False)
    unlinked = dataclasses.replace(real_entries()[1], id="doi:10.1/unlinked", link="", pdf_url=None)
    voted = dataclasses.replace(_longest("authors")[0], upvotes=1)
    digests = dict(run.digests, extra=digest_of([unlinked, voted, *_longest("titles")[:3]]))
    assert any(not d.items for d in digests.values()) and any(item.entry.upvotes for d in digests.values() for item in d.items)
    for name, digest in digests.items():
        links = links_for(digest.subscriber.id)
        fast = renderer.render(digest, branding=BRANDING, links=links)
        reference = slow.render(digest, branding=BRANDING, links=links)
        differences = tree_differences(reference.html, fast.html)
        assert not differences, f"{name}: the pre-inlined HTML differs from premailer per email:\n" + "\n".join(differences[:10])
        assert fast.text == reference.text and fast.subject == reference.subject


def test_tree_comparison_names_the_differing_element(run: Run) -> None:
    """The comparison itself: a changed colour on one <mark>, a dropped space, a lost attribute are each named."""
    html = run.html("kim")
    changed = html.replace("background-color:#fff1a8", "background-color:#ffffff", 1)
    (difference,) = tree_differences(html, changed)
    assert "mark.hit[1]" in difference and "td.paper[1]" in difference and "#ffffff" in difference
    spaceless = re.sub(r"(</span>) (<a )", r"\1\2", html, count=1)
    assert any("h3.paper-title" in d for d in tree_differences(html, spaceless))
    no_role = html.replace(' role="presentation"', "", 1)
    assert any(d.startswith("html/body[1]/table.wrapper[1]: attributes") for d in tree_differences(html, no_role))


# === Signed unsubscribe links ====================================================================================


def _newsletter(config_path: Path, *args: str, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != SECRET_ENV}
    if secret is not None:
        env[SECRET_ENV] = secret
    return subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config_path), *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize("secret, state", [(None, "is not set"), ("short", "is shorter than 16 characters")])
def test_base_url_without_its_secret_is_one_clear_line_and_queues_nothing(tmp_path: Path, secret: str | None, state: str) -> None:
    """`check` and `digest` say in one line which variable is missing; no digest is queued or delivered."""
    deployment = demo_deployment(tmp_path)
    config_path = deployment.config_path
    assert _newsletter(config_path, "ingest", secret=secret).returncode == 0
    for command in (["check"], ["digest", "--all"]):
        result = _newsletter(config_path, *command, secret=secret)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert SECRET_ENV in line and "[web] secret_env" in line and state in line and "base_url" in line, line
        assert "Traceback" not in result.stderr
    config = deployment.config()
    with Store(config.database, clock=fixed_clock(NOON)) as store:
        assert store.db["digests"].count == 0
    assert maildir_messages(config.maildir) == {}


def test_signed_link_is_the_same_in_footer_header_text_and_preview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the secret set: footer href == List-Unsubscribe https URL == the text's URL == what preview showed earlier."""
    deployment = demo_deployment(tmp_path)
    config = deployment.config()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    preview = pipeline.preview(config, "kim", clock=fixed_clock(NOON))
    time.sleep(1.1)  # a link that depended on the wall clock would change here
    pipeline.run_digests(config, pipeline.DigestRequest(subscriber_ids=("kim", "grace")), clock=fixed_clock(NOON))
    sent = maildir_messages(config.maildir)
    message, raw = sent["kim@example.org"]
    html, text = parts(message)
    footer_href = [a.get("href") for a in tree(html).find_class("footer")[0].iter("a")]
    header_https = re.match(r"<([^<>]+)>", raw_headers(raw)["list-unsubscribe"]).group(1)  # type: ignore[union-attr]
    preview_href = [a.get("href") for a in tree(preview.html).find_class("footer")[0].iter("a")]
    assert footer_href == [header_https] == preview_href
    assert f"   {header_https}" in text.splitlines() and f"   {header_https}" in preview.text.splitlines()
    assert re.fullmatch(rf"{re.escape(BASE_URL)}/unsubscribe/[A-Za-z0-9_.\-]{{16,}}", header_https)
    grace_https = re.match(r"<([^<>]+)>", raw_headers(sent["grace@example.org"][1])["list-unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert grace_https != header_https  # one reader's link cannot unsubscribe another
    other_secret = digest_links(subscriber_id="kim", sender=SENDER, base_url=BASE_URL, signer=LinkSigner(SECRET + "x"), issued=NOON.date()).unsubscribe
    assert other_secret != header_https  # the secret signs it
