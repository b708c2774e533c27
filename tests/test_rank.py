"""Ranking on real abstracts: topics and weights, phrases, whole words, exclusions, authors, threshold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import EXAMPLES
from newsletter import ingest
from newsletter.models import Entry, Subscriber, Topic
from newsletter.rank import rank


@pytest.fixture(scope="module")
def papers() -> list[Entry]:
    """The 90 real papers of the demo's Daily Papers page plus 40 real arXiv cs.AI entries."""
    entries: list[Entry] = []
    for name in ("daily-papers.xml", "arxiv-cs.AI.atom.xml"):
        entries += ingest.parse((EXAMPLES / name).read_bytes(), feed_name=name).entries
    return entries


def reader(*topics: Topic, **options: object) -> Subscriber:
    return Subscriber(id="r", email="r@example.org", name="R", timezone="UTC", send_at=dt.time(7), topics=topics, **options)  # type: ignore[arg-type]


def test_topic_papers_come_first_with_reasons(papers: list[Entry]) -> None:
    topic = Topic("Federated learning", ("federated learning",))
    ranked = rank(reader(topic), papers, max_items=10)
    assert ranked, "the demo page has federated-learning papers"
    expected = {e.id for e in papers if "federated learning" in (e.title + " " + e.summary).lower()}
    assert {item.entry.id for item in ranked} <= expected
    assert len(ranked) == min(10, len(expected))
    top = ranked[0]
    assert "federated" in top.entry.title.lower()  # a title match beats abstract-only mentions
    assert top.reasons[0].label == "Federated learning" and top.reasons[0].terms == ("federated learning",)


def test_whole_words_only() -> None:
    def entry(number: int, text: str) -> Entry:
        return Entry(id=f"arxiv:2601.0000{number}", title=f"Paper {number}", link=f"https://arxiv.org/abs/2601.0000{number}", summary=text)

    pool = [
        entry(1, "We improve the average storage cost of research databases."),
        entry(2, "A RAG pipeline (retrieval-augmented generation) for search."),
        entry(3, "Leverage search engines for research."),
    ]
    rag = rank(reader(Topic("RAG", ("RAG",))), pool, max_items=10, min_score=0)
    assert [i.entry.id for i in rag] == ["arxiv:2601.00002"]
    search = rank(reader(Topic("Search", ("search",))), pool, max_items=10, min_score=0)
    assert {i.entry.id for i in search} == {"arxiv:2601.00002", "arxiv:2601.00003"}  # never "research"


def test_hyphen_and_stem_variants(papers: list[Entry]) -> None:
    plain = rank(reader(Topic("KD", ("teacher student",))), papers, max_items=50)
    hyphen = rank(reader(Topic("KD", ("teacher-student",))), papers, max_items=50)
    assert [i.entry.id for i in plain] == [i.entry.id for i in hyphen]
    distill = {i.entry.id for i in rank(reader(Topic("KD", ("distill",))), papers, max_items=100)}
    assert any("distillation" in e.summary.lower() and "distill " not in e.summary.lower() for e in papers if e.id in distill)


def test_exclude_removes_and_max_items_caps(papers: list[Entry]) -> None:
    topic = Topic("LLMs", ("language model",))
    everything = rank(reader(topic), papers, max_items=100)
    without = rank(reader(topic, exclude=("agent",)), papers, max_items=100)
    assert len(without) < len(everything)
    assert all("agent" not in (i.entry.title + " " + i.entry.summary).lower().replace("-", " ").split() for i in without)
    assert len(rank(reader(topic), papers, max_items=3)) == 3


def test_weight_and_several_topics(papers: list[Entry]) -> None:
    light = Topic("Agents", ("agent",), weight=1.0)
    heavy = Topic("Agents", ("agent",), weight=3.0)
    a = rank(reader(light), papers, max_items=5)
    b = rank(reader(heavy), papers, max_items=5)
    assert [i.entry.id for i in a] == [i.entry.id for i in b]
    assert b[0].score == pytest.approx(a[0].score * 3, rel=0.05)
    both = rank(reader(Topic("Agents", ("agent",)), Topic("RL", ("reinforcement learning",))), papers, max_items=3)
    assert len(both[0].topics) == 2  # papers about both of the reader's topics lead


def test_threshold_sends_fewer_rather_than_unrelated(papers: list[Entry]) -> None:
    ranked = rank(reader(Topic("Galaxies", ("galaxy", "quasar"))), papers, max_items=10)
    assert ranked == []  # no astronomy on an ML page: nothing is better than padding


def test_followed_author_lifts_and_says_so(papers: list[Entry]) -> None:
    paper = next(e for e in papers if len(e.authors) > 3)
    name = paper.authors[2]
    given, family = name.split()[0], name.split()[-1]
    ranked = rank(reader(Topic("x", ("zzzz",)), authors=(f"{given[0]}. {family.upper()}",)), papers, max_items=10)
    assert [i.entry.id for i in ranked][:1] == [paper.id]
    assert any(r.kind == "author" and r.label == name for r in ranked[0].reasons)


def test_liked_papers_pull_similar_ones(papers: list[Entry]) -> None:
    liked = next(e for e in papers if "federated" in e.title.lower())
    ranked = rank(reader(Topic("x", ("zzzz",)), liked=(liked.id,)), papers, max_items=5, liked=[liked])
    assert ranked and liked.id not in {i.entry.id for i in ranked}
    assert "federated" in (ranked[0].entry.title + ranked[0].entry.summary).lower()
    assert ranked[0].reasons[0].kind == "liked"


def test_a_keyword_in_every_paper_still_picks_them() -> None:
    """A narrow feed where every paper is on the reader's topic: low IDF must not empty the digest."""
    pool = [
        Entry(id=f"arxiv:2601.0001{i}", title=f"Knowledge distillation for task {i}", link=f"https://arxiv.org/abs/2601.0001{i}",
              summary=f"We study knowledge distillation on benchmark {i} with a compact student.")
        for i in range(5)
    ]
    ranked = rank(reader(Topic("KD", ("knowledge distillation",))), pool, max_items=10)  # the default threshold
    assert len(ranked) == 5
