"""Score a subscriber's candidates against their preferences; pure computation, no I/O.

Text relevance is BM25 over stemmed words (snowball English): each keyword is
matched as a whole-word phrase ("RAG" never matches "storage"; "teacher-student"
equals "teacher student"), a title match counts twice an abstract match, IDF
comes from every stored entry (the FTS index counts them) when the pipeline
passes it. Topic weights scale it; a paper on several topics gets a bonus;
followed authors and liked papers add explained relevance; categories,
upvotes and freshness are small boosts that only reorder papers that are
already relevant. A threshold keeps quiet days short, and a diversity
setting keeps one topic from filling the whole digest.

Per-entry work (tokenising, stemming, postings, lengths) happens once per
run in a ``Pool``; per subscriber only their keywords' postings are visited,
and each phrase's matches are cached across subscribers.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import snowballstemmer

from .models import CorpusStats, Entry, Reason, ScoredEntry, Subscriber

# A reader's keywords all name their topic, so a paper that keeps coming back to one of them is
# about it: saturation is gentler than web search's (k1 at the top of BM25's usual 1.2-2.0) and
# IDF is damped (square root), so one mention of a rare keyword does not outrank a paper built
# around a common one. bench/ranking_eval.py shows the effect of each choice on labelled papers.
K1 = 2.0
B = 0.75
TITLE_WEIGHT = 3.0  # a term in the title says more about the paper than one in the abstract
IDF_EXPONENT = 0.5
# A keyword in most papers still means the paper is on the reader's topic (a narrow feed):
# it weighs less than a rare one, but a title match alone still clears the default threshold.
IDF_FLOOR = 0.6
MULTI_TOPIC_BONUS = 0.15  # per extra topic matched: several of the reader's topics beat one
AUTHOR_BOOST = 3.0
LIKED_BOOST = 4.0  # times cosine similarity to the closest liked paper
LIKED_MIN_SIMILARITY = 0.25
CATEGORY_BOOST = 0.3  # mild, and only for papers already relevant
UPVOTE_PRIOR = 0.08  # times log1p(upvotes), capped: a tie-breaker among relevant papers
UPVOTE_PRIOR_CAP = 0.4
RECENCY_PRIOR = 0.2  # for a paper published now, falling to 0 at RECENCY_DAYS
RECENCY_DAYS = 7.0

_STEMMER = snowballstemmer.stemmer("english")
_WORD = re.compile(r"[^\W_]+")


_ACRONYM_PLURAL = re.compile(r"[A-Z][A-Z0-9]+s")

Phrase = tuple[tuple[str, str], ...]  # per word: (stem, the singular form a text word must start with)


@lru_cache(maxsize=200_000)
def _word(word: str) -> tuple[str, str]:
    """(stem, singular folded form) of one word: "Distillations" -> ("distil", "distillation")."""
    if _ACRONYM_PLURAL.fullmatch(word):  # "LLMs", "GNNs": snowball keeps the s of an unknown word
        word = word[:-1]
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _STEMMER.stemWord(folded), _singular(folded)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> tuple[str, ...]:
    """Lower-cased, accent-folded, stemmed words; hyphens and punctuation split words."""
    return tuple(_word(word)[0] for word in _WORD.findall(text))


def phrase(keyword: str) -> Phrase:
    """A keyword as the pool matches it: each word by stem, and only by text words that extend it.

    "distill" matches "distillation" and "Distilling"; "networking" does not match "network"
    and "prompting" not "prompts", though each pair shares a stem; plurals always match.
    """
    return tuple(_word(word) for word in _WORD.findall(keyword))


def _forms(text: str) -> tuple[str, ...]:
    return tuple(_word(word)[1] for word in _WORD.findall(text))


def _spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WORD.finditer(text)]


# --- the pool: per-entry work, once per run -----------------------------------------


class Pool:
    """Candidates analysed once: stemmed title and abstract, postings, lengths, authors."""

    def __init__(self, entries: Sequence[Entry], *, corpus: CorpusStats | None = None) -> None:
        self.entries = list(entries)
        self.corpus = corpus
        self.doc_of = {entry.id: doc for doc, entry in enumerate(self.entries)}
        self._titles = [tokens(entry.title) for entry in self.entries]
        self._bodies = [tokens(entry.summary) for entry in self.entries]
        self._title_forms = [_forms(entry.title) for entry in self.entries]
        self._body_forms = [_forms(entry.summary) for entry in self.entries]
        lengths = [len(body) for body in self._bodies]
        average = (sum(lengths) / len(lengths)) if lengths else 1.0
        self._norms = [K1 * (1 - B + B * length / (average or 1.0)) for length in lengths]
        self._postings: dict[str, set[int]] = defaultdict(set)
        for doc, words in enumerate(zip(self._titles, self._bodies)):
            for word in {*words[0], *words[1]}:
                self._postings[word].add(doc)
        self._authors: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # family -> (doc, initials, name)
        for doc, entry in enumerate(self.entries):
            for name in entry.authors:
                initials, family = name_key(name)
                self._authors[family].append((doc, initials, name))
        self._phrase_cache: dict[Phrase, dict[int, tuple[int, int]]] = {}
        self._idf_cache: dict[str, float] = {}
        self._vectors: list[dict[str, float]] | None = None
        self._vector_idf: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self, words: Phrase) -> dict[int, tuple[int, int]]:
        """doc -> (occurrences in the title, in the abstract) of the phrase; cached across subscribers."""
        cached = self._phrase_cache.get(words)
        if cached is not None:
            return cached
        docs = set.intersection(*(self._postings.get(stem, set()) for stem, _ in words)) if words else set()
        found = {}
        for doc in docs:
            in_title = len(_positions(self._titles[doc], self._title_forms[doc], words))
            in_body = len(_positions(self._bodies[doc], self._body_forms[doc], words))
            if in_title or in_body:
                found[doc] = (in_title, in_body)
        self._phrase_cache[words] = found
        return found

    def saturated(self, doc: int, in_title: int, in_body: int) -> float:
        """BM25's term-frequency part, a title occurrence weighing TITLE_WEIGHT abstract ones."""
        tf = TITLE_WEIGHT * in_title + in_body
        return tf * (K1 + 1) / (tf + self._norms[doc]) if tf > 0 else 0.0

    def idf(self, keyword: str, words: Phrase) -> float:
        cached = self._idf_cache.get(keyword)
        if cached is None:
            n, df = len(self.entries), len(self.counts(words))
            if self.corpus is not None and keyword in self.corpus.document_frequency:
                # The store's stemmer (porter) differs slightly from ours (snowball): never count below the pool.
                n, df = max(self.corpus.size, n), max(self.corpus.document_frequency[keyword], df)
            raw = math.log(1 + (n - df + 0.5) / (df + 0.5))
            cached = self._idf_cache[keyword] = max(IDF_FLOOR, raw**IDF_EXPONENT)
        return cached

    def by_author(self, wanted: tuple[str, str]) -> list[tuple[int, str]]:
        return [(doc, name) for doc, initials, name in self._authors.get(wanted[1], []) if _initials_agree(initials, wanted[0])]

    def similar(self, liked: Sequence[Entry]) -> dict[int, tuple[Entry, float]]:
        """doc -> (closest liked paper, tf-idf cosine) for docs at least LIKED_MIN_SIMILARITY alike."""
        vectors = self._doc_vectors()
        liked_vectors = [(entry, _tfidf(tokens(f"{entry.title} {entry.summary}"), self._vector_idf)) for entry in liked]
        found = {}
        for doc, vector in enumerate(vectors):
            entry, similarity = max(((e, _cosine(vector, v)) for e, v in liked_vectors), key=lambda pair: pair[1])
            if similarity >= LIKED_MIN_SIMILARITY:
                found[doc] = (entry, similarity)
        return found

    def _doc_vectors(self) -> list[dict[str, float]]:
        if self._vectors is None:
            n = len(self.entries)
            self._vector_idf = {word: math.log((1 + n) / (1 + len(docs))) + 1 for word, docs in self._postings.items()}
            self._vectors = [_tfidf(t + b, self._vector_idf) for t, b in zip(self._titles, self._bodies)]
        return self._vectors

    def highlights(self, doc: int, keywords: Iterable[str]) -> tuple[str, ...]:
        """The exact words of title and abstract that matched, as the reader will see them."""
        entry = self.entries[doc]
        found: dict[str, str] = {}
        fields = ((entry.title, self._titles[doc], self._title_forms[doc]), (entry.summary, self._bodies[doc], self._body_forms[doc]))
        for text, stems, forms in fields:
            spans = _spans(text)
            for keyword in keywords:
                words = phrase(keyword)
                for start in _positions(stems, forms, words):
                    surface = text[spans[start][0] : spans[start + len(words) - 1][1]]
                    found.setdefault(surface.casefold(), surface)
        return tuple(found.values())


