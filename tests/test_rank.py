"""Ranking: every signal has a test that fails without it, on real abstracts where the signal shows."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import EXAMPLES, FEEDS

from newsletter import ingest
from newsletter.models import CorpusStats, Entry, Subscriber, Topic
from newsletter.pool import Pool
from newsletter.rank import RankSettings, rank

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
ANY = RankSettings(min_score=0.0, diversity=0.0)  # plain score order, no threshold


@pytest.fixture(scope="module")
def papers() -> list[Entry]:
    """The 90 real papers of the demo's Daily Papers page plus 86 real arXiv cs.AI entries."""
    entries = list(ingest.parse((EXAMPLES / "daily-papers.xml").read_bytes(), feed_name="daily").entries)
    truncated = FEEDS / "arxiv-atom-truncated" / "arxiv-cs.AI-2025-08-20.atom.xml"
    return entries + list(ingest.parse(truncated.read_bytes(), feed_name="cs-ai").entries)


def reader(*topics: Topic, **options: object) -> Subscriber:
    return Subscriber(id="r", email="r@example.org", name="R", timezone="UTC", send_at=dt.time(7), topics=topics, **options)  # type: ignore[arg-type]


def paper(number: int, title: str = "A paper", summary: str = "", **fields: object) -> Entry:
    return Entry(id=f"arxiv:2601.{number:05d}", title=title, link=f"https://arxiv.org/abs/2601.{number:05d}", summary=summary, **fields)  # type: ignore[arg-type]


def ids(items: list) -> list[str]:  # type: ignore[type-arg]
    return [item.entry.id for item in items]


FILLER = "We report experiments on three benchmarks and release code."


# --- 1. text relevance -------------------------------------------------------------------------


def test_real_topic_papers_come_first_with_reasons(papers: list[Entry]) -> None:
    ranked = rank(reader(Topic("Federated learning", ("federated learning",))), papers, max_items=10)
    expected = {e.id for e in papers if "federated learning" in f"{e.title} {e.summary}".lower()}
    assert expected and set(ids(ranked)) <= expected and len(ranked) == min(10, len(expected))
    assert "federated" in ranked[0].entry.title.lower()
    assert ranked[0].reasons[0].label == "Federated learning" and ranked[0].reasons[0].terms == ("federated learning",)


def test_title_match_outweighs_abstract_match() -> None:
    pool = [paper(1, "Contrastive learning at scale", FILLER), paper(2, "A new method", f"We use contrastive learning. {FILLER}")]
    assert ids(rank(reader(Topic("CL", ("contrastive learning",))), pool, settings=ANY)) == ["arxiv:2601.00001", "arxiv:2601.00002"]


def test_multi_word_keywords_are_phrases() -> None:
    pool = [paper(1, summary="Knowledge distillation compresses models."), paper(2, summary="Knowledge of wine distillation.")]
    assert ids(rank(reader(Topic("KD", ("knowledge distillation",))), pool, settings=ANY)) == ["arxiv:2601.00001"]


def test_whole_words_only() -> None:
    pool = [
        paper(1, summary="We improve the average storage cost of research databases."),
        paper(2, summary="A RAG pipeline (retrieval-augmented generation) for search."),
        paper(3, summary="Leverage search engines for research."),
    ]
    assert ids(rank(reader(Topic("RAG", ("RAG",))), pool, settings=ANY)) == ["arxiv:2601.00002"]
    assert set(ids(rank(reader(Topic("Search", ("search",))), pool, settings=ANY))) == {"arxiv:2601.00002", "arxiv:2601.00003"}


def test_case_hyphen_plural_and_stem_variants() -> None:
    pool = [
        paper(1, summary="A Teacher Student scheme."),
        paper(2, summary="Distillation of transformers into students."),
        paper(3, summary="We distill a teacher-student transformer."),
    ]
    assert set(ids(rank(reader(Topic("KD", ("teacher-student",))), pool, settings=ANY))) == {"arxiv:2601.00001", "arxiv:2601.00003"}
    assert set(ids(rank(reader(Topic("KD", ("distill",))), pool, settings=ANY))) == {"arxiv:2601.00002", "arxiv:2601.00003"}
    assert set(ids(rank(reader(Topic("T", ("Transformer",))), pool, settings=ANY))) == {"arxiv:2601.00002", "arxiv:2601.00003"}


