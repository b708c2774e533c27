"""The ranking as it was before the fast path (commit c9703f9: newsletter/pool.py + newsletter/rank.py), frozen.

The oracle for tests/test_rank_equivalence.py and the "before" of bench/rank_speed.py: dict-based,
every candidate visited in Python for each subscriber. Kept verbatim (only the two modules
merged into one and the imports adjusted), so do not "fix" or speed it up: it defines the
results the fast path must reproduce.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from newsletter.models import CorpusStats, Entry, Reason, ScoredEntry, Subscriber, Topic

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
LIKED_MIN_SIMILARITY = 0.25
LIKED_QUERY_WORDS = 25
# Priors multiply a relevant paper's score by at most 1.1: tie-breakers, not a way in.
UPVOTE_PRIOR = 0.012  # times log1p(upvotes), capped
UPVOTE_PRIOR_CAP = 0.06
RECENCY_PRIOR = 0.04  # for a paper published now, falling to 0 at RECENCY_DAYS
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
        # stem -> doc -> (positions in the title, positions in the abstract): phrase counts visit only occurrences;
        # (stem, form) -> doc -> (count in title, count in abstract): one-word keywords need no positions at all.
        self._where: dict[str, dict[int, tuple[list[int], list[int]]]] = defaultdict(dict)
        self._form_counts: dict[str, dict[str, dict[int, list[int]]]] = defaultdict(lambda: defaultdict(dict))
        for doc, fields in enumerate(zip(zip(self._titles, self._title_forms), zip(self._bodies, self._body_forms))):
            for field_index, (stems, forms) in enumerate(fields):
                for position, (stem, form) in enumerate(zip(stems, forms)):
                    self._where[stem].setdefault(doc, ([], []))[field_index].append(position)
                    self._form_counts[stem][form].setdefault(doc, [0, 0])[field_index] += 1
        self._authors: dict[str, list[tuple[int, tuple[str, ...], str]]] = defaultdict(list)  # family -> (doc, given, name)
        for doc, entry in enumerate(self.entries):
            for name in entry.authors:
                given, family = name_key(name)
                self._authors[family].append((doc, given, name))
        self._phrase_cache: dict[tuple[Phrase, bool], dict[int, tuple[int, int]]] = {}
        self._similar_cache: dict[str, dict[int, float]] = {}
        self._idf_cache: dict[str, float] = {}
        self._score_cache: dict[tuple[str, Phrase, tuple[Phrase, ...]], dict[int, float]] = {}
        self._surface_cache: dict[tuple[int, str], tuple[str, ...]] = {}
        self._prior_cache: dict[dt.datetime | None, list[float]] = {}
        self._vectors: list[dict[str, float]] | None = None
        self._vector_norms: list[float] = []
        self._vector_idf: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self, words: Phrase, *, exact: bool = False) -> dict[int, tuple[int, int]]:
        """doc -> (occurrences in the title, in the abstract) of the phrase; cached across subscribers.

        ``exact``: each text word must be the keyword word or its plural, not any word extending it.
        """
        key = (words, exact)
        cached = self._phrase_cache.get(key)
        if cached is not None:
            return cached
        found: dict[int, tuple[int, int]] = {}
        if len(words) == 1:
            stem, form = words[0]
            for text_form, per_doc in self._form_counts.get(stem, {}).items():
                if text_form == form or (not exact and text_form.startswith(form)):
                    for doc, (in_title, in_body) in per_doc.items():
                        before = found.get(doc, (0, 0))
                        found[doc] = (before[0] + in_title, before[1] + in_body)
        elif words:
            # Anchor on the rarest word of the phrase, and only in papers that have every word.
            postings = [self._where.get(stem, {}) for stem, _ in words]
            anchor = min(range(len(words)), key=lambda index: len(postings[index]))
            docs = set(postings[anchor]).intersection(*postings) if all(postings) else set()
            fields = ((self._titles, self._title_forms), (self._bodies, self._body_forms))
            for doc in docs:
                hits = [
                    sum(1 for at in positions if at >= anchor and _matches_at(stems[doc], forms[doc], at - anchor, words, exact))
                    for positions, (stems, forms) in zip(postings[anchor][doc], fields)
                ]
                if hits[0] or hits[1]:
                    found[doc] = (hits[0], hits[1])
        self._phrase_cache[key] = found
        return found

    def keyword_scores(self, keyword: str, words: Phrase, longer: tuple[Phrase, ...] = ()) -> dict[int, float]:
        """doc -> idf x BM25 tf part for one keyword, minus mentions inside the ``longer`` keywords; cached."""
        key = (keyword, words, longer)
        cached = self._score_cache.get(key)
        if cached is not None:
            return cached
        idf = self.idf(keyword, words)
        covering = [self.counts(other) for other in longer]
        scores = {}
        for doc, (in_title, in_body) in self.counts(words).items():
            for counts in covering:
                covered = counts.get(doc, (0, 0))
                in_title, in_body = max(in_title - covered[0], 0), max(in_body - covered[1], 0)
            if in_title or in_body:
                scores[doc] = idf * self.saturated(doc, in_title, in_body)
        self._score_cache[key] = scores
        return scores

    def priors(self, now: dt.datetime | None) -> list[float]:
        """Per paper, upvotes and freshness: the same for every subscriber, so computed once per run."""
        minute = now.replace(second=0, microsecond=0) if now is not None else None
        priors = self._prior_cache.get(minute)
        if priors is None:
            priors = self._prior_cache[minute] = [_prior(entry, minute) for entry in self.entries]
        return priors

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

    def by_author(self, wanted: tuple[tuple[str, ...], str]) -> list[tuple[int, str]]:
        return [(doc, name) for doc, given, name in self._authors.get(wanted[1], []) if _given_names_agree(given, wanted[0])]

    def similar(self, liked: Sequence[Entry]) -> dict[int, tuple[Entry, float]]:
        """doc -> (closest liked paper, tf-idf cosine) for docs at least LIKED_MIN_SIMILARITY alike."""
        found: dict[int, tuple[Entry, float]] = {}
        for entry in liked:
            for doc, similarity in self._similar_to(entry).items():
                if similarity >= LIKED_MIN_SIMILARITY and similarity > found.get(doc, (entry, 0.0))[1]:
                    found[doc] = (entry, similarity)
        return found

    def _similar_to(self, liked: Entry) -> dict[int, float]:
        """Cosine of every paper sharing a telling word with ``liked``, through the postings; cached per liked paper."""
        cached = self._similar_cache.get(liked.id)
        if cached is not None:
            return cached
        vectors = self._doc_vectors()
        query = _tfidf(tuple(w for w in tokens(f"{liked.title} {liked.summary}") if w in self._vector_idf), self._vector_idf)
        query_norm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        dots: dict[int, float] = defaultdict(float)
        # Like Lucene's MoreLikeThis, only the paper's most telling words are looked up.
        for word, weight in heapq.nlargest(LIKED_QUERY_WORDS, query.items(), key=lambda item: item[1]):
            for doc in self._where.get(word, {}):
                dots[doc] += weight * vectors[doc][word]
        cached = self._similar_cache[liked.id] = {
            doc: dot / (query_norm * (self._vector_norms[doc] or 1.0)) for doc, dot in dots.items()
        }
        return cached

    def _doc_vectors(self) -> list[dict[str, float]]:
        """tf-idf vectors over the telling words: those in at most a quarter of the papers (not "the", "model")."""
        if self._vectors is None:
            n = len(self.entries)
            common = max(10, n // 4)
            self._vector_idf = {
                word: math.log((1 + n) / (1 + len(docs))) + 1 for word, docs in self._where.items() if len(docs) <= common
            }
            self._vectors = [
                _tfidf(tuple(w for w in t + b if w in self._vector_idf), self._vector_idf) for t, b in zip(self._titles, self._bodies)
            ]
            self._vector_norms = [math.sqrt(sum(v * v for v in vector.values())) for vector in self._vectors]
        return self._vectors

    def highlights(self, doc: int, keywords: Iterable[str]) -> tuple[str, ...]:
        """The exact words of title and abstract that matched, as the reader will see them."""
        found: dict[str, str] = {}
        for keyword in keywords:
            for surface in self._surfaces(doc, keyword):
                found.setdefault(surface.casefold(), surface)
        return tuple(found.values())

    def _surfaces(self, doc: int, keyword: str) -> tuple[str, ...]:
        """Where one keyword occurs in one paper, as written there; cached (popular papers recur)."""
        key = (doc, keyword)
        cached = self._surface_cache.get(key)
        if cached is None:
            entry, words = self.entries[doc], phrase(keyword)
            surfaces = []
            fields = ((entry.title, self._titles[doc], self._title_forms[doc]), (entry.summary, self._bodies[doc], self._body_forms[doc]))
            for text, stems, forms in fields:
                starts = _positions(stems, forms, words)
                if starts:
                    spans = _spans(text)
                    surfaces += [text[spans[start][0] : spans[start + len(words) - 1][1]] for start in starts]
            cached = self._surface_cache[key] = tuple(surfaces)
        return cached


def _prior(entry: Entry, now: dt.datetime | None) -> float:
    prior = min(UPVOTE_PRIOR_CAP, UPVOTE_PRIOR * math.log1p(entry.upvotes)) if entry.upvotes else 0.0
    published = entry.published or entry.first_seen
    if now is not None and published is not None:
        age_days = max(0.0, (now - published).total_seconds() / 86400)
        prior += RECENCY_PRIOR * max(0.0, 1 - age_days / RECENCY_DAYS)
    return prior


def _matches_at(stems: tuple[str, ...], forms: tuple[str, ...], start: int, words: Phrase, exact: bool) -> bool:
    """The phrase at ``start``: every stem equal, and each text word extending (or, exact, equal to) the keyword word."""
    if start + len(words) > len(stems):
        return False
    for offset, (stem, form) in enumerate(words):
        if stems[start + offset] != stem:
            return False
        text_form = forms[start + offset]
        if not (text_form == form if exact else text_form.startswith(form)):
            return False
    return True


def _positions(stems: tuple[str, ...], forms: tuple[str, ...], words: Phrase) -> list[int]:
    """Where the phrase starts in one field."""
    if not words:
        return []
    return [i for i in range(len(stems)) if stems[i] == words[0][0] and _matches_at(stems, forms, i, words, False)]


def contains(longer: Phrase, shorter: Phrase) -> bool:
    return bool(_positions(tuple(stem for stem, _ in longer), tuple(form for _, form in longer), shorter))


# --- authors --------------------------------------------------------------------------------


def name_key(name: str) -> tuple[tuple[str, ...], str]:
    """(given names, family name), accent- and case-folded: "G. E. Hinton" -> (("g", "e"), "hinton")."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    if "," in plain:  # "Hinton, Geoffrey"
        family, _, given = plain.partition(",")
        plain = f"{given} {family}"
    parts = [p for p in re.split(r"[\s.]+", plain) if p]
    if not parts:
        return ((), "")
    return (tuple(parts[:-1]), parts[-1])


def _given_names_agree(found: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """"G. Hinton" ~ "Geoffrey Hinton"; not "Gareth Hinton", nor "Wen Zhang" for "Wei Zhang"."""
    if not found or not wanted:
        return True
    first_found, first_wanted = found[0], wanted[0]
    if len(first_found) > 1 and len(first_wanted) > 1:  # two full first names must be the same name
        return first_found == first_wanted
    return first_found[0] == first_wanted[0]


# --- "more like this" -----------------------------------------------------------------------


def _tfidf(words: tuple[str, ...], idf: dict[str, float]) -> dict[str, float]:
    return {word: count * idf.get(word, 1.0) for word, count in Counter(words).items()}


MULTI_TOPIC_BONUS = 0.15  # per extra topic matched: several of the reader's topics beat one
AUTHOR_BOOST = 3.0
LIKED_BOOST = 4.0  # times cosine similarity to the closest liked paper
DISLIKED_DAMPING = 1.5  # relevance x (1 - this x cosine similarity to the closest "not for me" paper), floored at 0
CATEGORY_BOOST = 0.3  # mild, and only for papers already relevant


# --- ranking one subscriber (was newsletter/rank.py) -------------------------------------------------------------


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