def _positions(stems: tuple[str, ...], forms: tuple[str, ...], words: Phrase) -> list[int]:
    """Where the phrase starts: every word's stem equal, and the text word extending the keyword word."""
    size = len(words)
    if not size:
        return []
    first = words[0][0]
    return [
        i for i in range(len(stems) - size + 1)
        if stems[i] == first and all(stems[i + j] == stem and forms[i + j].startswith(form) for j, (stem, form) in enumerate(words))
    ]


def _contains(longer: Phrase, shorter: Phrase) -> bool:
    return bool(_positions(tuple(stem for stem, _ in longer), tuple(form for _, form in longer), shorter))


# --- ranking one subscriber -------------------------------------------------------------


@dataclass(frozen=True)
class RankSettings:
    min_score: float = 1.0  # relevance below this is not worth an email
    diversity: float = 0.3  # 0: pure score order; each further pick from the same topic counts (1 - diversity) as much
    now: dt.datetime | None = None  # for freshness; None: no recency prior


@dataclass
class _Candidate:
    relevance: float = 0.0
    topics: list[tuple[float, Reason]] | None = None
    extra: list[Reason] | None = None
    keywords: list[str] | None = None


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
    found = _score_text(subscriber, pool)
    _add_authors(subscriber, pool, found)
    if liked:
        for doc, (entry, similarity) in pool.similar(liked).items():
            candidate = found.setdefault(doc, _Candidate())
            candidate.relevance += LIKED_BOOST * similarity
            candidate.extra = (candidate.extra or []) + [Reason("liked", entry.title)]
    unwanted = set(skip_ids) | set(subscriber.liked) | {entry.id for entry in liked}
    banned = _excluded(subscriber, pool) | {pool.doc_of[i] for i in unwanted if i in pool.doc_of}
    if include_below_threshold:
        for doc in range(len(pool)):
            found.setdefault(doc, _Candidate())
    scored = [
        _finish(subscriber, pool, doc, candidate, settings)
        for doc, candidate in found.items()
        if doc not in banned and (include_below_threshold or candidate.relevance >= max(settings.min_score, 1e-9))
    ]
    scored.sort(key=lambda item: (-item.score, item.entry.id))
    limit = max_items if max_items is not None else subscriber.max_items
    picked = scored[:limit] if include_below_threshold else _diversify(scored, limit=limit, diversity=settings.diversity)
    # Highlights are worth computing only for what the reader will see.
    return [
        replace(item, highlights=pool.highlights(pool.doc_of[item.entry.id], found[pool.doc_of[item.entry.id]].keywords or []))
        for item in picked
    ]