def test_rare_keyword_counts_more_than_common_one() -> None:
    common = [paper(i, summary=f"A neural network for task {i}. {FILLER}") for i in range(10, 30)]
    pool = common + [paper(1, summary=f"A neural network. {FILLER}"), paper(2, summary=f"Spiking neurons. {FILLER}")]
    ranked = rank(reader(Topic("NN", ("neural network", "spiking"))), pool, settings=ANY, max_items=30)
    assert ids(ranked)[0] == "arxiv:2601.00002"


def test_corpus_document_frequencies_set_the_idf() -> None:
    """A term in every paper of today's pool but rare in the whole store is still a strong signal."""
    pool = [paper(i, summary=f"Optical flow estimation {i}. {FILLER}") for i in range(1, 4)]
    subscriber = reader(Topic("Flow", ("optical flow",)))
    local = rank(subscriber, Pool(pool), settings=ANY)
    corpus = rank(subscriber, Pool(pool, corpus=CorpusStats(size=5000, document_frequency={"optical flow": 3})), settings=ANY)
    assert corpus[0].score > 3 * local[0].score


class CountedLookups(dict[str, int]):
    """Document frequencies that remember which phrases were looked up (each is an FTS5 query in a real run)."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(counts)
        self.asked: list[str] = []

    def __contains__(self, phrase: object) -> bool:
        self.asked.append(str(phrase))
        return super().__contains__(phrase)


def test_a_keyword_no_paper_of_the_pool_matches_costs_no_corpus_lookup() -> None:
    pool = [paper(i, summary=f"Optical flow estimation {i}. {FILLER}") for i in range(1, 4)]
    frequencies = CountedLookups({"optical flow": 3, "protein folding": 40})
    ranked = rank(reader(Topic("Mixed", ("optical flow", "protein folding"))), Pool(pool, corpus=CorpusStats(size=5000, document_frequency=frequencies)), settings=ANY)
    assert len(ranked) == 3 and all(item.reasons[0].terms == ("optical flow",) for item in ranked)
    assert frequencies.asked == ["optical flow"]  # "protein folding" is in no paper today: its IDF is never needed


# --- 2. weights, several topics -------------------------------------------------------------------


def test_topic_weight_scales_and_several_topics_win(papers: list[Entry]) -> None:
    light = rank(reader(Topic("Agents", ("agent",), weight=1.0)), papers, max_items=5, settings=ANY)
    heavy = rank(reader(Topic("Agents", ("agent",), weight=3.0)), papers, max_items=5, settings=ANY)
    assert ids(light) == ids(heavy) and heavy[0].score == pytest.approx(3 * light[0].score, rel=0.05)
    # Paper 1 is as much about graphs as paper 2 is about robots (same words, same length), and also about robots.
    pool = [
        paper(1, summary=f"Graph networks and robotics. {FILLER}"),
        paper(2, summary=f"Robotics robotics and robotics. {FILLER}"),
        paper(3, summary=f"Protein folding in cells. {FILLER}"),
    ]
    both = rank(reader(Topic("Graphs", ("graph networks",)), Topic("Robots", ("robotics",))), pool, settings=ANY)
    assert ids(both) == ["arxiv:2601.00001", "arxiv:2601.00002"] and len(both[0].topics) == 2
    alone = [
        next(i.score for i in rank(reader(topic), pool, settings=ANY) if i.entry.id == "arxiv:2601.00001")
        for topic in (Topic("Graphs", ("graph networks",)), Topic("Robots", ("robotics",)))
    ]
    assert both[0].score > 1.1 * sum(alone)  # more than the sum of its parts


# --- 3. exclusions ------------------------------------------------------------------------------


def test_exclusions_are_whole_words_or_phrases() -> None:
    pool = [
        paper(1, "A survey of retrieval", "We survey retrieval."),
        paper(2, "Retrieval for surveillance", "Retrieval in video surveillance."),
        paper(3, "Dense retrieval", "Retrieval with large language models."),
    ]
    ranked = rank(reader(Topic("IR", ("retrieval",)), exclude=("survey", "language models")), pool, settings=ANY)
    assert ids(ranked) == ["arxiv:2601.00002"]


# --- 4. followed authors -----------------------------------------------------------------------


def test_followed_author_with_initials_and_accents() -> None:
    truncated = FEEDS / "arxiv-atom-truncated" / "arxiv-cs.AI-2025-08-20.atom.xml"
    entries = ingest.parse(truncated.read_bytes(), feed_name="cs-ai").entries
    target = next(e for e in entries if any("Pi\\v{z}urica" in a or "Pižurica" in a for a in e.authors))
    ranked = rank(reader(Topic("x", ("zzzz",)), authors=("N. PIZURICA",)), entries, settings=RankSettings())
    assert ids(ranked) == [target.id]
    assert ranked[0].reasons[0].kind == "author"
    wrong_initial = rank(reader(Topic("x", ("zzzz",)), authors=("A. Pizurica",)), entries)
    assert wrong_initial == []


def test_followed_author_lifts_a_relevant_paper() -> None:
    pool = [paper(1, summary=f"Graph networks. {FILLER}", authors=("Geoffrey E. Hinton",)), paper(2, summary=f"Graph networks. {FILLER}")]
    ranked = rank(reader(Topic("G", ("graph networks",)), authors=("G. Hinton",)), pool, settings=ANY)
    assert ids(ranked)[0] == "arxiv:2601.00001" and ranked[0].score > ranked[1].score + 2
    assert "by Geoffrey E. Hinton, whom you follow" in [r.describe() for r in ranked[0].reasons]


# --- 5. categories ------------------------------------------------------------------------------


def test_category_is_a_mild_boost_never_enough_alone() -> None:
    pool = [
        paper(1, summary=f"Graph networks. {FILLER}"),
        paper(2, summary=f"Graph networks. {FILLER}", categories=("cs.LG",)),
        paper(3, summary=f"Protein folding. {FILLER}", categories=("cs.LG",)),
    ]
    ranked = rank(reader(Topic("G", ("graph networks",)), categories=("cs.LG",)), pool, settings=RankSettings(min_score=0))
    assert ids(ranked) == ["arxiv:2601.00002", "arxiv:2601.00001"]
    assert ranked[0].reasons[-1].describe() == "in cs.LG"
    assert ranked[0].score - ranked[1].score < 0.5


# --- 6. more like this --------------------------------------------------------------------------


def test_liked_papers_pull_similar_ones(papers: list[Entry]) -> None:
    liked = next(e for e in papers if "federated" in e.title.lower())
    ranked = rank(reader(Topic("x", ("zzzz",)), liked=(liked.id,)), papers, max_items=5, liked=[liked])
    assert ranked and liked.id not in ids(ranked)
    assert "federated" in f"{ranked[0].entry.title} {ranked[0].entry.summary}".lower()
    assert ranked[0].reasons[0].kind == "liked" and ranked[0].reasons[0].label == liked.title


# --- 7. popularity and recency -----------------------------------------------------------------


def test_upvotes_and_freshness_break_ties_but_never_include_irrelevant_papers() -> None:
    text = f"Graph networks. {FILLER}"
    pool = [
        paper(1, summary=text, upvotes=0, published=NOW - dt.timedelta(days=3)),
        paper(2, summary=text, upvotes=120, published=NOW - dt.timedelta(days=3)),
        paper(3, summary=text, upvotes=0, published=NOW - dt.timedelta(hours=2)),
        paper(4, summary=f"Protein folding. {FILLER}", upvotes=5000, published=NOW),
    ]
    settings = RankSettings(min_score=0, diversity=0, now=NOW)
    ranked = rank(reader(Topic("G", ("graph networks",))), pool, settings=settings)
    assert ids(ranked) == ["arxiv:2601.00002", "arxiv:2601.00003", "arxiv:2601.00001"]
    strong = paper(5, "Graph networks", f"Graph networks for graph networks. {FILLER}")
    ranked = rank(reader(Topic("G", ("graph networks",))), [*pool, strong], settings=settings)
    assert ids(ranked)[0] == strong.id  # priors never outweigh real relevance


# --- 8. threshold --------------------------------------------------------------------------------


def test_threshold_sends_fewer_rather_than_unrelated(papers: list[Entry]) -> None:
    assert rank(reader(Topic("Galaxies", ("galaxy", "quasar"))), papers, max_items=10) == []
    # A single passing mention of a common word in the abstract is not worth an email.
    once = {e.id for e in papers if len(re.findall(r"\bmodel\w*", e.summary, re.I)) == 1 and "model" not in e.title.lower()}
    subscriber = reader(Topic("Models", ("model",)))
    everything = set(ids(rank(subscriber, papers, max_items=1000, settings=RankSettings(min_score=0, diversity=0))))
    picked = set(ids(rank(subscriber, papers, max_items=1000)))
    assert once and once <= everything and not once & picked and picked


def test_below_threshold_listing_for_tuning(papers: list[Entry]) -> None:
    everything = rank(reader(Topic("KD", ("distillation",))), papers, max_items=1000, include_below_threshold=True)
    assert len(everything) == len(papers) and everything[-1].score == 0


def test_a_keyword_in_every_paper_still_picks_them() -> None:
    """A narrow feed where every paper is on the reader's topic: low IDF must not empty the digest."""
    pool = [paper(i, f"Knowledge distillation for task {i}", f"We study knowledge distillation on benchmark {i}.") for i in range(5)]
    assert len(rank(reader(Topic("KD", ("knowledge distillation",))), pool, max_items=10)) == 5


