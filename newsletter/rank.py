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
from dataclasses import dataclass, field

from .models import Entry, Reason, ScoredEntry, Subscriber, Topic
from .pool import Pool, contains, name_key, phrase

MULTI_TOPIC_BONUS = 0.15  # per extra topic matched: several of the reader's topics beat one
AUTHOR_BOOST = 3.0
LIKED_BOOST = 4.0  # times cosine similarity to the closest liked paper
CATEGORY_BOOST = 0.3  # mild, and only for papers already relevant


# --- ranking one subscriber -------------------------------------------------------------


@dataclass(frozen=True)
class RankSettings:
    min_score: float = 1.0  # relevance below this is not worth an email
    diversity: float = 0.3  # 0: pure score order; each further pick from the same topic counts (1 - diversity) as much
    now: dt.datetime | None = None  # for freshness; None: no recency prior


@dataclass
class _Candidate:
    relevance: float = 0.0
    topics: list[tuple[float, int]] = field(default_factory=list)  # (weighted score, topic index)
    extra: list[Reason] = field(default_factory=list)  # followed author, liked paper


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
    skip_ids: frozenset[str] | set[str] = frozenset(),
    include_below_threshold: bool = False,
) -> list[ScoredEntry]:
    """The subscriber's best candidates, best first, each with the reasons it was picked.

    ``skip_ids`` (already sent) and liked papers are never offered. With
    ``include_below_threshold`` every other candidate comes back, scored (for tuning).
    """
    pool = candidates if isinstance(candidates, Pool) else Pool(candidates)
    topics = [_topic_matches(topic, pool) for topic in subscriber.topics]
    found = _score_text(subscriber, topics)
    _add_authors(subscriber, pool, found)
    if liked:
        for doc, (entry, similarity) in pool.similar(liked).items():
            candidate = found.setdefault(doc, _Candidate())
            candidate.relevance += LIKED_BOOST * similarity
            candidate.extra.append(Reason("liked", entry.title))
    unwanted = set(skip_ids) | set(subscriber.liked) | {entry.id for entry in liked}
    banned = _excluded(subscriber, pool) | {pool.doc_of[i] for i in unwanted if i in pool.doc_of}
    if include_below_threshold:
        for doc in range(len(pool)):
            found.setdefault(doc, _Candidate())
    threshold = max(settings.min_score, 1e-9)
    priors = pool.priors(settings.now)
    scores = {
        doc: _score(subscriber, pool, doc, candidate, priors[doc])
        for doc, candidate in found.items()
        if doc not in banned and (include_below_threshold or candidate.relevance >= threshold)
    }
    limit = max_items if max_items is not None else subscriber.max_items
    if include_below_threshold or settings.diversity <= 0:
        chosen = sorted(scores, key=lambda doc: (-scores[doc], doc))[:limit]
    else:
        groups = {doc: _group(found[doc], topics) for doc in scores}
        chosen = _diversify(scores, groups, limit=limit, diversity=settings.diversity)
    return [_scored(subscriber, pool, doc, found[doc], scores[doc], topics) for doc in chosen]


def _topic_matches(topic: Topic, pool: Pool) -> _TopicMatches:
    phrases = {keyword: phrase(keyword) for keyword in topic.keywords}
    matches = []
    for keyword, words in phrases.items():
        if words:
            # "language model" inside "large language model" is one mention, not two.
            longer = tuple(other for other in phrases.values() if len(other) > len(words) and contains(other, words))
            matches.append((keyword, pool.keyword_scores(keyword, words, longer)))
    return _TopicMatches(topic.name, tuple(matches))


def _score_text(subscriber: Subscriber, topics: list[_TopicMatches]) -> dict[int, _Candidate]:
    found: dict[int, _Candidate] = {}
    for index, (topic, matches) in enumerate(zip(subscriber.topics, topics)):
        topic_scores: dict[int, float] = {}
        for _, scores in matches.keywords:
            for doc, value in scores.items():
                topic_scores[doc] = topic_scores.get(doc, 0.0) + value
        for doc, value in topic_scores.items():
            candidate = found.get(doc)
            if candidate is None:
                candidate = found[doc] = _Candidate()
            candidate.topics.append((topic.weight * value, index))
    for candidate in found.values():
        if len(candidate.topics) == 1:
            candidate.relevance = candidate.topics[0][0]
        else:  # several of the reader's topics beat one
            candidate.relevance = sum(hit[0] for hit in candidate.topics) * (1 + MULTI_TOPIC_BONUS * (len(candidate.topics) - 1))
    return found


def _group(candidate: _Candidate, topics: list[_TopicMatches]) -> str:
    if candidate.topics:
        return "topic:" + topics[max(candidate.topics)[1]].name
    return candidate.extra[0].kind if candidate.extra else ""


def _add_authors(subscriber: Subscriber, pool: Pool, found: dict[int, _Candidate]) -> None:
    for wanted in subscriber.authors:
        for doc, name in pool.by_author(name_key(wanted)):
            candidate = found.setdefault(doc, _Candidate())
            if any(reason.kind == "author" for reason in candidate.extra):
                continue
            candidate.relevance += AUTHOR_BOOST
            candidate.extra.append(Reason("author", name))


def _excluded(subscriber: Subscriber, pool: Pool) -> set[int]:
    banned: set[int] = set()
    for text in subscriber.exclude:  # exact words (and plurals): "review" must not drop "reviewer"
        banned.update(pool.counts(phrase(text), exact=True) if phrase(text) else ())
    return banned


def _score(subscriber: Subscriber, pool: Pool, doc: int, candidate: _Candidate, prior: float) -> float:
    """Relevance plus the small boosts, which only reorder papers that are relevant already."""
    if candidate.relevance <= 0:
        return 0.0
    category = CATEGORY_BOOST if subscriber.categories and _category(subscriber, pool.entries[doc]) else 0.0
    return (candidate.relevance + category) * (1 + prior)


def _category(subscriber: Subscriber, entry: Entry) -> str | None:
    return next((c for c in entry.categories if c in subscriber.categories), None)


def _scored(subscriber: Subscriber, pool: Pool, doc: int, candidate: _Candidate, score: float, topics: list[_TopicMatches]) -> ScoredEntry:
    """The full explanation, built only for what the reader will see: the strongest topic first."""
    entry = pool.entries[doc]
    hits = [topics[index] for _, index in sorted(candidate.topics, reverse=True)]
    reasons = [Reason("topic", matches.name, matches.terms(doc)) for matches in hits] + candidate.extra
    category = _category(subscriber, entry) if candidate.relevance > 0 else None
    if category:
        reasons.append(Reason("category", category))
    keywords = [keyword for matches in hits for keyword in matches.terms(doc)]
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
