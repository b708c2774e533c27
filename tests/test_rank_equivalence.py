"""The fast ranking gives exactly what the straightforward one gave: same ids, order, scores, reasons, highlights.

The reference is the pre-optimisation code kept verbatim in tests/rank_reference.py (dicts, every
candidate visited per subscriber). Both rank ~200 synthetic readers (bench/rank_speed.py builds
them from real arXiv papers) with liked / disliked papers, exclusions, followed authors,
categories, already-sent papers, corpus IDF and varied settings; the sample is checked to
exercise every one of those signals, so a wrong fast path cannot pass by ranking nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import rank_reference as reference
from conftest import REPO

import newsletter.rank as rank_module
from newsletter.models import CorpusStats, Entry, ScoredEntry, Subscriber, Topic
from newsletter.pool import Pool, tokens
from newsletter.rank import RankSettings, rank

sys.path.insert(0, str(REPO / "bench"))
from rank_speed import NOW, load_entries, make_subscribers  # noqa: E402

POOL_SIZE = 1000
READERS = 200


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return load_entries(POOL_SIZE + 20)  # the last 20 are liked papers from earlier days, outside the pool


@pytest.fixture(scope="module")
def corpus(entries: list[Entry]) -> CorpusStats:
    """Store-wide document frequencies for some keywords, as the pipeline passes them."""
    readers = make_subscribers(READERS, entries[:POOL_SIZE])
    keywords = sorted({k for s in readers for t in s.topics for k in t.keywords})
    rng = random.Random(3)
    return CorpusStats(size=50_000, document_frequency={k: rng.randint(1, 5_000) for k in rng.sample(keywords, len(keywords) // 3)})


def cases(entries: list[Entry]) -> list[tuple[Subscriber, dict[str, object]]]:
    """Each reader with the rank() arguments a day's run could pass them."""
    pool, earlier = entries[:POOL_SIZE], entries[POOL_SIZE:]
    rng = random.Random(11)
    by_id = {entry.id: entry for entry in pool}
    found = []
    for number, subscriber in enumerate(make_subscribers(READERS, pool)):
        if number % 4 == 0:  # a reader who never matches a word: authors and liked papers alone
            subscriber = replace(subscriber, topics=(*subscriber.topics, Topic("nothing", ("zzzzqx", "qqxz"))))
        if number % 5 == 1:
            subscriber = replace(subscriber, exclude=("language models", "benchmark"), authors=(rng.choice(pool).authors[0], "Nobody Known"))
        liked = [by_id[i] for i in subscriber.liked] + ([rng.choice(earlier)] if number % 6 == 0 else [])
        disliked = rng.sample(pool, 2) if number % 3 == 0 else []
        settings = RankSettings(
            min_score=(1.0, 0.5, 2.5)[number % 3],
            diversity=(0.3, 0.0, 0.6, 0.3)[number % 4],
            now=NOW if number % 7 else NOW + dt.timedelta(days=3),
        )
        options: dict[str, object] = {
            "liked": liked, "disliked": disliked, "settings": settings,
            "skip_ids": frozenset(e.id for e in rng.sample(pool, 50)) if number % 2 else frozenset(),
            "max_items": None if number % 8 else 30,
            "include_below_threshold": number % 50 == 7,
        }
        found.append((subscriber, options))
    return found


def summary(items: list[ScoredEntry]) -> list[tuple[str, float, tuple[object, ...], tuple[str, ...]]]:
    return [(item.entry.id, item.score, item.reasons, item.highlights) for item in items]


def assert_same(ours: list[ScoredEntry], theirs: list[ScoredEntry], who: str) -> None:
    assert [i.entry.id for i in ours] == [i.entry.id for i in theirs], who
    assert [i.score for i in ours] == pytest.approx([i.score for i in theirs], abs=1e-9, rel=0), who
    assert [(i.reasons, i.highlights) for i in ours] == [(i.reasons, i.highlights) for i in theirs], who


def test_pool_analyses_words_as_before(entries: list[Entry]) -> None:
    for entry in entries:
        assert tokens(entry.title) == reference.tokens(entry.title) and tokens(entry.summary) == reference.tokens(entry.summary)


def test_liked_paper_similarities_are_the_same_to_the_last_bit(entries: list[Entry]) -> None:
    pool, old_pool = Pool(entries[:POOL_SIZE]), reference.Pool(entries[:POOL_SIZE])
    rng = random.Random(5)
    for liked in [rng.sample(entries, 3) for _ in range(40)]:
        similarity, closest = pool.similar(liked)
        theirs = old_pool.similar(liked)
        assert theirs and {doc: (liked[closest[doc]], similarity[doc]) for doc in np.flatnonzero(closest >= 0).tolist()} == theirs


def unrounded(score: float, digits: int) -> float:
    return score


@pytest.mark.parametrize("with_corpus", [False, True], ids=["pool-idf", "corpus-idf"])
def test_shared_pool_ranks_like_the_reference(
    entries: list[Entry], corpus: CorpusStats, with_corpus: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both round scores to 4 digits for the email: compare them before that, where a slip would hide.
    monkeypatch.setattr(rank_module, "round", unrounded, raising=False)
    monkeypatch.setattr(reference, "round", unrounded, raising=False)
    stats = corpus if with_corpus else None
    pool, old_pool = Pool(entries[:POOL_SIZE], corpus=stats), reference.Pool(entries[:POOL_SIZE], corpus=stats)
    kinds: Counter[str] = Counter()
    picked = 0
    for subscriber, options in cases(entries):
        ours = rank(subscriber, pool, **options)  # type: ignore[arg-type]
        theirs = reference.rank(subscriber, old_pool, **options)  # type: ignore[arg-type]
        assert_same(ours, theirs, subscriber.id)
        picked += len(ours)
        kinds.update(reason.kind for item in ours for reason in item.reasons)
        kinds.update("several topics" for item in ours if len(item.topics) > 1)
    # The sample exercises every signal, so agreement is not agreement on empty digests.
    assert picked > 10 * READERS
    assert {"topic", "author", "liked", "category", "several topics"} <= set(kinds), kinds


def test_ties_between_topics_are_broken_as_before() -> None:
    """Equal papers on two equal topics: the diversity picks alternate in the reference's order."""
    filler = "We report experiments on three benchmarks and release code."
    texts = ["Protein folding", "Graph networks", "Protein folding", "Graph networks", "Graph networks and protein folding"]
    papers = [
        Entry(id=f"arxiv:2601.{n:05d}", title="A paper", link=f"https://arxiv.org/abs/2601.{n:05d}", summary=f"{text}. {filler}")
        for n, text in enumerate(texts)
    ]
    for topics in [("Graphs", "graph networks"), ("Proteins", "protein folding")], [("Proteins", "protein folding"), ("Graphs", "graph networks")]:
        subscriber = Subscriber(
            id="t", email="t@example.org", name="T", timezone="UTC", send_at=dt.time(7),
            topics=tuple(Topic(name, (keyword,)) for name, keyword in topics),
        )
        for settings in (RankSettings(min_score=0.0), RankSettings(min_score=0.0, diversity=0.0)):
            assert_same(rank(subscriber, papers, settings=settings), reference.rank(subscriber, papers, settings=settings), str(topics))