# --- 9. diversity --------------------------------------------------------------------------------


def test_diversity_keeps_other_topics_in_the_digest() -> None:
    kd = [paper(i, f"Knowledge distillation {i}", f"Knowledge distillation and knowledge distillation. {FILLER}") for i in range(1, 9)]
    fl = [paper(i, "A method", f"Federated learning. {FILLER} {FILLER}") for i in range(20, 22)]
    others = [paper(i, "Protein folding", FILLER) for i in range(30, 60)]
    subscriber = reader(Topic("KD", ("knowledge distillation",)), Topic("FL", ("federated learning",)))
    plain = rank(subscriber, kd + fl + others, max_items=5, settings=RankSettings(diversity=0))
    varied = rank(subscriber, kd + fl + others, max_items=5, settings=RankSettings(diversity=0.5))
    assert {item.topics[0] for item in plain} == {"KD"}
    assert {item.topics[0] for item in varied} == {"KD", "FL"} and ids(varied)[0] == ids(plain)[0]


# --- 10. reasons and highlights ---------------------------------------------------------------------


def test_reasons_and_highlights_name_the_exact_words() -> None:
    pool = [paper(1, "Distilling Teacher-Student models", "Knowledge distillation with a teacher student scheme.")]
    (item,) = rank(reader(Topic("KD", ("distill", "teacher-student"))), pool, settings=ANY)
    assert item.reasons[0].terms == ("distill", "teacher-student")
    assert set(item.highlights) == {"Distilling", "Teacher-Student", "distillation", "teacher student"}


