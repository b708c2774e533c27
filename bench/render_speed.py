"""Rendering speed: emails rendered per second with the CSS inlined once per template vs premailer per email.

Workload: real digests. Entries are the first 2,000 unique papers of
../shared/data/papers/daily-arXiv-ai-enhanced (real arXiv listings); subscribers are the synthetic
ones of bench/rank_speed.py (3-6 real topic names each); each subscriber's digest is ranked once
with the real code, then the same digests are rendered by:
  - ours:   Renderer(templates) — premailer ran once, on the template's source, at start-up;
  - naive:  Renderer(templates, inline=False) — premailer on every rendered email.
Both produce the HTML and the plain-text part. Printed: medians of --repeats runs (each over the
same digests), emails/s, the start-up cost of pre-inlining, the HTML size, and the ratio.

Run: python bench/render_speed.py [--digests 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rank_speed import NOW, load_entries, make_subscribers  # noqa: E402

from newsletter.links import digest_links  # noqa: E402
from newsletter.models import Digest  # noqa: E402
from newsletter.pool import Pool  # noqa: E402
from newsletter.rank import RankSettings, rank  # noqa: E402
from newsletter.render import Branding, Renderer  # noqa: E402

BRANDING = Branding(title="Daily Papers", sender="Daily Papers <papers@example.org>")


def make_digests(count: int) -> list[Digest]:
    entries = load_entries(2000)
    pool = Pool(entries)
    settings = RankSettings(min_score=1.0, diversity=0.3, now=NOW)
    digests = []
    for subscriber in make_subscribers(count, entries):
        items = rank(subscriber, pool, max_items=10, settings=settings)
        if items:
            digests.append(Digest(subscriber, tuple(items), len(entries), "2026-07-01", NOW.astimezone(dt.timezone.utc)))
    return digests


def emails_per_second(renderer: Renderer, digests: list[Digest]) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    for digest in digests:
        links = digest_links(subscriber_id=digest.subscriber.id, sender=BRANDING.sender, base_url=None, signer=None, issued=dt.date(2026, 11, 26))
        size += len(renderer.render(digest, branding=BRANDING, links=links).html.encode())
    return len(digests) / (time.perf_counter() - started), size // len(digests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    digests = make_digests(args.digests)
    items = sum(len(d.items) for d in digests) / len(digests)
    print(f"{len(digests)} real digests, {items:.1f} papers each on average")

    started = time.perf_counter()
    ours = Renderer(ROOT / "templates")
    startup = time.perf_counter() - started
    naive = Renderer(ROOT / "templates", inline=False)
    fast, slow = [], []
    for _ in range(args.repeats):
        rate, size = emails_per_second(ours, digests)
        fast.append(rate)
        slow.append(emails_per_second(naive, digests[: max(20, len(digests) // 5)])[0])
    fast_median, slow_median = statistics.median(fast), statistics.median(slow)
    print(f"pre-inlining the template once: {startup * 1000:.0f} ms at start-up")
    print(f"ours  (CSS inlined once per template): {fast_median:8.1f} emails/s  (runs: {', '.join(f'{r:.1f}' for r in fast)})")
    print(f"naive (premailer on every email):      {slow_median:8.1f} emails/s  (runs: {', '.join(f'{r:.1f}' for r in slow)})")
    print(f"ratio ours/naive: {fast_median / slow_median:.1f}x; HTML {size / 1024:.1f} KB per email on average")


if __name__ == "__main__":
    main()
