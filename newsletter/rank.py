"""Score a subscriber's candidates against their preferences; pure computation, no I/O.

Text relevance is BM25 over stemmed words (snowball English): each keyword is
matched as a whole-word phrase ("RAG" never matches "storage"; "teacher-student"
equals "teacher student"), a title match counts three abstract matches, IDF
comes from every stored entry (the FTS index counts them) when the pipeline
passes it. Topic weights scale it; a paper on several topics gets a bonus;
followed authors and liked papers add explained relevance; categories,
upvotes and freshness are small boosts that only reorder papers that are
already relevant. A threshold keeps quiet days short, and a diversity
setting keeps one topic from filling the whole digest.

Per-entry work (tokenising, stemming, postings, lengths) happens once per run
in a ``Pool`` (pool.py), and so does everything subscribers share: each
keyword's scores, each liked paper's similarities, each exclusion's and
category's papers, the priors, all cached there as arrays. Per subscriber,
numpy adds those up over the whole pool in a few vector operations instead of
a Python step per paper, and reasons and highlights are built only for the
papers picked. Each sum runs in the order the per-paper formula states, so
the scores are the same to the last bit as the paper-by-paper loop this
replaced (tests/rank_reference.py, checked by tests/test_rank_equivalence.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .models import Entry, Reason, ScoredEntry, Subscriber, Topic
from .pool import Docs, Floats, Phrase, Pool, Scores, contains, name_key, phrase

MULTI_TOPIC_BONUS = 0.15  # per extra topic matched: several of the reader's topics beat one
AUTHOR_BOOST = 3.0
LIKED_BOOST = 4.0  # times cosine similarity to the closest liked paper
DISLIKED_DAMPING = 1.5  # relevance x (1 - this x cosine similarity to the closest "not for me" paper), floored at 0
CATEGORY_BOOST = 0.3  # mild, and only for papers already relevant

Flags = npt.NDArray[np.bool_]
# A topic's total is at least IDF_FLOOR x 3 / (1 + K1 x papers) (one mention's BM25 tf part): times a weight above this
# it is never 0, so a topic the paper matched always outweighs one it did not.
_NEVER_UNDERFLOWS = 1e-250


# --- ranking one subscriber -------------------------------------------------------------


@dataclass(frozen=True)
class RankSettings:
    min_score: float = 1.0  # relevance below this is not worth an email
    diversity: float = 0.3  # 0: pure score order; each further pick from the same topic counts (1 - diversity) as much
    now: dt.datetime | None = None  # for freshness; None: no recency prior

    def __post_init__(self) -> None:
        if self.diversity > 1:  # a negative discount would make a group's later papers outrank its earlier ones
            raise ValueError(f"diversity is at most 1, not {self.diversity!r}")


@dataclass(frozen=True)
class _TopicMatches:
    """One topic's keywords and each keyword's scores (shared across subscribers via the pool's cache)."""

    name: str
    keywords: tuple[tuple[str, Scores], ...]

    def terms(self, doc: int) -> tuple[str, ...]:
        return tuple(keyword for keyword, scores in self.keywords if doc in scores.by_doc)


@dataclass(frozen=True)
class _Relevance:
    """One subscriber's relevance of every paper and what it is made of, to explain the picks."""

    totals: Floats  # topics x papers: the topic's score, 0 where the paper did not match it
    weights: Floats  # per topic, as a column: weighted scores are weights x totals, as the per-paper formula states
    count: Docs  # per paper: the topics it matched
    value: Floats  # per paper: topics with their bonus, plus authors and liked papers, damped by disliked ones
    authors: dict[int, str]  # paper -> the first followed author who wrote it
    closest: Docs | None  # per paper: index of the closest liked paper, -1 for none; None: no liked papers


def rank(
    subscriber: Subscriber,
    candidates: Pool | Sequence[Entry],
    *,
    max_items: int | None = None,
    settings: RankSettings = RankSettings(),
    liked: Sequence[Entry] = (),
    disliked: Sequence[Entry] = (),
    skip_ids: frozenset[str] | set[str] = frozenset(),
    include_below_threshold: bool = False,
) -> list[ScoredEntry]:
    """The subscriber's best candidates, best first, each with the reasons it was picked.

    ``liked`` papers (the file's ``liked`` and "more like this" clicks) lift
    similar papers; ``disliked`` ones ("not for me") push similar papers down.
    ``skip_ids`` (already sent), liked and disliked papers are never offered. With
    ``include_below_threshold`` every other candidate comes back, scored (for tuning).
    """
    pool = candidates if isinstance(candidates, Pool) else Pool(candidates)
    topics = [_topic_matches(topic, pool) for topic in subscriber.topics]
    relevance = _relevance(subscriber, pool, topics, liked, disliked)
    threshold = 0.0 if include_below_threshold else max(settings.min_score, 1e-9)
    eligible = np.flatnonzero(relevance.value >= threshold)
    banned = _banned(subscriber, pool, {*skip_ids, *subscriber.liked, *(entry.id for entry in (*liked, *disliked))})
    if banned is not None:
        eligible = eligible[~banned[eligible]]
    scores = _scores(subscriber, pool, relevance.value, eligible, settings.now)
    by_score = np.argsort(-scores, kind="stable")  # best first, ties by pool position (eligible ascends)
    order, scores = eligible[by_score], scores[by_score]
    limit = max_items if max_items is not None else subscriber.max_items
    if include_below_threshold or settings.diversity <= 0:
        chosen = list(range(min(limit, len(order))))
    else:
        chosen = _diversify(order, scores, _groups(subscriber, relevance, order), topics, limit=limit, diversity=settings.diversity)
    return _explained(subscriber, pool, order[chosen], relevance, scores[chosen].tolist(), topics, liked)


def _topic_matches(topic: Topic, pool: Pool) -> _TopicMatches:
    keywords = _keyword_phrases(topic.keywords)
    return _TopicMatches(topic.name, tuple((keyword, pool.keyword_scores(keyword, words, longer)) for keyword, words, longer in keywords))


@lru_cache(maxsize=65_536)
def _keyword_phrases(keywords: tuple[str, ...]) -> tuple[tuple[str, Phrase, tuple[Phrase, ...]], ...]:
    """Each keyword, its phrase and the topic's longer keywords that contain it: pure, so shared by every reader and pool."""
    phrases = {keyword: phrase(keyword) for keyword in keywords}
    found = []
    for keyword, words in phrases.items():
        if words:
            # "language model" inside "large language model" is one mention, not two.
            longer = tuple(other for other in phrases.values() if len(other) > len(words) and contains(other, words))
            found.append((keyword, words, longer))
    return tuple(found)


def _relevance(
    subscriber: Subscriber, pool: Pool, topics: list[_TopicMatches], liked: Sequence[Entry], disliked: Sequence[Entry],
) -> _Relevance:
    size = len(pool)
    totals = _totals(topics, size)
    weights = np.array([topic.weight for topic in subscriber.topics]).reshape(-1, 1)
    hits = np.flatnonzero(totals > 0)  # topic by topic: bincount adds a paper's weighted scores in topic order, as the per-paper sum ran
    topic, doc = np.divmod(hits, size)
    value = np.bincount(doc, weights=totals.ravel()[hits] * weights.ravel()[topic], minlength=size).astype(np.float64, copy=False)
    count = np.bincount(doc, minlength=size)
    value *= 1 + MULTI_TOPIC_BONUS * (count - 1)  # several topics beat one
    authors = _authors(subscriber, pool)
    if authors:
        value[list(authors)] += AUTHOR_BOOST
    closest = None
    if liked:
        similarity, closest = pool.similar(liked)
        value += LIKED_BOOST * similarity  # 0 for papers like none of them
    if disliked:
        value *= np.maximum(0.0, 1.0 - DISLIKED_DAMPING * pool.similar(disliked)[0])
    return _Relevance(totals, weights, count, value, authors, closest)


def _totals(topics: list[_TopicMatches], size: int) -> Floats:
    """Topics x papers: each topic's keywords' scores added in keyword order, all topics in one bincount (it adds in
    input order); 0 where none matched, as scores are positive."""
    keywords = [scores for matches in topics for _, scores in matches.keywords]
    if not keywords:
        return np.zeros((len(topics), size))
    rows = np.repeat(np.arange(len(topics)) * size, [sum(len(scores.docs) for _, scores in matches.keywords) for matches in topics])
    slots = rows + np.concatenate([scores.docs for scores in keywords])
    weights = np.concatenate([scores.values for scores in keywords])
    return np.bincount(slots, weights=weights, minlength=len(topics) * size).reshape(len(topics), size)


def _authors(subscriber: Subscriber, pool: Pool) -> dict[int, str]:
    authors: dict[int, str] = {}
    for wanted in subscriber.authors:
        for doc, name in pool.by_author(name_key(wanted)):
            authors.setdefault(doc, name)
    return authors


def _banned(subscriber: Subscriber, pool: Pool, unwanted: set[str]) -> Flags | None:
    """Per paper, whether an excluded word or being unwanted (sent, liked, disliked) keeps it out; None: nothing does."""
    # Exclusions are exact words (and plurals): "review" must not drop "reviewer".
    excluded = [pool.docs_with(words, exact=True) for words in map(phrase, subscriber.exclude) if words]
    unwanted_docs = [pool.doc_of[entry_id] for entry_id in unwanted if entry_id in pool.doc_of]
    if not excluded and not unwanted_docs:
        return None
    banned = np.zeros(len(pool), np.bool_)
    for docs in excluded:
        banned[docs] = True
    banned[unwanted_docs] = True
    return banned


def _scores(subscriber: Subscriber, pool: Pool, relevance: Floats, docs: Docs, now: dt.datetime | None) -> Floats:
    """The papers' relevance plus the small boosts, which only reorder papers that are relevant already."""
    value = relevance[docs]
    if subscriber.categories:  # adding 0.0 to the others changes nothing
        category = np.zeros(len(pool))
        for name in subscriber.categories:
            category[pool.category_docs(name)] = CATEGORY_BOOST
        boosted = value + category[docs]
    else:
        boosted = value
    return np.where(value > 0, boosted * (1 + pool.priors(now)[docs]), 0.0)


def _category(subscriber: Subscriber, entry: Entry) -> str | None:
    return next((c for c in entry.categories if c in subscriber.categories), None)


def _groups(subscriber: Subscriber, relevance: _Relevance, docs: Docs) -> Docs:
    """Per doc, what diversity counts picks of: its strongest topic (by name), else "author", else "liked".

    Groups are numbered: each distinct topic name, then author, liked and none (see _named_groups).
    """
    names = tuple(topic.name for topic in subscriber.topics)
    groups = _named_groups(names)
    fallback: Docs | int = len(groups) - 1
    if relevance.closest is not None:
        fallback = np.where(relevance.closest[docs] >= 0, len(groups) - 2, fallback)
    if relevance.authors:
        is_author = np.zeros(len(relevance.value), np.bool_)
        is_author[list(relevance.authors)] = True
        fallback = np.where(is_author[docs], len(groups) - 3, fallback)
    if not names:
        return np.broadcast_to(fallback, docs.shape)
    totals = relevance.totals[::-1, docs]  # the topics last first: argmax gives a tie to the later topic
    weighted = relevance.weights[::-1] * totals
    if min(topic.weight for topic in subscriber.topics) <= _NEVER_UNDERFLOWS:
        weighted = np.where(totals > 0, weighted, -np.inf)  # else unmatched topics (0) never beat matched ones
    strongest = _topic_groups(names)[np.argmax(weighted, axis=0)]
    return np.where(relevance.count[docs] > 0, strongest, fallback)


@lru_cache(maxsize=4_096)
def _named_groups(topics: tuple[str, ...]) -> tuple[str, ...]:
    return (*dict.fromkeys(f"topic:{name}" for name in topics), "author", "liked", "")


@lru_cache(maxsize=4_096)
def _topic_groups(topics: tuple[str, ...]) -> Docs:
    """Each topic's group, the last topic first."""
    groups = _named_groups(topics)
    found = np.array([groups.index(f"topic:{name}") for name in reversed(topics)])
    found.flags.writeable = False  # shared by every call
    return found


def _explained(
    subscriber: Subscriber, pool: Pool, chosen: Docs, relevance: _Relevance, scores: list[float], topics: list[_TopicMatches],
    liked: Sequence[Entry],
) -> list[ScoredEntry]:
    """The picks with their full explanations, built only for what the reader will see; their columns fetched at once."""
    closest = relevance.closest[chosen].tolist() if relevance.closest is not None else [-1] * len(chosen)
    totals = relevance.totals[:, chosen]
    columns = zip(
        chosen.tolist(), (relevance.weights * totals).T.tolist(), (totals > 0).T.tolist(),
        closest, relevance.value[chosen].tolist(), scores,
    )
    return [
        _scored(
            subscriber, pool.entries[doc], [(value, index) for index, (value, hit) in enumerate(zip(weighted, matched)) if hit],
            relevance.authors.get(doc), liked[near] if near >= 0 else None, total > 0, score, topics, pool.highlights, doc,
        )
        for doc, weighted, matched, near, total, score in columns
    ]


def _scored(
    subscriber: Subscriber, entry: Entry, doc_hits: list[tuple[float, int]], author: str | None, closest: Entry | None,
    relevant: bool, score: float, topics: list[_TopicMatches], highlights: Callable[[int, list[str]], tuple[str, ...]], doc: int,
) -> ScoredEntry:
    """One pick's explanation: the strongest topic first, then the followed author, the liked paper, the category."""
    terms = [(topics[index].name, topics[index].terms(doc)) for _, index in sorted(doc_hits, reverse=True)]
    reasons = [Reason("topic", name, topic_terms) for name, topic_terms in terms]
    if author is not None:
        reasons.append(Reason("author", author))
    if closest is not None:
        reasons.append(Reason("liked", closest.title))
    category = _category(subscriber, entry) if relevant else None
    if category:
        reasons.append(Reason("category", category))
    keywords = [keyword for _, topic_terms in terms for keyword in topic_terms]
    return ScoredEntry(entry, round(score, 4), tuple(reasons), highlights(doc, keywords))


def _diversify(order: Docs, scores: Floats, groups: Docs, topics: list[_TopicMatches], *, limit: int, diversity: float) -> list[int]:
    """Picks (positions in ``order``, best first) where each earlier pick from the same group discounts a paper by (1 - diversity).

    Taking the best discounted paper again and again picks the papers with the highest key = score x (1 - diversity)^n,
    n the papers of its group before it: a group's keys only fall, so its papers come in its own order. Only each
    group's best ``limit`` papers can be picked. Equal keys go to the group met first (_first_met), as they always did.
    """
    small = groups.astype(np.int16) if len(topics) < 30_000 else groups  # few groups: a radix sort
    by_group = np.argsort(small, kind="stable")  # each group's positions, best first
    grouped = groups[by_group]
    sizes = np.bincount(grouped)
    before = np.arange(len(grouped)) - (np.cumsum(sizes) - sizes)[grouped]
    kept = before < limit
    positions, before = by_group[kept], before[kept]
    discount = 1 - diversity
    keys = scores[positions] * np.array([discount**taken for taken in range(limit)] or [1.0])[before]
    by_key = np.argsort(-keys, kind="stable")
    best = keys[by_key[: limit + 1]]
    if (best[1:] == best[:-1]).any():  # a tie decides a pick or its place: the slower pass that knows who came first
        met = {group: rank for rank, group in enumerate(_first_met(topics, dict(zip(order.tolist(), groups.tolist()))))}
        by_key = np.lexsort((positions, [met[group] for group in groups[positions].tolist()], -keys))
    return positions[by_key[:limit]].tolist()


def _first_met(topics: list[_TopicMatches], group_of: dict[int, int]) -> list[int]:
    """Groups in the order a paper-by-paper pass meets their candidates: keyword by keyword, then
    followed authors', then liked papers' (the numbers after the topics'). Equal discounted scores
    go to the group met first, as they always did; only then is this Python pass over matches paid.
    """
    met: dict[int, None] = {}
    for matches in topics:
        for _, scores in matches.keywords:
            for doc in scores.by_doc:
                if doc in group_of:
                    met.setdefault(group_of[doc])
    return [*met, *sorted(set(group_of.values()) - set(met))]
