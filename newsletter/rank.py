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

Per-entry work (tokenising, stemming, postings, lengths) happens once per
run in a ``Pool`` (pool.py); per subscriber only their keywords' postings are
visited, and each keyword's scores are cached across subscribers.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .models import Entry, Reason, ScoredEntry, Subscriber, Topic
from .pool import Pool, contains, name_key, phrase

MULTI_TOPIC_BONUS = 0.15  # per extra topic matched: several of the reader's topics beat one
AUTHOR_BOOST = 3.0
LIKED_BOOST = 4.0  # times cosine similarity to the closest liked paper
DISLIKED_DAMPING = 1.5  # relevance x (1 - this x cosine similarity to the closest "not for me" paper), floored at 0
CATEGORY_BOOST = 0.3  # mild, and only for papers already relevant


# --- ranking one subscriber -------------------------------------------------------------


@dataclass(frozen=True)
class RankSettings:
    min_score: float = 1.0  # relevance below this is not worth an email
    diversity: float = 0.3  # 0: pure score order; each further pick from the same topic counts (1 - diversity) as much
    now: dt.datetime | None = None  # for freshness; None: no recency prior


@dataclass(frozen=True)
class _TopicMatches:
    """One topic's keywords and, per keyword, doc -> score (shared across subscribers via the pool's cache)."""

    name: str
    keywords: tuple[tuple[str, dict[int, float]], ...]

    def terms(self, doc: int) -> tuple[str, ...]:
        return tuple(keyword for keyword, scores in self.keywords if doc in scores)


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
    hits = _topic_hits(subscriber, topics)
    relevance = {doc: _combined(doc_hits) for doc, doc_hits in hits.items()}
    extra: dict[int, list[Reason]] = defaultdict(list)  # followed author, liked paper
    _add_authors(subscriber, pool, relevance, extra)
    for doc, (entry, similarity) in pool.similar(liked).items() if liked else ():
        relevance[doc] = relevance.get(doc, 0.0) + LIKED_BOOST * similarity
        extra[doc].append(Reason("liked", entry.title))
    for doc, (_, similarity) in pool.similar(disliked).items() if disliked else ():
        if doc in relevance:
            relevance[doc] *= max(0.0, 1.0 - DISLIKED_DAMPING * similarity)
    unwanted = set(skip_ids) | set(subscriber.liked) | {entry.id for entry in (*liked, *disliked)}
    banned = _excluded(subscriber, pool) | {pool.doc_of[i] for i in unwanted if i in pool.doc_of}
    if include_below_threshold:
        relevance = {doc: relevance.get(doc, 0.0) for doc in range(len(pool))}
    threshold = 0.0 if include_below_threshold else max(settings.min_score, 1e-9)
    priors = pool.priors(settings.now)
    scores = {
        doc: _score(subscriber, pool.entries[doc], value, priors[doc])
        for doc, value in relevance.items()
        if value >= threshold and doc not in banned
    }
    limit = max_items if max_items is not None else subscriber.max_items
    if include_below_threshold or settings.diversity <= 0:
        chosen = sorted(scores, key=lambda doc: (-scores[doc], doc))[:limit]
    else:
        groups = {doc: _group(hits.get(doc), extra.get(doc), topics) for doc in scores}
        chosen = _diversify(scores, groups, limit=limit, diversity=settings.diversity)
    return [_scored(subscriber, pool, doc, hits.get(doc, []), extra.get(doc, []), relevance[doc], scores[doc], topics) for doc in chosen]


def _topic_matches(topic: Topic, pool: Pool) -> _TopicMatches:
    phrases = {keyword: phrase(keyword) for keyword in topic.keywords}
    matches = []
    for keyword, words in phrases.items():
        if words:
            # "language model" inside "large language model" is one mention, not two.
            longer = tuple(other for other in phrases.values() if len(other) > len(words) and contains(other, words))
            matches.append((keyword, pool.keyword_scores(keyword, words, longer)))
    return _TopicMatches(topic.name, tuple(matches))


