"""Score a subscriber's candidates against their preferences; pure computation, no I/O.

Text relevance is BM25 over stemmed tokens (snowball English), title matches
counting more than abstract matches, each keyword matched as a whole-word
phrase ("RAG" never matches "storage"; "teacher-student" equals "teacher
student"). Topic weights scale it; followed authors, categories, liked
papers and upvotes add smaller, explained boosts. ``min_score`` keeps a quiet
day short instead of padding it with unrelated papers.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from .models import CorpusStats, Entry, Reason, ScoredEntry, Subscriber

K1 = 1.2
B = 0.75
TITLE_WEIGHT = 2.0  # a term in the title says more about the paper than one in the abstract
AUTHOR_BOOST = 3.0
CATEGORY_BOOST = 0.3  # mild: never enough on its own (it needs text relevance first)
LIKED_BOOST = 3.0  # times cosine similarity to the closest liked paper
LIKED_MIN_SIMILARITY = 0.2
UPVOTE_PRIOR = 0.1  # times log1p(upvotes): breaks ties among relevant papers only
# A keyword in most papers still means the paper is on the reader's topic (a narrow feed):
# it weighs less than a rare one, but a title match alone still clears the default threshold.
IDF_FLOOR = 1.0

_STEMMER = snowballstemmer.stemmer("english")
_WORD = re.compile(r"[^\W_]+")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def tokens(text: str) -> tuple[str, ...]:
    """Lower-cased, accent-folded, stemmed words; hyphens and punctuation split words."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    return tuple(_stem(word) for word in _WORD.findall("".join(c for c in folded if not unicodedata.combining(c))))


@dataclass(frozen=True)
class _Doc:
    entry: Entry
    title: tuple[str, ...]
    body: tuple[str, ...]


def rank(
    subscriber: Subscriber,
    candidates: Sequence[Entry],
    *,
    max_items: int | None = None,
    min_score: float = 1.0,
    liked: Sequence[Entry] = (),
    corpus: CorpusStats | None = None,
) -> list[ScoredEntry]:
    """The subscriber's best candidates, best first, each with the reasons it was picked.

    IDF comes from ``corpus`` (every stored entry) when given, else from the candidates.
    """
    docs = [_Doc(entry, tokens(entry.title), tokens(entry.summary)) for entry in candidates]
    if not docs:
        return []
    phrases = {kw: tokens(kw) for topic in subscriber.topics for kw in topic.keywords}
    idf = _idf(docs, {kw: p for kw, p in phrases.items() if p}, corpus)
    avg_body = sum(len(doc.body) for doc in docs) / len(docs) or 1.0
    excluded = [tokens(phrase) for phrase in subscriber.exclude]
    followed = [_name_key(name) for name in subscriber.authors]
    liked_model = _liked_model(liked, docs)
    liked_ids = {entry.id for entry in liked} | set(subscriber.liked)
    scored: list[ScoredEntry] = []
    for doc in docs:
        if doc.entry.id in liked_ids or any(_contains(doc.title, p) or _contains(doc.body, p) for p in excluded if p):
            continue
        score, reasons = _text_score(subscriber, doc, phrases, idf, avg_body)
        score, reasons = _boosts(subscriber, doc, score, reasons, followed, liked_model)
        if score >= min_score and reasons:
            scored.append(ScoredEntry(doc.entry, round(score, 4), tuple(reasons)))
    scored.sort(key=lambda item: (-item.score, item.entry.id))
    return scored[: max_items if max_items is not None else subscriber.max_items]


def _text_score(
    subscriber: Subscriber, doc: _Doc, phrases: dict[str, tuple[str, ...]], idf: dict[str, float], avg_body: float
) -> tuple[float, list[Reason]]:
    norm = K1 * (1 - B + B * len(doc.body) / avg_body)
    total = 0.0
    reasons: list[Reason] = []
    for topic in subscriber.topics:
        topic_score = 0.0
        matched: list[str] = []
        for keyword in topic.keywords:
            phrase = phrases[keyword]
            if not phrase:
                continue
            tf = TITLE_WEIGHT * _count(doc.title, phrase) + _count(doc.body, phrase)
            if tf:
                topic_score += idf[keyword] * tf * (K1 + 1) / (tf + norm)
                matched.append(keyword)
        if matched:
            total += topic.weight * topic_score
            reasons.append(Reason("topic", topic.name, tuple(matched)))
    # A paper that speaks to several of the reader's topics beats one that speaks to one equally well.
    if len(reasons) > 1:
        total *= 1 + 0.15 * (len(reasons) - 1)
    return total, reasons