def test_highlights_are_the_words_as_written_in_plain_and_accented_texts() -> None:
    """ASCII texts are split into words by numpy, others by the regular expression: both give the words as written."""
    topic = Topic("GNN", ("graph networks", "GNN2"))
    plain = [paper(1, "Graph_networks", "GNN2 on x-ray graph-networks; Graph  Networks.")]
    accented = [paper(1, "Graph_networks", "GNN2 on x-ray graph-networks; Graph  Networks, Pokémon.")]
    for pool in (plain, accented):
        (item,) = rank(reader(topic), pool, settings=ANY)
        assert item.highlights == ("Graph_networks", "graph-networks", "Graph  Networks", "GNN2"), pool[0].summary


def test_already_sent_and_liked_papers_are_never_offered(papers: list[Entry]) -> None:
    subscriber = reader(Topic("Agents", ("agent",)))
    first = ids(rank(subscriber, papers, max_items=5))
    second = ids(rank(subscriber, papers, max_items=5, skip_ids=set(first)))
    assert second and not set(first) & set(second)


def test_keywords_match_words_that_extend_them_not_shorter_ones() -> None:
    pool = [paper(1, summary="Neural network pruning."), paper(2, summary="Networking for data centres."), paper(3, summary="Networked sensors.")]
    assert ids(rank(reader(Topic("Net", ("networking",))), pool, settings=ANY)) == ["arxiv:2601.00002"]
    assert set(ids(rank(reader(Topic("Net", ("network",))), pool, settings=ANY))) == {"arxiv:2601.00001", "arxiv:2601.00002", "arxiv:2601.00003"}
    phrases = [paper(1, summary="Network protocols."), paper(2, summary="Networking protocols."), paper(3, summary="Networking protocol design.")]
    assert ids(rank(reader(Topic("Net", ("networking protocols",))), phrases, settings=ANY)) == ["arxiv:2601.00002", "arxiv:2601.00003"]


