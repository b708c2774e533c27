"""Ranking speed: N subscribers x M new entries on one core, as one day's digest run ranks them.

Entries: the first M unique papers of ../shared/data/papers/daily-arXiv-ai-enhanced (real
arXiv listings, June 2026). Subscribers: synthetic, 3-6 topics each drawn from the topic
profiles of bench/ranking_eval.py (real topic names), each worded as a random subset of the
profile's keywords, plus one topic of their own made of two phrases (neighbouring content
words) taken from random papers' titles, so most keywords are not shared and caches help less than with shared
profiles; random weights, some with excluded words, followed authors (from the papers),
categories, and 10% with three liked papers.

Times are CPU seconds of this process (time.process_time), so other jobs on a shared machine
inflate them less than wall-clock time would.

Printed (medians of --repeats runs, all in this one process), for ours and for the reference
(the ranking before the fast path, frozen in tests/rank_reference.py), interleaved so both see
the same noise:
  - pool: the per-entry work, done once per run (tokenise, stem, postings); the first build is
    cold (no word analysed yet in this process), later ones reuse the per-word caches;
  - ms per subscriber ranking against the shared pool: all, readers with liked papers, the others;
  - whether both return the same digests, and the ratio reference / ours;
then, for ours only:
  - per-subscriber pool: the same ranking but redoing the per-entry work for each
    subscriber (what "a Python loop over subscriber x entry" costs), on a sample, once;
  - fts5: one SQLite FTS5 bm25() query per subscriber topic over the same entries, on a sample.

Run: python bench/rank_speed.py [--subscribers 1000] [--entries 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import rank_reference  # noqa: E402
from ranking_eval import PROFILES  # noqa: E402

from newsletter.models import Entry, Subscriber, Topic  # noqa: E402
from newsletter.pool import Pool  # noqa: E402
from newsletter.rank import RankSettings, rank  # noqa: E402

PAPERS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "papers" / "daily-arXiv-ai-enhanced" / "data"
NOW = dt.datetime(2026, 7, 1, 7, tzinfo=dt.timezone.utc)


def load_entries(limit: int) -> list[Entry]:
    entries: dict[str, Entry] = {}
    for path in sorted(PAPERS.glob("2026-06-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            key = f"arxiv:{row['id']}"
            if key not in entries:
                entries[key] = Entry(
                    id=key, title=row["title"], link=row["abs"], summary=" ".join(row["summary"].split()),
                    authors=tuple(row["authors"]), categories=tuple(row["categories"]), published=NOW - dt.timedelta(days=1),
                )
            if len(entries) == limit:
                return list(entries.values())
    return list(entries.values())


def make_subscribers(count: int, entries: list[Entry], *, seed: int = 7) -> list[Subscriber]:
    rng = random.Random(seed)
    names = sorted(PROFILES)
    authors = [name for entry in entries for name in entry.authors]
    zones = ["Europe/London", "America/New_York", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "UTC"]
    subscribers = []
    for number in range(count):
        # Each reader words a topic their own way: a random subset of its keywords, in their own order.
        topics = tuple(
            Topic(name, tuple(rng.sample(PROFILES[name], rng.randint(2, len(PROFILES[name])))), round(rng.uniform(0.5, 2.0), 1))
            for name in rng.sample(names, rng.randint(3, 6))
        ) + (Topic("own", (_title_pair(rng, entries), _title_pair(rng, entries))),)
        subscribers.append(Subscriber(
            id=f"s{number}", email=f"s{number}@example.org", name=f"Reader {number}", timezone=rng.choice(zones),
            send_at=dt.time(rng.randint(5, 9), rng.choice((0, 15, 30, 45))), max_items=rng.choice((5, 8, 10)), topics=topics,
            exclude=("survey",) if rng.random() < 0.3 else (),
            authors=(rng.choice(authors),) if rng.random() < 0.1 else (),
            categories=tuple(rng.sample(["cs.CV", "cs.CL", "cs.AI", "cs.LG"], 2)) if rng.random() < 0.5 else (),
            liked=tuple(entry.id for entry in rng.sample(entries, 3)) if rng.random() < 0.1 else (),
        ))
    return subscribers


def _title_pair(rng: random.Random, entries: list[Entry]) -> str:
    """Two neighbouring content words of a random title, the way a reader names a niche ("Video Diffusion")."""
    words = rng.choice(entries).title.split()
    pairs = [f"{a} {b}" for a, b in zip(words, words[1:]) if a.isalpha() and b.isalpha() and len(a) > 3 and len(b) > 3]
    return rng.choice(pairs) if pairs else "language models"


def timed(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def fts5_rank(db: sqlite3.Connection, subscriber: Subscriber) -> list[str]:
    scores: dict[str, float] = {}
    for topic in subscriber.topics:
        query = " OR ".join('"' + keyword.replace('"', '""') + '"' for keyword in topic.keywords)
        for entry_id, score in db.execute("SELECT id, bm25(papers, 0.0, 3.0, 1.0) FROM papers WHERE papers MATCH ?", [query]):
            scores[entry_id] = scores.get(entry_id, 0.0) - topic.weight * score
    return sorted(scores, key=lambda key: -scores[key])[: subscriber.max_items]


def rank_each(
    rank_one: Callable[..., list[object]], pool: object, subscribers: list[Subscriber], liked: dict[str, list[Entry]],
) -> tuple[list[float], list[list[object]]]:
    """Seconds per subscriber, and their digests."""
    seconds, digests = [], []
    for subscriber in subscribers:
        start = time.process_time()
        digests.append(rank_one(subscriber, pool, settings=RankSettings(now=NOW), liked=liked[subscriber.id]))
        seconds.append(time.process_time() - start)
    return seconds, digests


def digest_key(items: list[object]) -> list[tuple[object, ...]]:
    return [(item.entry.id, item.score, item.reasons, item.highlights) for item in items]  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--entries", type=int, default=2_000)
    parser.add_argument("--sample", type=int, default=200, help="subscribers for the FTS5 comparison")
    parser.add_argument("--naive-sample", type=int, default=5, help="subscribers for the per-subscriber pool (slow)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    entries = load_entries(args.entries)
    subscribers = make_subscribers(args.subscribers, entries)
    sample = subscribers[: args.sample]
    settings = RankSettings(now=NOW)
    by_id = {entry.id: entry for entry in entries}
    liked = {s.id: [by_id[i] for i in s.liked] for s in subscribers}
    likers = [n for n, s in enumerate(subscribers) if s.liked]
    print(f"{len(entries)} real arXiv entries, {len(subscribers)} subscribers ({len(likers)} with liked papers), "
          f"{args.repeats} repeats, medians")

    implementations = {"ours": (Pool, rank), "reference": (rank_reference.Pool, rank_reference.rank)}
    pool_times: dict[str, list[float]] = {name: [] for name in implementations}
    per_subscriber: dict[str, list[list[float]]] = {name: [] for name in implementations}
    digests: dict[str, list[list[object]]] = {}
    for _ in range(args.repeats):
        for name, (make_pool, rank_one) in implementations.items():
            start = time.process_time()
            pool = make_pool(entries)
            pool_times[name].append(time.process_time() - start)
            seconds, digests[name] = rank_each(rank_one, pool, subscribers, liked)
            per_subscriber[name].append(seconds)

    def ms(name: str, who: list[int] | None = None) -> float:
        """Median over repeats of the mean ms per subscriber (of ``who``, else all)."""
        runs = [[run[n] for n in who] if who is not None else run for run in per_subscriber[name]]
        return 1000 * statistics.median(sum(run) / len(run) for run in runs)

    others = [n for n in range(len(subscribers)) if not subscribers[n].liked]
    for name in implementations:
        print(f"{name:>9}: pool {pool_times[name][0]:.2f} s cold, {statistics.median(pool_times[name][1:] or pool_times[name]):.2f} s warm; "
              f"ranking {ms(name):.3f} ms/subscriber (with liked papers {ms(name, likers):.3f}, others {ms(name, others):.3f})")
    same = [digest_key(a) for a in digests["ours"]] == [digest_key(b) for b in digests["reference"]]
    print(f"same digests as the reference: {'yes' if same else 'NO'}; reference / ours: ranking x{ms('reference') / ms('ours'):.1f}, "
          f"pool x{statistics.median(pool_times['reference']) / statistics.median(pool_times['ours']):.1f} (medians incl. the cold build)")
    ours_rate = len(subscribers) / (statistics.median(pool_times["ours"]) + ms("ours") * len(subscribers) / 1000)
    print(f"ours: {ours_rate:,.0f} subscribers/s including the pool, {1000 / ms('ours'):,.0f} subscribers/s ranking alone")

    naive = timed(lambda: [rank(s, entries, settings=settings, liked=liked[s.id]) for s in subscribers[: args.naive_sample]])
    naive_rate = args.naive_sample / naive
    print(f"per-subscriber pool: {naive_rate:,.2f} subscribers/s ({args.naive_sample} sampled, once) -> ours is x{ours_rate / naive_rate:,.0f}")

    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE papers USING fts5(id UNINDEXED, title, summary, tokenize='porter')")
    db.executemany("INSERT INTO papers VALUES (?, ?, ?)", [(e.id, e.title, e.summary) for e in entries])
    fts = statistics.median(timed(lambda: [fts5_rank(db, s) for s in sample]) for _ in range(args.repeats))
    fts_rate = len(sample) / fts
    print(f"fts5 query per topic: {fts_rate:,.1f} subscribers/s ({len(sample)} sampled) -> ours is x{ours_rate / fts_rate:,.1f}")


if __name__ == "__main__":
    main()