def _boosts(
    subscriber: Subscriber, doc: _Doc, score: float, reasons: list[Reason],
    followed: list[tuple[str, str]], liked_model: _LikedModel | None,
) -> tuple[float, list[Reason]]:
    relevant = score > 0
    for author in doc.entry.authors:
        key = _name_key(author)
        if any(_same_person(key, wanted) for wanted in followed):
            score += AUTHOR_BOOST
            reasons.append(Reason("author", author))
            relevant = True
            break
    if liked_model:
        closest, similarity = liked_model.closest(doc.title + doc.body)
        if similarity >= LIKED_MIN_SIMILARITY:
            score += LIKED_BOOST * similarity
            reasons.append(Reason("liked", closest.title))
            relevant = True
    if not relevant:
        return 0.0, []
    for category in doc.entry.categories:
        if category in subscriber.categories:
            score += CATEGORY_BOOST
            reasons.append(Reason("category", category))
            break
    if doc.entry.upvotes:
        score += UPVOTE_PRIOR * math.log1p(doc.entry.upvotes)
    return score, reasons


def _idf(docs: list[_Doc], phrases: dict[str, tuple[str, ...]], corpus: CorpusStats | None) -> dict[str, float]:
    idf = {}
    for keyword, phrase in phrases.items():
        n, df = len(docs), sum(1 for doc in docs if _contains(doc.title, phrase) or _contains(doc.body, phrase))
        if corpus is not None and keyword in corpus.document_frequency:
            # The store's stemmer (porter) differs slightly from ours (snowball): never count below the pool.
            n, df = max(corpus.size, n), max(corpus.document_frequency[keyword], df)
        idf[keyword] = max(IDF_FLOOR, math.log(1 + (n - df + 0.5) / (df + 0.5)))
    return idf


def _count(words: tuple[str, ...], phrase: tuple[str, ...]) -> int:
    if len(phrase) == 1:
        return words.count(phrase[0])
    size = len(phrase)
    return sum(1 for i in range(len(words) - size + 1) if words[i] == phrase[0] and words[i : i + size] == phrase)


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    return _count(words, phrase) > 0


# --- authors ----------------------------------------------------------------


def _name_key(name: str) -> tuple[str, str]:
    """(given names' initials, family name), accent- and case-folded: "G. E. Hinton" -> ("ge", "hinton")."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    parts = [p for p in re.split(r"[\s.]+", "".join(c for c in folded if not unicodedata.combining(c))) if p]
    if "," in name and len(parts) > 1:  # "Hinton, Geoffrey"
        parts = parts[1:] + [parts[0].rstrip(",")]
    if not parts:
        return ("", "")
    return ("".join(p[0] for p in parts[:-1]), parts[-1].strip(","))


def _same_person(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Same family name, and the initials agree as far as both are given."""
    if not a[1] or a[1] != b[1]:
        return False
    if not a[0] or not b[0]:
        return True
    return a[0][0] == b[0][0]


# --- "more like this" -----------------------------------------------------------


@dataclass(frozen=True)
class _LikedModel:
    idf: dict[str, float]
    vectors: tuple[tuple[Entry, dict[str, float]], ...]

    def closest(self, words: tuple[str, ...]) -> tuple[Entry, float]:
        vector = _tfidf(words, self.idf)
        return max(((entry, _cosine(vector, liked)) for entry, liked in self.vectors), key=lambda pair: pair[1])


def _liked_model(liked: Sequence[Entry], docs: list[_Doc]) -> _LikedModel | None:
    """tf-idf vectors of the liked papers, idf taken over today's pool plus the liked papers."""
    if not liked:
        return None
    liked_tokens = [tokens(entry.title + " " + entry.summary) for entry in liked]
    corpus = [doc.title + doc.body for doc in docs] + liked_tokens
    df = Counter(word for words in corpus for word in set(words))
    idf = {word: math.log((1 + len(corpus)) / (1 + count)) + 1 for word, count in df.items()}
    return _LikedModel(idf, tuple((entry, _tfidf(words, idf)) for entry, words in zip(liked, liked_tokens)))


def _tfidf(words: tuple[str, ...], idf: dict[str, float]) -> dict[str, float]:
    return {word: count * idf.get(word, 1.0) for word, count in Counter(words).items()}


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(value * b.get(word, 0.0) for word, value in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0