def _score_text(subscriber: Subscriber, pool: Pool) -> dict[int, _Candidate]:
    found: dict[int, _Candidate] = {}
    for topic in subscriber.topics:
        topic_scores: dict[int, float] = defaultdict(float)
        terms: dict[int, list[str]] = defaultdict(list)
        phrases = {keyword: phrase(keyword) for keyword in topic.keywords}
        for keyword, words in phrases.items():
            if not words:
                continue
            idf = pool.idf(keyword, words)
            # "language model" inside "large language model" is one mention, not two.
            longer = [pool.counts(other) for other in phrases.values() if len(other) > len(words) and _contains(other, words)]
            for doc, (in_title, in_body) in pool.counts(words).items():
                for counts in longer:
                    covered = counts.get(doc, (0, 0))
                    in_title, in_body = max(in_title - covered[0], 0), max(in_body - covered[1], 0)
                if in_title or in_body:
                    topic_scores[doc] += idf * pool.saturated(doc, in_title, in_body)
                    terms[doc].append(keyword)
        for doc, value in topic_scores.items():
            candidate = found.setdefault(doc, _Candidate(topics=[], keywords=[]))
            candidate.topics = (candidate.topics or []) + [(topic.weight * value, Reason("topic", topic.name, tuple(terms[doc])))]
            candidate.keywords = (candidate.keywords or []) + terms[doc]
    for candidate in found.values():
        topics = candidate.topics or []
        candidate.topics = sorted(topics, key=lambda pair: -pair[0])  # the strongest topic first: it groups the paper
        candidate.relevance = sum(value for value, _ in topics) * (1 + MULTI_TOPIC_BONUS * (len(topics) - 1))
    return found


