"""The candidate pool: each entry's words analysed once per run, and BM25 over them.

Words are snowball-stemmed and accent-folded; a keyword matches the text words
with its stem that *extend* it ("distill" -> "distillation", not "networking" ->
"network"). The pool keeps postings, lengths, an author index and caches that
subscribers share: per-phrase counts, per-keyword scores (also as arrays, so a
subscriber's keywords add up without a Python loop over papers), per-category
and per-exclusion doc lists, priors, liked-paper similarities, highlights.
Pure computation, no I/O.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain

import numpy as np
import numpy.typing as npt

from .models import CorpusStats, Entry
from .text_index import ByStem, Docs, FieldWords, Floats, Phrase, Postings, TextIndex, fold, phrase, tokens, word_bounds

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

# --- the pool: per-entry work, once per run -----------------------------------------

_NO_DOCS: Docs = np.zeros(0, np.intp)
_NO_WEIGHTS: Floats = np.zeros(0)


@dataclass(frozen=True)
class Scores:
    """One keyword's scores: doc -> score to explain a few papers, and the same as arrays to add up many."""

    by_doc: dict[int, float]
    docs: Docs
    values: Floats


class Pool:
    """Candidates analysed once: stemmed title and abstract, postings, lengths, authors."""

    def __init__(self, entries: Sequence[Entry], *, corpus: CorpusStats | None = None) -> None:
        self.entries = list(entries)
        self.corpus = corpus
        self.doc_of = {entry.id: doc for doc, entry in enumerate(self.entries)}
        text = self._text_arrays = TextIndex.of(self.entries)
        stems, forms, titles, bodies = list(text.stem_ids), list(text.form_ids), text.bounds(0), text.bounds(1)
        self._titles, self._bodies = FieldWords(stems, text.stems, titles), FieldWords(stems, text.stems, bodies)
        self._title_forms, self._body_forms = FieldWords(forms, text.forms, titles), FieldWords(forms, text.forms, bodies)
        lengths = (bodies[1] - bodies[0]).tolist()
        average = (sum(lengths) / len(lengths)) if lengths else 1.0
        self._norms = np.array([K1 * (1 - B + B * length / (average or 1.0)) for length in lengths], np.float64)
        # stem -> doc -> occurrences in title and abstract;
        # stem -> form -> doc -> (count in title, count in abstract): one-word keywords need no positions at all.
        self._postings = Postings(text, len(self.entries))
        self._where: Mapping[str, dict[int, int]] = ByStem(text.stem_ids, self._postings.of_stem)
        self._form_counts: Mapping[str, dict[str, dict[int, tuple[int, int]]]] = ByStem(text.stem_ids, self._postings.of_forms)
        self._phrase_cache: dict[tuple[Phrase, bool], dict[int, tuple[int, int]]] = {}
        self._docs_cache: dict[tuple[Phrase, bool], Docs] = {}
        self._idf_cache: dict[str, float] = {}
        self._score_cache: dict[tuple[str, Phrase, tuple[Phrase, ...]], Scores] = {}
        self._surface_cache: dict[tuple[int, str], tuple[str, ...]] = {}
        self._prior_cache: dict[dt.datetime | None, Floats] = {}
        self._categories: dict[str, Docs] | None = None
        self._similar_cache: dict[str, tuple[Docs, Floats]] = {}
        self._vector_idf: dict[str, float] | None = None
        self._vector_norms: Floats = np.ones(len(self.entries))
        self._vector_postings: dict[str, tuple[Docs, Floats]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @cached_property
    def _authors(self) -> dict[str, list[tuple[int, tuple[str, ...], str]]]:
        """family -> (doc, given, name); made for the first reader who follows authors."""
        authors: dict[str, list[tuple[int, tuple[str, ...], str]]] = defaultdict(list)
        for doc, entry in enumerate(self.entries):
            for name in entry.authors:
                given, family = name_key(name)
                authors[family].append((doc, given, name))
        return authors

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
                    if not found:  # usually the only form: copied in C
                        found.update(per_doc)
                        continue
                    for doc, (in_title, in_body) in per_doc.items():
                        before = found.get(doc, (0, 0))
                        found[doc] = (before[0] + in_title, before[1] + in_body)
        elif words:
            postings = [self._where.get(stem, {}) for stem, _ in words]
            if all(postings):
                # The papers that have every word, in the set order ties have always been broken in: like
                # set(postings[0]).intersection(*postings), built by adding them in ascending order into an empty set,
                # but walking only the smaller dict of the first two.
                docs = postings[0].keys() & postings[1].keys()
                if len(postings) > 2:
                    docs = docs.intersection(*postings[2:])
                hits = self._phrase_hits(words, exact)
                found = {doc: hits[doc] for doc in docs if doc in hits}
        self._phrase_cache[key] = found
        return found

    def _phrase_hits(self, words: Phrase, exact: bool) -> dict[int, tuple[int, int]]:
        """doc -> (occurrences in the title, in the abstract) of a phrase of several words, for every paper at once:
        from each occurrence of its rarest word, the neighbours must have the phrase's stems and forms."""
        text = self._text()
        ids = [text.stem_ids[stem] for stem, _ in words]
        anchor = min(range(len(words)), key=lambda index: text.occurrences(ids[index]))
        starts = text.positions(ids[anchor]) - anchor
        starts = starts[(starts >= 0) & (starts + len(words) <= len(text.stems))]
        for offset, ((stem, form), stem_id) in enumerate(zip(words, ids)):
            at = starts + offset
            keep = text.stems[at] == stem_id
            forms = text.forms[at]
            allowed = [text.form_ids[f] for f in self._form_counts[stem] if (f == form if exact else f.startswith(form))]
            keep &= np.logical_or.reduce([forms == f for f in allowed]) if allowed else False  # a stem has few forms
            starts = starts[keep]
        docs, fields = text.docs[starts], text.fields[starts]
        in_title = np.bincount(docs[fields == 0], minlength=len(self.entries))
        in_body = np.bincount(docs[fields == 1], minlength=len(self.entries))
        matched = np.flatnonzero(in_title + in_body)
        return dict(zip(matched.tolist(), zip(in_title[matched].tolist(), in_body[matched].tolist())))

    def _text(self) -> TextIndex:
        return self._text_arrays

    def docs_with(self, words: Phrase, *, exact: bool = False) -> Docs:
        """The papers containing the phrase, as an array (a reader's exclusions ban them at once); cached."""
        key = (words, exact)
        cached = self._docs_cache.get(key)
        if cached is None:
            found = self.counts(words, exact=exact)
            cached = self._docs_cache[key] = np.fromiter(found, np.intp, len(found))
        return cached

    def keyword_scores(self, keyword: str, words: Phrase, longer: tuple[Phrase, ...] = ()) -> Scores:
        """Per doc, idf x BM25 tf part for one keyword, minus mentions inside the ``longer`` keywords; cached."""
        key = (keyword, words, longer)
        cached = self._score_cache.get(key)
        if cached is not None:
            return cached
        docs, (in_title, in_body) = _arrays(self.counts(words))
        for other in longer:
            covered = np.zeros((2, len(self.entries)), np.int64)
            other_docs, other_counts = _arrays(self.counts(other))
            covered[:, other_docs] = other_counts
            in_title, in_body = np.maximum(in_title - covered[0, docs], 0), np.maximum(in_body - covered[1, docs], 0)
        if longer:  # papers whose every mention is inside a longer keyword drop out (counts() has only papers with some)
            left = (in_title > 0) | (in_body > 0)
            docs, in_title, in_body = docs[left], in_title[left], in_body[left]
        if len(docs):
            values = self.idf(keyword, words) * self._saturated(docs, in_title, in_body)
        else:  # nothing today matches it: no IDF is needed, so no corpus look-up (an FTS5 query for a new phrase)
            values = np.zeros(0)
        cached = self._score_cache[key] = Scores(dict(zip(docs.tolist(), values.tolist())), docs, values)
        return cached

    def priors(self, now: dt.datetime | None) -> Floats:
        """Per paper, upvotes and freshness: the same for every subscriber, so computed once per run."""
        minute = now.replace(second=0, microsecond=0) if now is not None else None
        priors = self._prior_cache.get(minute)
        if priors is None:
            priors = self._prior_cache[minute] = np.array([_prior(entry, minute) for entry in self.entries], np.float64)
        return priors

    def category_docs(self, category: str) -> Docs:
        """The papers in an arXiv category; the index is built on the first reader with categories."""
        if self._categories is None:
            members: dict[str, list[int]] = defaultdict(list)
            for doc, entry in enumerate(self.entries):
                for name in entry.categories:
                    members[name].append(doc)
            self._categories = {name: np.array(docs, np.intp) for name, docs in members.items()}
        return self._categories.get(category, _NO_DOCS)

    def _saturated(self, docs: Docs, in_title: npt.NDArray[np.int64], in_body: npt.NDArray[np.int64]) -> Floats:
        """BM25's term-frequency part, a title occurrence weighing TITLE_WEIGHT abstract ones (each count above 0)."""
        tf = TITLE_WEIGHT * in_title + in_body
        return tf * (K1 + 1) / (tf + self._norms[docs])

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

    def similar(self, liked: Sequence[Entry]) -> tuple[Floats, Docs]:
        """Per doc, the tf-idf cosine to the closest liked paper when at least LIKED_MIN_SIMILARITY (else 0),
        and that paper's index in ``liked`` (-1: none; on a tie the earlier liked paper)."""
        similarity = np.zeros(len(self.entries))
        closest = np.full(len(self.entries), -1, np.intp)
        for index, entry in enumerate(liked):
            docs, values = self._similar_to(entry)
            closer = values > similarity[docs]
            similarity[docs[closer]] = values[closer]
            closest[docs[closer]] = index
        return similarity, closest

    def _similar_to(self, liked: Entry) -> tuple[Docs, Floats]:
        """The papers at least LIKED_MIN_SIMILARITY alike to ``liked`` and their cosines, through the postings; cached per liked paper."""
        cached = self._similar_cache.get(liked.id)
        if cached is not None:
            return cached
        idf = self._telling_words()
        query = _tfidf(tuple(w for w in self._tokens_of(liked) if w in idf), idf)
        query_norm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        # Like Lucene's MoreLikeThis, only the paper's most telling words are looked up; bincount adds each paper's
        # products in the words' order, as adding word by word did.
        words = heapq.nlargest(LIKED_QUERY_WORDS, query.items(), key=lambda item: item[1])
        vectors = [self._word_vector(word) for word, _ in words]
        papers = np.concatenate([papers for papers, _ in vectors] or [_NO_DOCS])
        weights = np.concatenate([weights for _, weights in vectors] or [_NO_WEIGHTS])
        products = np.repeat([weight for _, weight in words], [len(papers) for papers, _ in vectors]) * weights
        similarity = np.bincount(papers, weights=products, minlength=len(self.entries)) / (query_norm * self._vector_norms)
        close = np.flatnonzero(similarity >= LIKED_MIN_SIMILARITY)
        cached = self._similar_cache[liked.id] = (close, similarity[close])
        return cached

    def _tokens_of(self, entry: Entry) -> tuple[str, ...]:
        """tokens() of the paper's title and abstract: the pool's own when the paper is in it, as it is."""
        doc = self.doc_of.get(entry.id)
        if doc is not None and (self.entries[doc].title, self.entries[doc].summary) == (entry.title, entry.summary):
            return self._titles[doc] + self._bodies[doc]
        return tokens(f"{entry.title} {entry.summary}")

    def _telling_words(self) -> dict[str, float]:
        """IDF of the telling words: those in at most a quarter of the papers (not "the", "model").

        Also each paper's tf-idf norm over them, summed in the order the words first occur so
        every cosine is the same to the last bit whichever way the vectors are stored.
        """
        if self._vector_idf is None:
            n = len(self.entries)
            common = max(10, n // 4)
            frequencies = self._postings.frequencies()
            idf = {word: math.log((1 + n) / (1 + df)) + 1 for word, df in zip(self._text().stem_ids, frequencies) if df <= common}
            self._vector_norms = self._norms_over(idf)
            self._vector_idf = idf
        return self._vector_idf

    def _norms_over(self, idf: dict[str, float]) -> Floats:
        """Each paper's tf-idf norm over the words in ``idf`` (1 for none): its distinct words in first-occurrence
        order, the squares summed by bincount in that order."""
        stem_ids = self._text().stem_ids
        by_stem = np.zeros(len(stem_ids))  # 0: not a telling word
        by_stem[[stem_ids[word] for word in idf]] = list(idf.values())
        return self._postings.norms(by_stem, len(self.entries))

    def _word_vector(self, word: str) -> tuple[Docs, Floats]:
        """The papers with a telling word and its tf-idf weight in each; cached (liked papers share words)."""
        cached = self._vector_postings.get(word)
        if cached is None:
            where = self._where[word]
            counts = np.fromiter(where.values(), np.int64, len(where))
            cached = self._vector_postings[word] = (np.fromiter(where, np.intp, len(where)), counts * self._telling_words()[word])
        return cached

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
            in_title, in_body = self.counts(words).get(doc, (0, 0))  # what _positions finds: a field without any is skipped
            surfaces: list[str] = []
            fields = ((in_title, entry.title, self._titles, self._title_forms), (in_body, entry.summary, self._bodies, self._body_forms))
            for field, (found, text, stems, forms) in enumerate(fields):
                if found:
                    bounds = self._word_bounds(doc, field, text)
                    starts = _positions(stems[doc], forms[doc], words)
                    surfaces += [text[bounds[2 * start + 1] : bounds[2 * (start + len(words))]] for start in starts]
            cached = self._surface_cache[key] = tuple(surfaces)
        return cached

    def _word_bounds(self, doc: int, field: int, text: str) -> npt.NDArray[np.int32]:
        """word_bounds of a paper's title (0) or abstract (1); cached, as the paper's other keywords ask again."""
        bounds = self._bounds_cache.get((doc, field))
        if bounds is None:
            bounds = self._bounds_cache[doc, field] = word_bounds(text)
        return bounds

    @cached_property
    def _bounds_cache(self) -> dict[tuple[int, int], npt.NDArray[np.int32]]:
        """(doc, field) -> word_bounds: filled by the readers' highlights."""
        return {}


def _arrays(counts: dict[int, tuple[int, int]]) -> tuple[Docs, npt.NDArray[np.int64]]:
    """Phrase counts as (docs, [counts in titles, counts in abstracts]), in the dict's order."""
    return np.fromiter(counts, np.intp, len(counts)), np.fromiter(chain.from_iterable(counts.values()), np.int64, 2 * len(counts)).reshape(-1, 2).T


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
    return [i for i in _occurrences(stems, words[0][0]) if _matches_at(stems, forms, i, words, False)]


def _occurrences(stems: tuple[str, ...], stem: str) -> list[int]:
    """Where a stem is in a field, found by tuple.index (a scan in C)."""
    found: list[int] = []
    at = -1
    try:
        while True:
            at = stems.index(stem, at + 1)
            found.append(at)
    except ValueError:  # no more
        return found


@lru_cache(maxsize=65_536)
def contains(longer: Phrase, shorter: Phrase) -> bool:
    return bool(_positions(tuple(stem for stem, _ in longer), tuple(form for _, form in longer), shorter))


# --- authors --------------------------------------------------------------------------------


_NAME_GAPS = re.compile(r"[\s.]+")


def name_key(name: str) -> tuple[tuple[str, ...], str]:
    """(given names, family name), accent- and case-folded: "G. E. Hinton" -> (("g", "e"), "hinton")."""
    plain = fold(name)
    if "," in plain:  # "Hinton, Geoffrey"
        family, _, given = plain.partition(",")
        plain = f"{given} {family}"
    parts = [p for p in _NAME_GAPS.split(plain) if p]
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



