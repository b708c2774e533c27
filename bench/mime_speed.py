"""MIME building and the Maildir write, per message, on real rendered digests.

Workload: --digests (default 200) digests of 4-10 real papers each (the arXiv RSS
snapshots and JSONL listings of ../shared/data, parsed by the project's own ingest),
picked at random (seeded) with the matching terms marked, for readers with ASCII and
non-ASCII names, rendered by Renderer (inlined CSS) with signed https unsubscribe links.

Printed (medians of --repeats runs over the whole set, per message):
  - build_message (the fast bytes writer) vs build_email_message(...).as_bytes()
    (the EmailMessage reference), and the ratio reference/fast;
  - MaildirTransport.send into a fresh Maildir, next to mailbox.Maildir.add (the old send).

Run: python bench/mime_speed.py [--digests 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mailbox
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import ingest
from newsletter.deliver import (
    Envelope,
    MaildirTransport,
    build_email_message,
    build_message,
)
from newsletter.links import LinkSigner, digest_links
from newsletter.models import (
    Digest,
    Entry,
    Reason,
    RenderedEmail,
    ScoredEntry,
    Subscriber,
    Topic,
)
from newsletter.render import Branding, Renderer

DATA = ROOT.parent / "shared" / "data"
NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
SENDER = "Daily Papers <papers@example.org>"
NAMES = ["Ada", "Grace Hopper", "Zoë Müller", "李雷", "O'Brien, Pat", "Jean-Luc Picard"]
TOPICS = [
    Topic("Galaxy evolution", ("galaxies", "galaxy")), Topic("Language models", ("language model", "model")),
    Topic("Knowledge distillation", ("distillation",)), Topic("Reinforcement learning", ("reinforcement", "policy")),
]


def real_entries() -> list[Entry]:
    found: dict[str, Entry] = {}
    for snapshot in sorted((DATA / "feeds" / "arxiv-to-rss").glob("*/feeds/feed.xml")):
        for entry in ingest.parse(snapshot.read_bytes(), feed_name="arxiv-to-rss").entries:
            found.setdefault(entry.id, entry)
    for listing in sorted((DATA / "papers" / "daily-arXiv-ai-enhanced" / "data").glob("*.jsonl"))[:20]:
        for line in listing.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            found.setdefault(f"arxiv:{row['id']}", Entry(
                id=f"arxiv:{row['id']}", title=ingest.clean_text(row["title"], is_html=False), link=row["abs"],
                summary=ingest.clean_text(row.get("summary") or "", is_html=False), authors=tuple(row.get("authors") or ()),
                categories=tuple(row.get("categories") or ()), pdf_url=row.get("pdf"), source="daily-arxiv",
            ))
    return list(found.values())


def rendered_digests(count: int) -> list[tuple[RenderedEmail, Envelope]]:
    rng = random.Random(20261126)
    entries = real_entries()
    renderer = Renderer(ROOT / "templates")
    signer = LinkSigner("correct-horse-battery-staple-0123456789")
    out = []
    for number in range(count):
        topics = tuple(rng.sample(TOPICS, 2))
        reader = Subscriber(
            id=f"r{number}", email=f"r{number}@example.org", name=rng.choice(NAMES), timezone="UTC", send_at=dt.time(7), topics=topics,
        )
        items = []
        for rank, entry in enumerate(rng.sample(entries, rng.randint(4, 10))):
            terms = tuple(t for topic in topics for t in topic.keywords if re.search(rf"\b{re.escape(t)}\b", entry.summary, re.IGNORECASE))
            reasons = (Reason("topic", topics[rank % 2].name, terms or topics[rank % 2].keywords[:1]),)
            items.append(ScoredEntry(entry, 10.0 - rank, reasons, terms))
        digest = Digest(subscriber=reader, items=tuple(items), considered=214, period="2026-11-26", created_at=NOW)
        links = digest_links(subscriber_id=reader.id, sender=SENDER, base_url="https://papers.example.org", signer=signer, issued=NOW.date())
        email = renderer.render(digest, branding=Branding(title="Daily Papers", sender=SENDER), links=links)
        envelope = Envelope(SENDER, reader.email, reader.name, "Daily Papers <daily-papers.example.org>", links.unsubscribe_mailto, links.unsubscribe_https)
        out.append((email, envelope))
    return out


def per_message(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Medians over repeats of (wall seconds, CPU seconds of this thread) for one pass / messages in the pass.

    Both are printed: on a shared, loaded machine the wall time also counts the time the
    process waited for a core; the CPU time does not (but a Maildir's fsync wait is wall only).
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        count = run()
        cpus.append((time.thread_time() - cpu) / count)
        walls.append((time.perf_counter() - wall) / count)
    return statistics.median(walls), statistics.median(cpus)


def shown(name: str, new: tuple[float, float], old: tuple[float, float], old_name: str) -> str:
    return (f"{name}: wall {new[0] * 1e3:.3f} ms/message vs {old[0] * 1e3:.3f} ms ({old_name}), ratio old/new {old[0] / new[0]:.1f}x; "
            f"CPU {new[1] * 1e3:.3f} ms vs {old[1] * 1e3:.3f} ms, ratio {old[1] / new[1]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--digests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    digests = rendered_digests(args.digests)
    text_kb = statistics.mean(len(e.text.encode()) for e, _ in digests) / 1000
    html_kb = statistics.mean(len(e.html.encode()) for e, _ in digests) / 1000
    print(f"{len(digests)} real digests: text {text_kb:.1f} KB, HTML {html_kb:.1f} KB on average")

    def fast() -> int:
        for email, envelope in digests:
            build_message(email, envelope=envelope, now=NOW)
        return len(digests)

    def reference() -> int:
        for email, envelope in digests:
            build_email_message(email, envelope=envelope, now=NOW).as_bytes()
        return len(digests)

    print(shown("build_message", per_message(fast, args.repeats), per_message(reference, args.repeats), "EmailMessage reference"))

    messages = [build_message(email, envelope=envelope, now=NOW)[1] for email, envelope in digests]
    with tempfile.TemporaryDirectory() as tmp:
        def send() -> int:
            transport = MaildirTransport(Path(tempfile.mkdtemp(dir=tmp)) / "box")
            for message in messages:
                transport.send(message, sender=SENDER, recipient="r@example.org")
            transport.close()
            return len(messages)

        def add() -> int:
            box = mailbox.Maildir(Path(tempfile.mkdtemp(dir=tmp)) / "box", create=True)
            for message in messages:
                box.add(message)
            return len(messages)

        print(shown("MaildirTransport.send", per_message(send, args.repeats), per_message(add, args.repeats), "mailbox.Maildir.add"))


if __name__ == "__main__":
    main()