def _add_authors(subscriber: Subscriber, pool: Pool, found: dict[int, _Candidate]) -> None:
    for wanted in subscriber.authors:
        for doc, name in pool.by_author(name_key(wanted)):
            candidate = found.setdefault(doc, _Candidate())
            if any(reason.kind == "author" for reason in candidate.extra or []):
                continue
            candidate.relevance += AUTHOR_BOOST
            candidate.extra = (candidate.extra or []) + [Reason("author", name)]


def _excluded(subscriber: Subscriber, pool: Pool) -> set[int]:
    banned: set[int] = set()
    for text in subscriber.exclude:
        banned.update(pool.counts(phrase(text)) if phrase(text) else ())
    return banned


def _finish(subscriber: Subscriber, pool: Pool, doc: int, candidate: _Candidate, settings: RankSettings) -> ScoredEntry:
    entry = pool.entries[doc]
    reasons = [reason for _, reason in candidate.topics or []] + list(candidate.extra or [])
    score = candidate.relevance
    if candidate.relevance > 0:  # boosts and priors only reorder papers that are relevant already
        category = next((c for c in entry.categories if c in subscriber.categories), None)
        if category:
            score += CATEGORY_BOOST
            reasons.append(Reason("category", category))
        score += _priors(entry, settings.now)
    return ScoredEntry(entry, round(score, 4), tuple(reasons))


def _priors(entry: Entry, now: dt.datetime | None) -> float:
    prior = min(UPVOTE_PRIOR_CAP, UPVOTE_PRIOR * math.log1p(entry.upvotes)) if entry.upvotes else 0.0
    published = entry.published or entry.first_seen
    if now is not None and published is not None:
        age_days = max(0.0, (now - published).total_seconds() / 86400)
        prior += RECENCY_PRIOR * max(0.0, 1 - age_days / RECENCY_DAYS)
    return prior


def _diversify(scored: list[ScoredEntry], *, limit: int, diversity: float) -> list[ScoredEntry]:
    """Greedy picks where each earlier pick from the same group discounts a paper by (1 - diversity)."""
    if diversity <= 0:
        return scored[:limit]
    picked: list[ScoredEntry] = []
    per_group: Counter[str] = Counter()
    remaining = list(scored)
    while remaining and len(picked) < limit:
        best = max(remaining, key=lambda item: item.score * (1 - diversity) ** per_group[_group(item)])
        remaining.remove(best)
        picked.append(best)
        per_group[_group(best)] += 1
    return picked


def _group(item: ScoredEntry) -> str:
    return item.reasons[0].kind + ":" + item.reasons[0].label if item.reasons else ""


# --- authors --------------------------------------------------------------------------------


def name_key(name: str) -> tuple[str, str]:
    """(given names' initials, family name), accent- and case-folded: "G. E. Hinton" -> ("ge", "hinton")."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    if "," in plain:  # "Hinton, Geoffrey"
        family, _, given = plain.partition(",")
        plain = f"{given} {family}"
    parts = [p for p in re.split(r"[\s.]+", plain) if p]
    if not parts:
        return ("", "")
    return ("".join(p[0] for p in parts[:-1]), parts[-1])


def _initials_agree(found: str, wanted: str) -> bool:
    """Same first initial when both are known ("G. Hinton" ~ "Geoffrey Hinton", not "A. Hinton")."""
    return not found or not wanted or found[0] == wanted[0]


# --- "more like this" -----------------------------------------------------------------------


def _tfidf(words: tuple[str, ...], idf: dict[str, float]) -> dict[str, float]:
    return {word: count * idf.get(word, 1.0) for word, count in Counter(words).items()}


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(value * b.get(word, 0.0) for word, value in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0