def test_acronym_plurals_and_accents_match() -> None:
    pool = [paper(1, summary="Can LLMs plan?"), paper(2, summary="A Pokémon benchmark."), paper(3, summary="Nothing here.")]
    assert ids(rank(reader(Topic("LLM", ("LLM",))), pool, settings=ANY)) == ["arxiv:2601.00001"]
    assert ids(rank(reader(Topic("Games", ("pokemon",))), pool, settings=ANY)) == ["arxiv:2601.00002"]


def test_a_keyword_inside_a_longer_one_counts_once() -> None:
    """"large language model" and "language model" in one topic: one mention, not two."""
    pool = [
        paper(1, summary=f"A large language model. {FILLER}"),
        paper(2, summary=f"A language model and a large model. {FILLER}"),
        *[paper(i, summary=f"Protein folding {i}. {FILLER}") for i in range(10, 20)],
    ]
    ranked = rank(reader(Topic("LLM", ("large language model", "language model"))), pool, settings=ANY)
    assert ranked[0].entry.id == "arxiv:2601.00001" and ranked[0].score < 1.5 * ranked[1].score  # counted twice: ~2.3x


def test_longer_abstracts_need_more_mentions() -> None:
    short = paper(1, summary="Contrastive learning works.")
    long = paper(2, summary=f"Contrastive learning works. {FILLER * 12}")
    ranked = rank(reader(Topic("CL", ("contrastive learning",))), [short, long, *[paper(i, summary=FILLER) for i in range(10, 14)]], settings=ANY)
    assert ids(ranked) == [short.id, long.id] and ranked[0].score > 1.3 * ranked[1].score


def test_upvote_prior_is_capped() -> None:
    text = f"Graph networks. {FILLER}"
    pool = [paper(1, "Graph networks", text), paper(2, summary=text, upvotes=10**9)]
    ranked = rank(reader(Topic("G", ("graph networks",))), pool, settings=ANY)
    assert ids(ranked)[0] == "arxiv:2601.00001"  # a title match beats any number of upvotes
    assert ranked[1].score <= 1.1 * rank(reader(Topic("G", ("graph networks",))), [paper(2, summary=text)], settings=ANY)[0].score


def test_exclusions_match_exact_words_not_longer_ones() -> None:
    pool = [paper(1, "Retrieval", "Retrieval with reviewer feedback."), paper(2, "Retrieval", "A review of retrieval.")]
    assert ids(rank(reader(Topic("IR", ("retrieval",)), exclude=("review",)), pool, settings=ANY)) == ["arxiv:2601.00001"]


def test_full_first_names_must_agree() -> None:
    pool = [paper(1, summary="x", authors=("Gareth Hinton",)), paper(2, summary="x", authors=("Geoffrey E. Hinton",)),
            paper(3, summary="x", authors=("Wen Zhang",))]
    assert ids(rank(reader(authors=("Geoffrey Hinton",)), pool)) == ["arxiv:2601.00002"]
    assert ids(rank(reader(authors=("Wei Zhang",)), pool)) == []
    assert set(ids(rank(reader(authors=("G. Hinton",)), pool))) == {"arxiv:2601.00001", "arxiv:2601.00002"}


def test_the_c_stemmer_in_use_stems_real_abstracts_as_the_reference_python_one_does() -> None:
    """PyStemmer (a dependency; snowballstemmer hands it out when installed) must not change any ranking."""
    import snowballstemmer
    from snowballstemmer.english_stemmer import EnglishStemmer

    in_use = snowballstemmer.stemmer("english")
    assert type(in_use).__module__ == "Stemmer"  # the C one: pool construction stems ~18,000 words a run
    text = " ".join(path.read_text(encoding="utf-8", errors="replace") for path in sorted(FEEDS.glob("arxiv-to-rss/**/*.xml")))
    words = sorted({word.lower() for word in re.findall(r"[^\W\d_]+", text)})
    assert len(words) > 5000
    reference = EnglishStemmer()
    assert [word for word in words if in_use.stemWord(word) != reference.stemWord(word)] == []


def test_diversity_above_one_is_refused() -> None:
    """Picks are the best discounted scores, which needs a discount from 0 to 1 (the config allows below 1)."""
    assert RankSettings(diversity=1.0).diversity == 1.0
    with pytest.raises(ValueError, match="diversity"):
        RankSettings(diversity=1.5)
