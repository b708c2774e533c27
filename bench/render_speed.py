"""Rendering speed: emails rendered per second with the CSS inlined once per template vs premailer per email.

Workload: real digests. Entries are the first 2,000 unique papers of
../shared/data/papers/daily-arXiv-ai-enhanced (real arXiv listings); subscribers are the synthetic
ones of bench/rank_speed.py (3-6 real topic names each); each subscriber's digest is ranked once
with the real code, then the same digests are rendered by:
  - ours:   Renderer(templates) — premailer ran once, on the template's source, at start-up;
  - naive:  Renderer(templates, inline=False) — premailer on every rendered email.
Both produce the HTML and the plain-text part. Printed: medians of --repeats runs (each over the
same digests), emails/s, the start-up cost of pre-inlining, the HTML size, and the ratio. Each rate is
given per wall-clock second and per CPU second of this process: on a shared machine the wall-clock
figure mostly measures the neighbours. The first run of ours is also shown alone: its caches (papers,
{% cache %} fragments, wrapped lines) start empty, as in a digest run, where each paper is new once.

Run: python bench/render_speed.py [--digests 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    wall: float  # emails per wall-clock second
    cpu: float  # emails per CPU second of this process
    size: int  # HTML bytes per email


def emails_per_second(renderer: Renderer, digests: list[Digest]) -> Run:
    started, started_cpu = time.perf_counter(), time.process_time()
    size = 0
    for digest in digests:
        links = digest_links(subscriber_id=digest.subscriber.id, sender=BRANDING.sender, base_url=None, signer=None, issued=dt.date(2026, 11, 26))
        size += len(renderer.render(digest, branding=BRANDING, links=links).html.encode())
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return Run(len(digests) / wall, len(digests) / cpu, size // len(digests))


def _line(label: str, runs: list[Run]) -> str:
    wall, cpu = [run.wall for run in runs], [run.cpu for run in runs]
    return (
        f"{label} {statistics.median(wall):8.1f} emails/s wall, {statistics.median(cpu):8.1f} per CPU second"
        f"  (runs: {', '.join(f'{r:.0f}' for r in wall)} wall; {', '.join(f'{r:.0f}' for r in cpu)} CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    digests = make_digests(args.digests)
    items = sum(len(d.items) for d in digests) / len(digests)
    print(f"{len(digests)} real digests, {items:.1f} papers each on average")

    started = time.perf_counter()
    ours = Renderer(ROOT / "templates")
    startup = time.perf_counter() - started
    naive = Renderer(ROOT / "templates", inline=False)
    fast: list[Run] = []
    slow: list[Run] = []
    for _ in range(args.repeats):
        fast.append(emails_per_second(ours, digests))
        slow.append(emails_per_second(naive, digests[: max(20, len(digests) // 5)]))
    print(f"pre-inlining the template once: {startup * 1000:.0f} ms at start-up")
    print(_line("ours  (CSS inlined once per template):", fast))
    print(_line("naive (premailer on every email):     ", slow))
    print(f"ours, first run alone (caches cold):    {fast[0].wall:8.1f} emails/s wall, {fast[0].cpu:8.1f} per CPU second")
    ratio = statistics.median(run.cpu for run in fast) / statistics.median(run.cpu for run in slow)
    print(f"ratio ours/naive (CPU): {ratio:.1f}x; HTML {fast[0].size / 1024:.1f} KB per email on average")


if __name__ == "__main__":
    main()