def _topic_hits(subscriber: Subscriber, topics: list[_TopicMatches]) -> dict[int, list[tuple[float, int]]]:
    """doc -> [(weighted topic score, topic index)] for every paper matching any topic."""
    hits: dict[int, list[tuple[float, int]]] = {}
    for index, (topic, matches) in enumerate(zip(subscriber.topics, topics)):
        topic_scores: dict[int, float] = {}
        for _, scores in matches.keywords:
            for doc, value in scores.items():
                topic_scores[doc] = topic_scores.get(doc, 0.0) + value
        for doc, value in topic_scores.items():
            doc_hits = hits.get(doc)
            if doc_hits is None:
                hits[doc] = [(topic.weight * value, index)]
            else:
                doc_hits.append((topic.weight * value, index))
    return hits


def _combined(doc_hits: list[tuple[float, int]]) -> float:
    if len(doc_hits) == 1:
        return doc_hits[0][0]
    return sum(hit[0] for hit in doc_hits) * (1 + MULTI_TOPIC_BONUS * (len(doc_hits) - 1))  # several topics beat one


def _group(doc_hits: list[tuple[float, int]] | None, extra: list[Reason] | None, topics: list[_TopicMatches]) -> str:
    if doc_hits:
        return "topic:" + topics[max(doc_hits)[1]].name
    return extra[0].kind if extra else ""


def _add_authors(subscriber: Subscriber, pool: Pool, relevance: dict[int, float], extra: dict[int, list[Reason]]) -> None:
    for wanted in subscriber.authors:
        for doc, name in pool.by_author(name_key(wanted)):
            if any(reason.kind == "author" for reason in extra.get(doc, ())):
                continue
            relevance[doc] = relevance.get(doc, 0.0) + AUTHOR_BOOST
            extra[doc].append(Reason("author", name))


def _excluded(subscriber: Subscriber, pool: Pool) -> set[int]:
    banned: set[int] = set()
    for text in subscriber.exclude:  # exact words (and plurals): "review" must not drop "reviewer"
        banned.update(pool.counts(phrase(text), exact=True) if phrase(text) else ())
    return banned


def _score(subscriber: Subscriber, entry: Entry, relevance: float, prior: float) -> float:
    """Relevance plus the small boosts, which only reorder papers that are relevant already."""
    if relevance <= 0:
        return 0.0
    category = CATEGORY_BOOST if subscriber.categories and _category(subscriber, entry) else 0.0
    return (relevance + category) * (1 + prior)


def _category(subscriber: Subscriber, entry: Entry) -> str | None:
    return next((c for c in entry.categories if c in subscriber.categories), None)


def _scored(
    subscriber: Subscriber, pool: Pool, doc: int, doc_hits: list[tuple[float, int]], extra: list[Reason],
    relevance: float, score: float, topics: list[_TopicMatches],
) -> ScoredEntry:
    """The full explanation, built only for what the reader will see: the strongest topic first."""
    entry = pool.entries[doc]
    matched = [topics[index] for _, index in sorted(doc_hits, reverse=True)]
    reasons = [Reason("topic", matches.name, matches.terms(doc)) for matches in matched] + extra
    category = _category(subscriber, entry) if relevance > 0 else None
    if category:
        reasons.append(Reason("category", category))
    keywords = [keyword for matches in matched for keyword in matches.terms(doc)]
    return ScoredEntry(entry, round(score, 4), tuple(reasons), pool.highlights(doc, keywords))


def _diversify(scores: dict[int, float], groups: dict[int, str], *, limit: int, diversity: float) -> list[int]:
    """Greedy picks where each earlier pick from the same group discounts a paper by (1 - diversity).

    Only each group's best ``limit`` papers can ever be picked, so the rest are never looked at.
    """
    by_group: dict[str, list[int]] = defaultdict(list)
    for doc in scores:
        by_group[groups[doc]].append(doc)
    queues = {group: heapq.nsmallest(limit, docs, key=lambda doc: (-scores[doc], doc)) for group, docs in by_group.items()}
    picked: list[int] = []
    taken: Counter[str] = Counter()
    while len(picked) < limit and any(queues.values()):
        group = max((g for g in queues if queues[g]), key=lambda g: scores[queues[g][0]] * (1 - diversity) ** taken[g])
        picked.append(queues[group].pop(0))
        taken[group] += 1
    return picked
